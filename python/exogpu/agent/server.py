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

Certificates, the CRL (certs/crl.pem) and the policy file are re-read when they
change (checked every `reload_interval` seconds) and on SIGHUP: new connections
get the new certificate and CRL, open ones keep theirs. A reload that fails for
any reason (unreadable or hostile file, a key that does not match, a CRL that is
unsigned, expired or older than the one in force) writes `policy_rejected`, keeps
what is running, and the watcher carries on. Shutdown (SIGTERM/SIGINT or `stop()`)
finishes in-flight requests, records `system.stop` and closes (flushes and fsyncs)
the audit log.

Connections pass a gate (exogpu.agent.gate): caps in total and per peer, a rate
of new connections per peer, the TLS
handshake with a deadline, a deadline for request headers. Every refusal (cap,
deadline, failed handshake, a request the HTTP parser refuses) is audited with
the peer's address and, once the handshake is done, the certificate's subject,
coalesced per peer and reason so that a flood cannot flood the log
(exogpu.agent.refusals). `accept()` running out of file descriptors stops
accepting for a back-off that doubles while it lasts, and is logged once per
minute with a count, not once per failure (exogpu.agent.gate.Listener). Request
bodies are parsed with exogpu.bounded_input: hostile JSON or TOML is a 400 naming
the fault, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from exogpu.agent.gate import Gates, Limits, Listener, subject_of
from exogpu.agent.metrics import CONTENT_TYPE_LATEST, Family, exposition
from exogpu.agent.refusals import Refusal, RefusalLog
from exogpu.bounded_input import load_json
from exogpu.security.audit import AuditError, AuditLog, Durability, EventType, Severity
from exogpu.security.audit_query import query
from exogpu.security.policy_file import load_policy, parse_policy, save_policy
from exogpu.security.rbac import AccessControl, Permission, PolicyError
from exogpu.security.tls import (
    CRL_FILE,
    ReloadingServerContext,
    crl_number,
    expiry_warnings,
    node_files,
)

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
    limits: Limits = field(default_factory=Limits)
    # Off only to measure what the check costs (benchmarks/handshake_revocation.py).
    check_revocation: bool = True
    refusal_window: float = 1.0
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


def _subject(request: web.Request) -> str | None:
    transport = request.transport
    return subject_of(transport.get_extra_info("peercert")) if transport is not None else None


_MEASURE_FIELDS = {"target", "token", "seconds", "streams", "rtt_seconds"}


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")




_ACCEPT_LOG_EVERY = 60.0


class _Handler(RequestHandler):
    """aiohttp's protocol, with its error responses audited and never logged with a
    traceback per request (a flood of garbage would otherwise fill stderr)."""

    __slots__ = ("agent",)

    def __init__(self, agent: Agent, manager: web.Server, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self.agent = agent

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        if status >= 500:
            self.agent.errors += 1
            _log.error("request from %s failed", request.remote, exc_info=exc)
            text = "internal error"
        else:
            text = message or (str(exc) if exc is not None else "bad request")
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        subject = subject_of(transport.get_extra_info("peercert")) if transport else None
        if isinstance(exc, HttpProcessingError):  # never reached the app (or its audit)
            self.agent.refused(
                "http_parser", f"{status}: {text}", str(peer[0]) if peer else "?", subject
            )
        response = web.json_response({"error": text}, status=status)
        response.force_close()
        return response


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
        crl = config.certs / CRL_FILE
        if config.check_revocation and not crl.exists():
            raise FileNotFoundError(
                f"{crl} not found: without it revoked certificates would log in (create "
                f"it with `exogpu certs revoke {config.certs}`)"
            )
        self.tls = ReloadingServerContext(
            files.cert, files.key, files.ca, crl=crl if config.check_revocation else None
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
        # (principal, method, path, status) -> count
        self.requests: Counter[tuple[str, str, str, int]] = Counter()
        self.denied = 0
        self.errors = 0
        self.refusal_counts: Counter[str] = Counter()
        self.accept_exhausted = 0
        self._accept_logged = 0.0
        self._accept_unlogged = 0
        self.refusals = RefusalLog(self._audit_refusal, config.refusal_window)
        self._policy_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self._gates: Gates | None = None
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

    def _audit_soon(self, event: EventType, severity: Severity, **kwargs: Any) -> None:
        """Audit from a callback that cannot wait: the record is written in the
        background (and awaited at shutdown)."""
        if self.audit.durability == "buffered":
            self.audit.log(event, severity, **kwargs)
            return
        task = asyncio.get_running_loop().create_task(self._audit(event, severity, **kwargs))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _audit_refusal(self, refusal: Refusal) -> None:
        event = EventType.AUTH_FAILURE if refusal.kind == "tls_handshake" else EventType.API_REQUEST
        details = {k: v for k, v in refusal.details.items() if k != "subject"}
        subject = refusal.details.get("subject")
        self._audit_soon(
            event,
            Severity.WARNING,
            outcome="denied",
            details={
                "refused": refusal.kind,
                "reason": refusal.reason,
                "remote": refusal.peer,
                "subject": subject,
                "count": refusal.count,
                **details,
            },
        )

    # -- gate events (exogpu.agent.gate.GateEvents) ----------------------------------------
    def refused(
        self, kind: str, reason: str, peer: str, subject: str | None, **details: Any
    ) -> None:
        self.refusal_counts[kind] += 1
        self.refusals.add(kind, reason, peer, subject=subject, **details)

    def handshake_done(self, peer: str, error: BaseException | None) -> None:
        self.handshakes["ok" if error is None else "refused"] += 1

    def make_protocol(self) -> asyncio.Protocol:
        assert self._runner is not None and self._runner.server is not None
        limits = self.config.limits
        return _Handler(
            self,
            self._runner.server,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=limits.keepalive_timeout,
            access_log=None,
        )

    def _accept_exhausted(self, exc: OSError, delay: float) -> None:
        """accept() found no descriptor: counted each time, logged once a minute."""
        self.accept_exhausted += 1
        self._accept_unlogged += 1
        now = time.monotonic()
        if now - self._accept_logged >= _ACCEPT_LOG_EVERY:
            _log.error(
                "accept() out of file descriptors (%s), %d time(s) since the last report; "
                "backing off (now %.2f s)",
                exc,
                self._accept_unlogged,
                delay,
            )
            self._accept_logged = now
            self._accept_unlogged = 0

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
        gates = self._gates
        if gates is not None:
            gates.request_started(request.transport)
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
            if gates is not None:
                gates.request_finished(request.transport)
            route = request.match_info.route.resource
            path = route.canonical if route is not None else "unmatched"
            self.requests[(principal or "", request.method, path, status)] += 1
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
                    "subject": _subject(request),
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
            details={
                "permission": permission.value,
                "reason": reason,
                "path": request.path,
                "remote": request.remote,
                "subject": _subject(request),
            },
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
        """Device gauges for the devices the caller may monitor; its own request
        counts; node-wide counters (every principal's requests, refusals, TLS, audit)
        only with admin.policy on the node."""
        principal = await self._require(request, Permission.MONITOR_MEMORY)
        device_labels = ["device", "backend", "name"]
        total = Family(
            "exogpu_device_memory_total_bytes", "gauge", "Device memory in total.", device_labels
        )
        free = Family(
            "exogpu_device_memory_free_bytes",
            "gauge",
            "Device memory free, as reported by `source`.",
            [*device_labels, "source"],
        )
        for d in self._visible(principal, Permission.MONITOR_MEMORY):
            mem = d.memory_info()
            labels = {"device": d.id, "backend": d.info.backend, "name": d.info.name}
            total.add(mem.total, labels)
            free.add(mem.free, {**labels, "source": str(mem.source)})
        families = [total, free]
        admin = self.access.allowed(principal, Permission.ADMIN_POLICY)
        reqs = Family(
            "exogpu_agent_requests_total",
            "counter",
            "HTTP requests served (the caller's own, or all with admin.policy).",
            ["method", "path", "status"],
        )
        counts: Counter[tuple[str, str, str]] = Counter()
        for (who, method, path, code), n in self.requests.items():
            if admin or who == principal:
                counts[(method, path, str(code))] += n
        for (method, path, status), n in sorted(counts.items()):
            reqs.add(n, {"method": method, "path": path, "status": status})
        families.append(reqs)
        if admin:
            families += self._node_families()
        return web.Response(
            body=exposition(families),
            headers={"Content-Type": CONTENT_TYPE_LATEST, "X-Content-Type-Options": "nosniff"},
        )

    def _node_families(self) -> list[Family]:
        shakes = Family(
            "exogpu_agent_tls_handshakes_total",
            "counter",
            "TLS handshakes, completed or refused.",
            ["outcome"],
        )
        for outcome in ("ok", "refused"):
            shakes.add(self.handshakes[outcome], {"outcome": outcome})
        refused = Family(
            "exogpu_agent_refused_total",
            "counter",
            "Connections and requests refused, by kind.",
            ["kind"],
        )
        for kind in (
            "connection_cap",
            "connection_rate",
            "tls_handshake",
            "header_deadline",
            "http_parser",
        ):
            refused.add(self.refusal_counts[kind], {"kind": kind})
        gates = self._gates
        crl = self.tls.crl
        return [
            shakes,
            refused,
            Family("exogpu_agent_denied_total", "counter", "Requests refused by the policy.")
            .add(self.denied),
            Family("exogpu_agent_errors_total", "counter", "Requests that failed with a 5xx.")
            .add(self.errors),
            Family("exogpu_agent_connections", "gauge", "Connections open now.")
            .add(gates.open if gates is not None else 0),
            Family(
                "exogpu_agent_accept_exhausted_total",
                "counter",
                "accept() calls that ran out of file descriptors.",
            ).add(self.accept_exhausted),
            Family(
                "exogpu_agent_revoked_certificates",
                "gauge",
                "Serials in the CRL in force (-1: revocation not checked).",
            ).add(len(crl) if crl is not None else -1),
            Family("exogpu_audit_events_written_total", "counter", "Audit records written.")
            .add(self.audit.written),
            Family(
                "exogpu_audit_events_dropped_total",
                "counter",
                "Audit events dropped because the queue was full.",
            ).add(self.audit.dropped),
        ]

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
        body = load_json(await request.read(), what="body", error=_bad_request, max_depth=4)
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
        except AuditError as exc:
            # The node's own log is unreadable (damaged or tampered): a typed
            # answer naming the place, not a 500 with a traceback.
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": f"audit log unreadable: {exc}"}),
                content_type="application/json",
            ) from None
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": str(exc)}), content_type="application/json"
            ) from None
        return web.json_response(page.to_dict())

    async def _put_policy(self, request: web.Request) -> web.Response:
        principal = await self._require(request, Permission.ADMIN_POLICY)
        body = await request.read()
        async with self._policy_lock:
            try:
                policy = parse_policy(body)
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
    async def _rejected(self, what: str, exc: BaseException, **details: Any) -> None:
        _log.error("%s reload refused, the running one stays: %s", what, exc)
        await self._audit(
            EventType.POLICY_REJECTED,
            Severity.ERROR,
            outcome="failure",
            details={"what": what, "error": f"{type(exc).__name__}: {exc}", **details},
        )

    async def reload(self) -> None:
        """Re-read certificates, CRL and policy when their files changed. Never raises
        (but for cancellation): a failure is audited and what runs stays."""
        try:
            await self._reload_certificates()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any fault in the files: the old context stays
            await self._rejected("certificates", exc)
        try:
            await self._reload_policy()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # PolicyError names the line; anything else is named too
            await self._rejected("policy", exc, line=getattr(exc, "line", None),
                                 source=str(self.config.policy))

    async def _reload_certificates(self) -> None:
        before = self.tls.crl
        if not self.tls.reload_if_changed():
            return
        cert = self.tls.certificate
        crl = self.tls.crl
        await self._audit(
            EventType.CERT_ROTATED,
            Severity.INFO,
            details={
                "serial": format(cert.serial_number, "x"),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "crl_number": crl_number(crl) if crl is not None else None,
                "revoked": len(crl) if crl is not None else None,
                "crl_changed": before is not crl,
            },
        )
        _log.warning("certificates reloaded from %s", self.tls.files.cert.parent)
        await self._check_expiry()

    async def _reload_policy(self) -> None:
        try:
            stamp = self.config.policy.stat().st_mtime_ns
        except OSError:
            return  # mid-replacement; next time
        if stamp == self._policy_stamp:
            return
        async with self._policy_lock:
            self._policy_stamp = stamp  # a refused file is not retried until it changes
            policy = await asyncio.get_running_loop().run_in_executor(
                None, load_policy, self.config.policy
            )
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
        messages = expiry_warnings(
            [(str(self.tls.files.cert), self.tls.certificate), (str(self.tls.files.ca), ca)],
            warn_days=self.config.expiry_warn_days,
        )
        crl = self.tls.crl
        if crl is not None and crl.next_update_utc is not None:
            import datetime as dt

            left = crl.next_update_utc - dt.datetime.now(dt.timezone.utc)
            if left <= dt.timedelta(days=self.config.expiry_warn_days):
                messages.append(
                    f"{self.tls.crl_path}: CRL needs its next update in {left.days} days "
                    f"({crl.next_update_utc:%Y-%m-%d %H:%M} UTC); after that every client "
                    f"is refused: refresh it with `exogpu certs revoke {self.config.certs}`"
                )
        for message in messages:
            _log.warning(message)
            await self._audit(
                EventType.CERT_EXPIRING, Severity.WARNING, details={"message": message}
            )

    async def _watch(self) -> None:
        """Runs until cancelled, whatever a reload meets."""
        while True:
            await asyncio.sleep(self.config.reload_interval)
            await self.reload()
            if time.monotonic() - self._last_expiry_check > 86400:
                try:
                    await self._check_expiry()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # unreadable files: reported, watched again
                    await self._rejected("certificates", exc)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> int:
        await self._audit(
            EventType.SYSTEM_START,
            details={
                "node": self.config.node,
                "bind": self.config.bind,
                "principals": sorted(self.access.policy.principals),
                "revocation": self.tls.crl is not None,
                "limits": dataclasses.asdict(self.config.limits),
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
        self._gates = Gates(self.config.limits, self.tls.context, self)
        self._listener = Listener(
            self._gates,
            self.config.bind,
            self.config.port,
            on_exhausted=self._accept_exhausted,
        )
        self.port = self._listener.start()
        self._watcher = asyncio.create_task(self._watch())
        return self.port

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._listener is not None:
            self._listener.close()  # no new connections
        if self._gates is not None:
            self._gates.abort_all()  # those still in their handshake
        if self._runner is not None:
            await self._runner.cleanup()  # in-flight requests finish
            self._runner = None
        self.refusals.flush()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
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
