"""A client for the node agent: mutual TLS 1.3, optional SPKI pins, keep-alive.

The pins (if any) are checked right after each handshake, before a byte of the
request is sent, so a server holding a CA-signed but unpinned key learns nothing.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from exogpu import netprobe
from exogpu.security.tls import check_pin, client_context, node_files

__all__ = ["AgentClient", "AgentError"]


class AgentError(RuntimeError):
    def __init__(self, status: int, body: str, path: str):
        try:
            parsed = json.loads(body)
            message = parsed.get("error", body)
            if parsed.get("problems"):
                message = f"{message}: " + "; ".join(map(str, parsed["problems"]))
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"{path}: HTTP {status}: {str(message).strip()}")
        self.status = status
        self.body = body


class _PinnedConnection(http.client.HTTPSConnection):
    pins: frozenset[str] = frozenset()

    def connect(self) -> None:
        super().connect()
        if self.pins:
            try:
                check_pin(self.sock.getpeercert(binary_form=True), self.pins)
            except Exception:
                self.close()
                raise


class AgentClient:
    """Talks to `https://host:port` as the node whose certificate is in `certs`.

    `server_name` is the agent's node name (checked against its certificate);
    `host` is where to connect (default 127.0.0.1). Thread-safe (one request at a
    time per client; use one client per thread for concurrency)."""

    def __init__(
        self,
        certs: str | os.PathLike[str],
        node: str,
        server_name: str,
        port: int,
        *,
        host: str = "127.0.0.1",
        pins: Iterable[str] = (),
        timeout: float = 30.0,
    ):
        files = node_files(Path(certs), node)
        self._ctx = client_context(files.cert, files.key, files.ca)
        self.host, self.port, self.server_name = host, port, server_name
        self.pins = frozenset(pins)
        self.timeout = timeout
        self._conn: _PinnedConnection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> _PinnedConnection:
        if self._conn is None:
            # connect to `host`, but verify (and send SNI for) the agent's node name
            conn = _PinnedConnection(
                self.server_name, self.port, context=self._ctx, timeout=self.timeout
            )
            conn.pins = self.pins
            conn._create_connection = _to_host(self.host)  # type: ignore[attr-defined]
            self._conn = conn
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> tuple[int, bytes, str]:
        """One request; `timeout` (seconds) overrides the client's for this one."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                self._set_timeout(conn, timeout or self.timeout)
                try:
                    conn.request(method, path, body=body, headers=headers or {})
                    resp = conn.getresponse()
                    data = resp.read()
                    ctype = resp.getheader("Content-Type", "")
                    if resp.will_close:
                        self.close_locked()
                    else:
                        self._set_timeout(conn, self.timeout)
                    return resp.status, data, ctype
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    self.close_locked()  # the server closed a kept-alive connection
                    if attempt:
                        raise
                except BaseException:
                    self.close_locked()  # e.g. a timeout: the reply may still come
                    raise
            raise AssertionError("unreachable")

    @staticmethod
    def _set_timeout(conn: _PinnedConnection, timeout: float) -> None:
        conn.timeout = timeout  # for the next connect
        if conn.sock is not None:
            conn.sock.settimeout(timeout)

    def close_locked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        status, data, _ = self.request(method, path, body, headers, timeout=timeout)
        if status >= 400:
            raise AgentError(status, data.decode("utf-8", "replace"), path)
        return json.loads(data)

    # -- the API -------------------------------------------------------------------------
    def devices(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/v1/devices")["devices"]
        return result

    def backends(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/v1/backends")["backends"]
        return result

    def metrics(self) -> str:
        status, data, _ = self.request("GET", "/v1/metrics")
        if status >= 400:
            raise AgentError(status, data.decode("utf-8", "replace"), "/v1/metrics")
        return data.decode()

    def audit(self, **params: Any) -> dict[str, Any]:
        """Query the audit log: since, until, principal, type (list), min_severity,
        after, limit."""
        pairs: list[tuple[str, str]] = []
        for key, value in params.items():
            if value is None:
                continue
            for v in value if isinstance(value, list | tuple) else [value]:
                pairs.append((key, str(v)))
        result: dict[str, Any] = self._json("GET", "/v1/audit?" + urlencode(pairs))
        return result

    def put_policy(self, toml_text: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "PUT", "/v1/policy", toml_text.encode(), {"Content-Type": "application/toml"}
        )
        return result

    def start_network_probe(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", "/v1/probe/network", b"{}", {"Content-Type": "application/json"}
        )
        return result

    def measure_network(
        self,
        target: str,
        token: str,
        *,
        seconds: float = 2.0,
        streams: int = 4,
        rtt_seconds: float = 0.5,
    ) -> netprobe.NetResult:
        """Have the agent's node run the network probe against `target`
        ("host:port" of a probe server, e.g. one started by another node's
        `start_network_probe()`, with its `token`). Blocks for about
        `rtt_seconds + 2 * seconds`; the agent answers 502 (an AgentError)
        when the probe fails."""
        body = {
            "target": target,
            "token": token,
            "seconds": seconds,
            "streams": streams,
            "rtt_seconds": rtt_seconds,
        }
        doc = self._json(
            "POST",
            "/v1/probe/network/measure",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
            # the probe's own time (plus its connect timeout) comes on top
            timeout=self.timeout + rtt_seconds + 2 * seconds,
        )
        return netprobe.NetResult.from_dict(doc)


def _to_host(host: str) -> Any:
    import socket

    def create(
        address: tuple[str, int], timeout: float | None = None, source_address: Any = None
    ) -> socket.socket:
        return socket.create_connection((host, address[1]), timeout, source_address)

    return create
