"""`exogpu.copy`: one call for every direction of copy."""

from __future__ import annotations

from typing import Any

from exogpu._core import Buffer, InvalidArgument, Stream, copy_buffers


def _nbytes(obj: Any) -> int:
    if isinstance(obj, Buffer):
        return int(obj.nbytes)
    return memoryview(obj).nbytes


def copy(
    dst: Any,
    src: Any,
    nbytes: int | None = None,
    stream: Stream | None = None,
    *,
    dst_offset: int = 0,
    src_offset: int = 0,
) -> None:
    """Copy `nbytes` from `src` to `dst`.

    Either side may be a `Buffer` on any device, or (for one side) any host
    object with the buffer protocol (numpy arrays, bytearray, memoryview).
    `nbytes` defaults to the largest size both sides hold from their offsets.
    Without a stream the copy is complete on return. With a stream, a copy
    within one device or between a device and host memory is only enqueued
    (the host object is kept alive until it is done); a copy between two
    devices uses the stream for its side and returns once complete.
    """
    if not isinstance(dst, Buffer) and not isinstance(src, Buffer):
        raise InvalidArgument("copy: at least one of dst and src must be an exogpu.Buffer")
    if nbytes is None:
        nbytes = min(_nbytes(dst) - dst_offset, _nbytes(src) - src_offset)
    if nbytes < 0 or dst_offset < 0 or src_offset < 0:
        raise InvalidArgument(
            f"copy: offsets and nbytes must be non-negative "
            f"(dst_offset={dst_offset}, src_offset={src_offset}, nbytes={nbytes})"
        )
    if isinstance(dst, Buffer) and isinstance(src, Buffer):
        copy_buffers(dst, src, nbytes, dst_offset, src_offset, stream)
    elif isinstance(dst, Buffer):
        view = memoryview(src).cast("B")[src_offset : src_offset + nbytes]
        if len(view) != nbytes:
            raise InvalidArgument(
                f"copy: source range of {nbytes} bytes at offset {src_offset} is outside "
                f"the host object of {memoryview(src).nbytes} bytes"
            )
        dst.copy_from(view, dst_offset, stream)
    else:
        view = memoryview(dst).cast("B")[dst_offset : dst_offset + nbytes]
        if len(view) != nbytes:
            raise InvalidArgument(
                f"copy: destination range of {nbytes} bytes at offset {dst_offset} is outside "
                f"the host object of {memoryview(dst).nbytes} bytes"
            )
        src.copy_to(view, src_offset, stream)
