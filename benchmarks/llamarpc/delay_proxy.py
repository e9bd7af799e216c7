"""A TCP relay that adds a fixed one-way delay in each direction (the
kernels here have no netem). Each chunk read is written `delay` seconds after
it arrived, in order, so a round trip gains 2 x delay and a stream keeps its
rate.

    python -m llamarpc.delay_proxy --delay-ms 10 127.0.0.1:6001=10.78.3.2:50052 ...
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while True:
            data = await reader.read(1 << 20)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(read(), write())


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            _nodelay(w)
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay),
                             return_exceptions=True)
        for w in (client_w, server_w):
            w.close()

    server = await asyncio.start_server(handle, *listen)
    async with server:
        await server.serve_forever()


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("routes", nargs="+", metavar="LISTEN=TARGET")
    args = parser.parse_args()
    routes = [tuple(map(_endpoint, r.split("="))) for r in args.routes]

    async def run() -> None:
        await asyncio.gather(*(_serve(a, b, args.delay_ms / 1e3) for a, b in routes))

    asyncio.run(run())


if __name__ == "__main__":
    main()
