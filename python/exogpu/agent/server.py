"""The node agent: HTTPS with mutual TLS, every request authorised and audited.

The client certificate's common name is the RBAC principal. Routes:

  GET  /v1/devices        device.list (node), then device.list per device listed
  GET  /v1/backends       device.list (node)
  GET  /v1/metrics        monitor.memory (node); Prometheus text
  POST /v1/probe/network  compute.execute (node); starts a network-probe server
                          with a one-time token, through `network_probe` (501 without;
                          the command uses exogpu.agent.network_probe)
  POST /v1/probe/network/measure
                          compute.execute (node); runs the network-probe client
                          from this node against {"target": "host:port", "token"}
                          (optional "seconds" <= 30, "streams" 1..16, "rtt_seconds"
                          <= 10); answers the result's JSON, 502 when the probe fails
  GET  /v1/audit          admin.policy; query the audit log
  PUT  /v1/policy         admin.policy; replace the policy (TOML body), escalation-checked

Certificates and the policy file are re-read when they change (checked every
`reload_interval` seconds) and on SIGHUP: new connections get the new
certificate, open ones keep theirs. An invalid new policy is refused whole and the
running one stays. Shutdown (SIGTERM/SIGINT or `stop()`) finishes in-flight
requests, records `system.stop` and closes (flushes and fsyncs) the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import signal
import ssl
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from exogpu.agent.metrics import Metric, render
from exogpu.security.audit import AuditLog, Durability, EventType, Severity
from exogpu.security.audit_query import query
from exogpu.security.policy_file import load_policy, parse_policy, save_policy
from exogpu.security.rbac import AccessControl, Permission, PolicyError
from exogpu.security.tls import ReloadingServerContext, expiry_warnings, node_files

__all__ = ["Agent", "AgentConfig", "AgentThread", "NetworkProbeHook", "run_agent"]

_log = logging.getLogger("exogpu.agent")

# Starts a network-probe server that accepts one client presenting `token`;
# returns what the caller needs to connect (e.g. {"port": 5201}).
NetworkProbeHook = Callable[[str, str], Awaitable[dict[str, Any]]]


@dataclass
class AgentConfig:
    certs: Path
    node: str
    policy: Path
    audit_log: Path
    bind: str = "127.0.0.1"
    port: int = 0
    audit_durability: Durability = "flush"
    reload_interval: float = 5.0
    expiry_warn_days: int = 30
    shutdown_timeout: float = 5.0
    audit_seal_key: Path | None = None
    audit_checkpoint_export: Path | None = None


def _principal_of(request: web.Request) -> str | None:
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


_MEASURE_FIELDS = {"target", "token", "seconds", "streams", "rtt_seconds"}


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    # bool is an int to Python, never a duration to a caller
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_request(f"{name}: expected a number, got {value!r}")
    if not low < value <= high:
        raise _bad_request(f"{name}: must be more than {low} and at most {high}, got {value}")
    return float(value)


def _measure_args(body: Any) -> dict[str, Any]:
    """The validated body of `POST /v1/probe/network/measure`; 400 naming the field."""
    from exogpu import netprobe

    if not isinstance(body, dict):
        raise _bad_request("body: expected a JSON object with target and token")
    unknown = sorted(set(body) - _MEASURE_FIELDS)
    if unknown:
        raise _bad_request(f"{unknown[0]}: unknown field (known: {sorted(_MEASURE_FIELDS)})")
    target = body.get("target")
    if not isinstance(target, str):
        raise _bad_request(f'target: expected "host:port", got {target!r}')
    try:
        netprobe.parse_endpoint(target)
    except ValueError as exc:
        raise _bad_request(f"target: {exc}") from None
    token = body.get("token")
    if not isinstance(token, str) or not 1 <= len(token.encode()) <= 256:
        raise _bad_request("token: expected a non-empty string of at most 256 bytes")
    streams = body.get("streams", 4)
    if isinstance(streams, bool) or not isinstance(streams, int) or not 1 <= streams <= 16:
        raise _bad_request(f"streams: expected an integer from 1 to 16, got {streams!r}")
    return {
        "target": target.strip(),
        "token": token,
        "seconds": _number(body, "seconds", 2.0, 0.0, 30.0),
        "streams": streams,
        "rtt_seconds": _number(body, "rtt_seconds", 0.5, 0.0, 10.0),
    }


class Agent:
    def __init__(self, config: AgentConfig, *, network_probe: NetworkProbeHook | None = None):
        self.config = config
        self.network_probe = network_probe
        files = node_files(config.certs, config.node)
        for f in (files.cert, files.key, files.ca):
            if not f.exists():
                raise FileNotFoundError(
                    f"{f} not found (create it with `exogpu certs init "
                    f"{config.certs} --node {config.node}`)"
                )
        self.tls = ReloadingServerContext(
            files.cert, files.key, files.ca, observer=self._on_handshake
        )
        self.handshakes = Counter[str]()
        self._background: set[asyncio.Task[None]] = set()
        self.access = AccessControl(load_policy(config.policy))
        self._policy_stamp = config.policy.stat().st_mtime_ns
        self.audit = AuditLog(
            config.audit_log,
            durability=config.audit_durability,
            seal_key=config.audit_seal_key,
            checkpoint_export=config.audit_checkpoint_export,
        )
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.denied = 0
        self._policy_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.port: int | None = None
        self._last_expiry_check = 0.0

    # -- audit helpers -------------------------------------------------------------------
    async def _audit(
        self, event: EventType, severity: Severity = Severity.INFO, **kwargs: Any
    ) -> None:
        if self.audit.durability == "buffered":
            self.audit.log(event, severity, **kwargs)
        else:  # flush/fsync wait for the writer: not on the event loop
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(self.audit.log, event, severity, **kwargs)
            )

    def _on_handshake(self, sslobj: ssl.SSLObject, error: ssl.SSLError | None) -> None:
        """Runs on the event loop inside the handshake: count it, audit it later."""
        if error is None:
            self.handshakes["ok"] += 1
            return  # the request that follows is audited with the principal
        self.handshakes["refused"] += 1
        reason = getattr(error, "verify_message", None) or error.reason or str(error)
        task = asyncio.get_running_loop().create_task(
            self._audit(
                EventType.AUTH_FAILURE,
                Severity.WARNING,
                outcome="denied",
                details={"reason": str(reason), "error": str(error)},
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- app -----------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 20)
        app.router.add_get("/v1/devices", self._devices)
        app.router.add_get("/v1/backends", self._backends)
        app.router.add_get("/v1/metrics", self._metrics)
        app.router.add_post("/v1/probe/network", self._probe_network)
        app.router.add_post("/v1/probe/network/measure", self._measure_network)
        app.router.add_get("/v1/audit", self._audit_query)
        app.router.add_put("/v1/policy", self._put_policy)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        start = time.perf_counter()
        principal = _principal_of(request)
        status = 500
        try:
            if principal is None:  # cannot happen with CERT_REQUIRED; refuse anyway
                raise web.HTTPUnauthorized(text="client certificate required\n")
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = request.match_info.route.resource
            path = route.canonical if route is not None else "unmatched"
            self.requests[(request.method, path, status)] += 1
            await self._audit(
                EventType.API_REQUEST,
                Severity.INFO if status < 400 else Severity.WARNING,
                principal=principal,
                outcome="success"
                if status < 400
                else "denied"
                if status in (401, 403)
                else "failure",
                details={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "remote": request.remote,
                    "ms": round((time.perf_counter() - start) * 1e3, 3),
                },
            )

    async def _require(
        self, request: web.Request, permission: Permission, device: str | None = None
    ) -> str:
        principal = _principal_of(request) or ""
        if self.access.allowed(principal, permission, device):
            return principal
        self.denied += 1
        reason = self.access.explain(principal, permission, device)
        await self._audit(
            EventType.ACCESS_DENIED,
            Severity.WARNING,
            principal=principal,
            device=device,
            outcome="denied",
            details={"permission": permission.value, "reason": reason, "path": request.path},
        )
        raise web.HTTPForbidden(
            text=json.dumps({"error": f"{principal!r} may not {permission.value}: {reason}"}),
            content_type="application/json",
        )

    # -- handlers ------------------------------------------------------------------------
    def _visible(self, principal: str, permission: Permission) -> list[Any]:
        import exogpu

        return [
            d
            for d in exogpu.devices()
            if self.access.allowed(principal, permission, d.id, tuple(d.info.aliases))
        ]

    async def _devices(self, request: web.Request) -> web.Response:
        principal = await self._require(request, Permission.DEVICE_LIST)
        devices = [d.info.to_dict() for d in self._visible(principal, Permission.DEVICE_LIST)]
        return web.json_response({"devices": devices})

    async def _backends(self, request: web.Request) -> web.Response:
        await self._require(request, Permission.DEVICE_LIST)
        import exogpu

        return web.json_response({"backends": [b.to_dict() for b in exogpu.backends()]})

    async def _metrics(self, request: web.Request) -> web.Response:
        principal = await self._require(request, Permission.MONITOR_MEMORY)
        total = Metric("exogpu_device_memory_total_bytes", "gauge", "Device memory in total.")
        free = Metric(
            "exogpu_device_memory_free_bytes",
            "gauge",
            "Device memory free, as reported by `source`.",
        )
        for d in self._visible(principal, Permission.MONITOR_MEMORY):
            mem = d.memory_info()
            labels = {"device": d.id, "backend": d.info.backend, "name": d.info.name}
            total.add(mem.total, **labels)
            free.add(mem.free, source=str(mem.source), **labels)
        reqs = Metric("exogpu_agent_requests_total", "counter", "HTTP requests served.")
        for (method, path, status), n in sorted(self.requests.items()):
            reqs.add(n, method=method, path=path, status=str(status))
        denied = Metric(
            "exogpu_agent_denied_total", "counter", "Requests refused by the policy."
        ).add(self.denied)
        shakes = Metric(
            "exogpu_agent_tls_handshakes_total", "counter", "TLS handshakes, completed or refused."
        )
        for outcome in ("ok", "refused"):
            shakes.add(self.handshakes[outcome], outcome=outcome)
        written = Metric(
            "exogpu_audit_events_written_total", "counter", "Audit records written."
        ).add(self.audit.written)
        dropped = Metric(
            "exogpu_audit_events_dropped_total",
            "counter",
            "Audit events dropped because the queue was full.",
        ).add(self.audit.dropped)
        return web.Response(
            text=render([total, free, reqs, denied, shakes, written, dropped]),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def _probe_network(self, request: web.Request) -> web.Response:
        principal = await self._require(request, Permission.COMPUTE_EXECUTE)
        if self.network_probe is None:
            return web.json_response(
                {
                    "error": "network probe not available: this build has no network probe "
                    "server (`exogpu probe serve`)"
                },
                status=501,
            )
        import exogpu

        token = secrets.token_urlsafe(32)
        try:
            info = await self.network_probe(token, self.config.bind)
        except (RuntimeError, OSError, exogpu.Error) as exc:  # too many, or cannot start
            await self._audit(
                EventType.COMPUTE_EXECUTE,
                Severity.ERROR,
                principal=principal,
                outcome="failure",
                details={"action": "network_probe_server", "error": str(exc)},
            )
            return web.json_response({"error": str(exc)}, status=503)
        await self._audit(
            EventType.COMPUTE_EXECUTE,
            principal=principal,
            details={"action": "network_probe_server", **info},
        )
        return web.json_response({"token": token, **info})

    async def _measure_network(self, request: web.Request) -> web.Response:
        principal = await self._require(request, Permission.COMPUTE_EXECUTE)
        try:
            body = await request.json()
        except ValueError:
            body = None
        args = _measure_args(body)
        from exogpu import netprobe

        target: str = args["target"]
        details = {  # never the token
            "action": "network_probe_client",
            "target": target,
            "seconds": args["seconds"],
            "streams": args["streams"],
        }
        host, port = netprobe.parse_endpoint(target)
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None,
                functools.partial(
                    netprobe.measure,
                    host,
                    port,
                    args["token"],
                    seconds=args["seconds"],
                    streams=args["streams"],
                    udp_rate=0,
                    rtt_seconds=args["rtt_seconds"],
                ),
            )
        except (netprobe.ProbeError, ValueError, OSError) as exc:
            message = f"network probe of {target} failed: {exc}"
            await self._audit(
                EventType.COMPUTE_EXECUTE,
                Severity.ERROR,
                principal=principal,
                outcome="failure",
                details={**details, "error": str(exc)},
            )
            return web.json_response({"error": message}, status=502)
        await self._audit(
            EventType.COMPUTE_EXECUTE,
            principal=principal,
            details={
                **details,
                "bandwidth_bps": result.bandwidth_bps,
                "rtt_median_us": result.rtt.median if result.rtt else None,
            },
        )
        return web.Response(text=result.to_json(indent=None), content_type="application/json")

    async def _audit_query(self, request: web.Request) -> web.Response:
        await self._require(request, Permission.ADMIN_POLICY)
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
            after = int(q["after"]) if "after" in q else None
            if not 1 <= limit <= 1000:
                raise ValueError("limit must be between 1 and 1000")
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self.audit.flush)
            page = await loop.run_in_executor(
                None,
                functools.partial(
                    query,
                    [self.config.audit_log],
                    since=q.get("since"),
                    until=q.get("until"),
                    principal=q.get("principal"),
                    event_types=q.getall("type", None),
                    min_severity=q.get("min_severity"),
                    after_seq=after,
                    limit=limit,
                ),
            )
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": str(exc)}), content_type="application/json"
            ) from None
        return web.json_response(page.to_dict())

    async def _put_policy(self, request: web.Request) -> web.Response:
        principal = await self._require(request, Permission.ADMIN_POLICY)
        text = await request.text()
        async with self._policy_lock:
            try:
                policy = parse_policy(text)
            except PolicyError as exc:
                await self._audit(
                    EventType.POLICY_REJECTED,
                    Severity.WARNING,
                    principal=principal,
                    outcome="failure",
                    details={"error": str(exc), "line": exc.line},
                )
                return web.json_response({"error": str(exc), "line": exc.line}, status=400)
            problems = self.access.escalation_problems(principal, policy)
            if problems:
                await self._audit(
                    EventType.POLICY_REJECTED,
                    Severity.WARNING,
                    principal=principal,
                    outcome="denied",
                    details={"escalation": problems},
                )
                return web.json_response(
                    {
                        "error": "escalation refused: you may not grant or change what you do "
                        "not hold",
                        "problems": problems,
                    },
                    status=403,
                )
            save_policy(policy, self.config.policy)
            self.access.replace_policy(policy)
            self._policy_stamp = self.config.policy.stat().st_mtime_ns
            await self._audit(
                EventType.POLICY_CHANGED,
                Severity.WARNING,
                principal=principal,
                details={"principals": sorted(policy.principals)},
            )
        return web.json_response({"ok": True, "principals": sorted(policy.principals)})

    # -- reloads -------------------------------------------------------------------------
    async def reload(self) -> None:
        """Re-read certificates and policy when their files changed."""
        try:
            if self.tls.reload_if_changed():
                cert = self.tls.certificate
                await self._audit(
                    EventType.CERT_ROTATED,
                    Severity.INFO,
                    details={
                        "serial": format(cert.serial_number, "x"),
                        "not_after": cert.not_valid_after_utc.isoformat(),
                    },
                )
                _log.warning("certificate reloaded from %s", self.tls.files.cert)
                await self._check_expiry()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            _log.error("certificate reload failed, keeping the old one: %s", exc)
            await self._audit(
                EventType.CERT_ROTATED,
                Severity.ERROR,
                outcome="failure",
                details={"error": str(exc)},
            )
        try:
            stamp = self.config.policy.stat().st_mtime_ns
        except OSError:
            return
        if stamp == self._policy_stamp:
            return
        async with self._policy_lock:
            self._policy_stamp = stamp
            try:
                policy = load_policy(self.config.policy)
            except PolicyError as exc:
                _log.error("policy file rejected, the running policy stays: %s", exc)
                await self._audit(
                    EventType.POLICY_REJECTED,
                    Severity.ERROR,
                    outcome="failure",
                    details={"error": str(exc), "line": exc.line},
                )
                return
            self.access.replace_policy(policy)
            await self._audit(
                EventType.POLICY_CHANGED,
                Severity.WARNING,
                details={
                    "source": str(self.config.policy),
                    "principals": sorted(policy.principals),
                },
            )

    async def _check_expiry(self) -> None:
        from cryptography import x509

        self._last_expiry_check = time.monotonic()
        ca = x509.load_pem_x509_certificate(self.tls.files.ca.read_bytes())
        for message in expiry_warnings(
            [(str(self.tls.files.cert), self.tls.certificate), (str(self.tls.files.ca), ca)],
            warn_days=self.config.expiry_warn_days,
        ):
            _log.warning(message)
            await self._audit(
                EventType.CERT_EXPIRING, Severity.WARNING, details={"message": message}
            )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval)
            await self.reload()
            if time.monotonic() - self._last_expiry_check > 86400:
                await self._check_expiry()

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> int:
        await self._audit(
            EventType.SYSTEM_START,
            details={
                "node": self.config.node,
                "bind": self.config.bind,
                "principals": sorted(self.access.policy.principals),
            },
        )
        await self._check_expiry()
        self._runner = web.AppRunner(
            self.app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self.config.shutdown_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.config.bind,
            self.config.port,
            ssl_context=self.tls.context,
            backlog=1024,
        )
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = int(server.sockets[0].getsockname()[1])
        self._watcher = asyncio.create_task(self._watch())
        return self.port

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        close_probes = getattr(self.network_probe, "close", None)
        if close_probes is not None:
            await close_probes()
        await self._audit(EventType.SYSTEM_STOP, details={"node": self.config.node})
        await asyncio.get_running_loop().run_in_executor(None, self.audit.close)


async def run_agent(
    config: AgentConfig,
    *,
    network_probe: NetworkProbeHook | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; SIGHUP re-reads certificates and policy."""
    agent = Agent(config, network_probe=network_probe)
    port = await agent.start()
    if ready is not None:
        ready(port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(agent.reload()))
    try:
        await stop.wait()
    finally:
        await agent.stop()


class AgentThread:
    """An agent on its own event loop in a background thread (tests, benchmarks)."""

    def __init__(self, config: AgentConfig, *, network_probe: NetworkProbeHook | None = None):
        self.loop = asyncio.new_event_loop()
        self.agent = Agent(config, network_probe=network_probe)
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="exogpu-agent", daemon=True
        )

    def start(self) -> int:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.agent.start(), self.loop).result(30)

    def call(self, coro: Awaitable[Any]) -> Any:
        async def wrap() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(30)

    def stop(self) -> None:
        try:
            self.call(self.agent.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(30)
            self.loop.close()

    def __enter__(self) -> AgentThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
