"""The conformance suite through Python, on every device the registry finds."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

import exogpu

rng = np.random.default_rng(1234)


def random_bytes(n: int) -> np.ndarray:
    return rng.integers(0, 256, n, dtype=np.uint8)


@pytest.mark.parametrize("n", [0, 1, 3, 4096, 4097, 65537, (1 << 20) + 7, 9 << 20])
def test_round_trip_of_random_bytes(device: exogpu.Device, n: int) -> None:
    data = random_bytes(n)
    with device.allocate(n) as buf:
        assert buf.nbytes == n
        buf.copy_from(data)
        np.testing.assert_array_equal(buf.to_numpy(), data)
        out = np.zeros(n, np.uint8)
        buf.copy_to(out)
        np.testing.assert_array_equal(out, data)


def test_offsets_touch_only_their_range(device: exogpu.Device) -> None:
    base = random_bytes(10_000)
    patch = random_bytes(33)
    buf = device.allocate(10_000)
    buf.copy_from(base)
    buf.copy_from(patch, offset=4095)
    expected = base.copy()
    expected[4095 : 4095 + 33] = patch
    np.testing.assert_array_equal(buf.to_numpy(), expected)
    part = np.empty(33, np.uint8)
    buf.copy_to(part, offset=4095)
    np.testing.assert_array_equal(part, patch)


def test_out_of_range_is_invalid_argument_and_changes_nothing(device: exogpu.Device) -> None:
    data = random_bytes(100)
    buf = device.allocate(100)
    buf.copy_from(data)
    with pytest.raises(exogpu.InvalidArgument, match=r"101 bytes at offset 0 .* 100 bytes"):
        buf.copy_from(np.zeros(101, np.uint8))
    with pytest.raises(ValueError, match="offset 90"):
        buf.copy_from(np.zeros(20, np.uint8), offset=90)
    with pytest.raises(exogpu.InvalidArgument):
        buf.copy_to(np.zeros(60, np.uint8), offset=50)
    np.testing.assert_array_equal(buf.to_numpy(), data)


def test_non_buffer_objects_are_rejected_with_the_type_named(device: exogpu.Device) -> None:
    buf = device.allocate(10)
    with pytest.raises(exogpu.InvalidArgument, match="buffer protocol, got str"):
        buf.copy_from("not bytes")  # type: ignore[arg-type]
    with pytest.raises(exogpu.InvalidArgument, match="writable"):
        buf.copy_to(b"read-only bytes")


def test_larger_than_the_device_is_out_of_memory(device: exogpu.Device) -> None:
    before = device.pool.stats()
    too_big = device.info.memory_total + (1 << 30)
    with pytest.raises(exogpu.OutOfMemory, match=device.id) as err:
        device.allocate(too_big)
    assert isinstance(err.value, MemoryError)
    after = device.pool.stats()
    assert after["bytes_in_use"] == before["bytes_in_use"]
    assert after["live_buffers"] == before["live_buffers"]
    assert after["failed_allocations"] == before["failed_allocations"] + 1


def test_freed_buffer_refuses_use_and_free_is_idempotent(device: exogpu.Device) -> None:
    buf = device.allocate(64)
    buf.free()
    buf.free()
    assert buf.freed
    with pytest.raises(exogpu.InvalidArgument, match="freed"):
        buf.copy_from(b"x" * 64)


def test_context_manager_returns_memory_to_the_pool(device: exogpu.Device) -> None:
    pool = exogpu.Pool(device)
    with pool.allocate(5000):
        assert pool.stats()["bytes_in_use"] == exogpu.Pool.size_class(5000)
    assert pool.stats()["bytes_in_use"] == 0
    assert pool.stats()["bytes_cached"] == exogpu.Pool.size_class(5000)


def test_garbage_collection_returns_memory(device: exogpu.Device) -> None:
    pool = exogpu.Pool(device)
    buf = pool.allocate(1 << 16)
    ref = weakref.ref(buf)
    del buf
    gc.collect()
    assert ref() is None
    assert pool.stats()["live_buffers"] == 0


def test_device_to_device_and_fill(device: exogpu.Device) -> None:
    data = random_bytes(3 << 20)
    a = device.allocate(data.nbytes)
    b = device.allocate(data.nbytes + 5)
    a.copy_from(data)
    exogpu.copy(b, a, dst_offset=5)
    out = np.empty(data.nbytes, np.uint8)
    b.copy_to(out, offset=5)
    np.testing.assert_array_equal(out, data)
    b.fill(0x11)
    b.fill(0xAB, offset=1, nbytes=3)
    filled = b.to_numpy()
    np.testing.assert_array_equal(filled[:5], [0x11, 0xAB, 0xAB, 0xAB, 0x11])
    assert (filled[5:] == 0x11).all()


def test_copy_between_every_pair_of_devices(device: exogpu.Device) -> None:
    data = random_bytes((20 << 20) + 5)
    for other in exogpu.all_devices():
        src = device.allocate(data.nbytes)
        dst = other.allocate(data.nbytes)
        src.copy_from(data)
        exogpu.copy(dst, src)
        np.testing.assert_array_equal(dst.to_numpy(), data, err_msg=f"{device.id}->{other.id}")
        dst.fill(0)
        exogpu._core.copy_buffers(dst, src, data.nbytes, staged=True)
        np.testing.assert_array_equal(dst.to_numpy(), data, err_msg="staged")


def test_host_objects_copy_with_exogpu_copy(device: exogpu.Device) -> None:
    data = random_bytes(1000)
    buf = device.allocate(1000)
    exogpu.copy(buf, data)
    out = bytearray(1000)
    exogpu.copy(out, buf)
    assert bytes(out) == data.tobytes()
    with pytest.raises(exogpu.InvalidArgument, match="at least one"):
        exogpu.copy(out, data)
    with pytest.raises(exogpu.InvalidArgument, match="outside"):
        exogpu.copy(buf, data, nbytes=10, src_offset=995)


def test_stream_ordering_and_events(device: exogpu.Device) -> None:
    n = 8 << 20
    first, second = random_bytes(n), random_bytes(n)
    a, b = device.allocate(n), device.allocate(n)
    out = np.empty(n, np.uint8)
    s = device.stream()
    start = s.record()
    a.copy_from(first, stream=s)
    exogpu.copy(b, a, stream=s)
    a.copy_from(second, stream=s)
    b.copy_to(out, stream=s)
    end = s.record()
    s.synchronize()
    assert start.query() and end.query()
    np.testing.assert_array_equal(out, first)
    np.testing.assert_array_equal(a.to_numpy(), second)
    assert 0.0 < start.elapsed_ms(end) < 60_000


def test_wait_orders_work_across_streams(device: exogpu.Device) -> None:
    n = 16 << 20
    data = random_bytes(n)
    buf = device.allocate(n)
    out = np.zeros(n, np.uint8)
    producer, consumer = device.stream(), device.stream()
    buf.copy_from(data, stream=producer)
    consumer.wait(producer.record())
    buf.copy_to(out, stream=consumer)
    consumer.synchronize()
    np.testing.assert_array_equal(out, data)


def test_async_copy_keeps_its_host_object_alive(device: exogpu.Device) -> None:
    n = 16 << 20
    buf = device.allocate(n)
    s = device.stream()
    src = random_bytes(n)
    expected = src.copy()
    ref = weakref.ref(src)
    buf.copy_from(src, stream=s)
    del src
    gc.collect()
    s.synchronize()
    np.testing.assert_array_equal(buf.to_numpy(), expected)
    gc.collect()
    assert ref() is None  # released once the copy is done


def test_many_threads_allocating_and_copying(device: exogpu.Device) -> None:
    errors: list[str] = []

    def work(seed: int) -> None:
        local = np.random.default_rng(seed)
        s = device.stream()
        for _ in range(20):
            n = int(local.integers(1, 300_000))
            data = local.integers(0, 256, n, dtype=np.uint8)
            out = np.empty(n, np.uint8)
            with device.allocate(n) as buf:
                buf.copy_from(data, stream=s)
                buf.copy_to(out, stream=s)
                s.synchronize()
            if not np.array_equal(out, data):
                errors.append(f"thread {seed}: mismatch at {n} bytes")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_pool_limit_and_stats(device: exogpu.Device) -> None:
    pool = exogpu.Pool(device, limit=1 << 20)
    a = pool.allocate(600_000)
    with pytest.raises(exogpu.OutOfMemory, match="limit of 1048576 bytes"):
        pool.allocate(600_000)
    with pytest.raises(exogpu.InvalidArgument, match="below"):
        pool.limit = 1000
    assert pool.limit == 1 << 20
    a.free()
    b = pool.allocate(600_000)
    stats = pool.stats()
    assert stats["cache_hits"] == 1
    assert stats["device_allocations"] == 1
    assert stats["failed_allocations"] == 1
    b.free()
    assert pool.trim() == exogpu.Pool.size_class(600_000)


def test_memory_info(device: exogpu.Device) -> None:
    m = device.memory_info()
    assert 0 < m.free <= m.total == device.info.memory_total
    assert m.source in {"driver", "budget", "os", "estimate"}
