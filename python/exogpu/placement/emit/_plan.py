"""What every engine's emitter reads from a placement: its stages, each with
its device's backend kind and the transformer blocks it holds, and the
node addresses a user gives.

A plan's layers follow the model catalog (exogpu.models): an optional
embedding first (named ``embed``), the transformer blocks, an optional output
head last (named ``output``). Engines count only the blocks in their layer
flags; the embedding and the head have fixed homes in each engine.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exogpu import InvalidArgument
from exogpu.placement.problem import Problem
from exogpu.placement.result import Placement


class PlanNotExpressible(InvalidArgument):
    """The plan cannot be written in this engine's flags; the message says why."""

    def __init__(self, engine: str, reason: str) -> None:
        super().__init__(f"{engine} cannot run this plan: {reason}")
        self.engine = engine
        self.reason = reason


class NodeAddressMissing(PlanNotExpressible):
    """A node the plan runs stages on has no known address."""

    def __init__(self, engine: str, node: str, devices: Sequence[str]) -> None:
        super().__init__(
            engine,
            f"no address is known for node {node!r}, which runs "
            f"{', '.join(repr(d) for d in devices)} (give it as HOST or HOST:PORT)",
        )
        self.node = node


@dataclass(frozen=True)
class Layout:
    """Which of the plan's layers are the embedding and the output head; the
    layers between them are transformer blocks."""

    embedding: bool
    output: bool

    @classmethod
    def of(cls, problem: Problem) -> Layout:
        """The catalog's naming: ``embed`` first, ``output`` last."""
        names = [x.name for x in problem.layers]
        many = len(names) > 1
        return cls(embedding=many and names[0] == "embed", output=many and names[-1] == "output")


# Backend kinds a device id names (exogpu ids end in KIND:INDEX).
KINDS = ("cpu", "cuda", "hip", "vulkan", "metal", "directml")
_KIND_INDEX = re.compile(r"(?:^|:)([a-z]+):(\d+)$")


@dataclass(frozen=True)
class Part:
    """One stage of the plan, as an engine sees it."""

    device: str
    node: str
    kind: str  # one of KINDS
    index: int  # the device's ordinal within its backend on its node
    first_block: int  # index among the transformer blocks
    blocks: int  # transformer blocks in this stage (may be 0)
    embedding: bool  # holds the embedding
    output: bool  # holds the output head


def plan_parts(
    engine: str, placement: Placement | Mapping[str, Any], problem: Problem, layout: Layout
) -> list[Part]:
    """The placement's stages in order, checked against the problem."""
    if isinstance(placement, Mapping):
        placement = Placement.from_json(placement)
    if not isinstance(placement, Placement):
        raise InvalidArgument("placement must be a Placement or its to_json() dict")
    if not placement.feasible:
        raise InvalidArgument(
            f"the placement does not fit its devices: {placement.infeasible_reason}"
        )
    n = len(problem.layers)
    if n - layout.embedding - layout.output < 1:
        raise PlanNotExpressible(engine, "the model has no transformer block between its ends")
    nodes = {d.id: d.node for d in problem.devices}
    parts: list[Part] = []
    seen: set[str] = set()
    expected = 0
    for i, s in enumerate(placement.stages):
        if s.device not in nodes:
            raise InvalidArgument(
                f"placement stage {i} is on {s.device!r}, not a device of the problem"
            )
        if s.device in seen:
            raise InvalidArgument(f"placement puts two stages on {s.device!r}")
        if s.first_layer != expected or s.last_layer < s.first_layer:
            raise InvalidArgument(
                f"placement stage {i} covers layers {s.first_layer}..{s.last_layer}; "
                f"stages must be contiguous from layer 0"
            )
        seen.add(s.device)
        expected = s.last_layer + 1
        kind, index = device_kind(engine, s.device)
        first_block = max(s.first_layer - layout.embedding, 0)
        end_block = min(s.last_layer + 1 - layout.embedding, n - layout.embedding - layout.output)
        parts.append(
            Part(
                device=s.device,
                node=nodes[s.device],
                kind=kind,
                index=index,
                first_block=first_block,
                blocks=max(end_block - first_block, 0),
                embedding=layout.embedding and s.first_layer == 0,
                output=layout.output and s.last_layer == n - 1,
            )
        )
    if expected != n:
        raise InvalidArgument(f"placement covers layers 0..{expected - 1}; the problem has {n}")
    return parts


def device_kind(engine: str, device_id: str) -> tuple[str, int]:
    """(backend kind, ordinal) from an exogpu device id such as ``pc:cuda:1``."""
    m = _KIND_INDEX.search(device_id)
    if m is None or m.group(1) not in KINDS:
        raise PlanNotExpressible(
            engine,
            f"cannot tell which backend device {device_id!r} is: its id must end in "
            f"KIND:INDEX with KIND one of {', '.join(KINDS)}",
        )
    return m.group(1), int(m.group(2))


_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        """HOST:PORT, an IPv6 literal in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_addresses(
    addresses: Mapping[str, str] | None, problem: Problem, default_port: int
) -> dict[str, Address]:
    """Node name -> Address, from ``{"node": "HOST" or "HOST:PORT"}``.

    Hosts are host names or IP literals (nothing that a shell or an engine's
    comma-separated list would read as more than one word); ports 1..65535.
    """
    from exogpu.netprobe import parse_endpoint

    if isinstance(default_port, bool) or not isinstance(default_port, int):
        raise InvalidArgument(f"the default port must be an integer, got {default_port!r}")
    if not 1 <= default_port <= 65535:
        raise InvalidArgument(f"the default port must be from 1 to 65535, got {default_port}")
    nodes = {d.node for d in problem.devices}
    out: dict[str, Address] = {}
    for node, text in (addresses or {}).items():
        if node not in nodes:
            raise InvalidArgument(
                f"an address is given for node {node!r}, but no device of the problem is on it"
            )
        if not isinstance(text, str):
            raise InvalidArgument(f"node {node!r}: the address must be a string, got {text!r}")
        try:
            host, port = parse_endpoint(text, default_port)
        except InvalidArgument as e:
            raise InvalidArgument(f"node {node!r}: {e}") from None
        if not _HOST.fullmatch(host):
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise InvalidArgument(
                    f"node {node!r}: {host[:80]!r} is not a host name or IP address"
                ) from None
        out[node] = Address(host, port)
    by_endpoint: dict[str, str] = {}
    for node, address in out.items():
        other = by_endpoint.setdefault(address.endpoint, node)
        if other != node:
            raise InvalidArgument(
                f"nodes {other!r} and {node!r} have the same address {address.endpoint}"
            )
    return out


@dataclass(frozen=True)
class Command:
    """One command to run: where (a node, or None for the host that drives
    the engine), its argv and its environment."""

    node: str | None
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    what: str = ""  # what it is for, when the program does not say

    def render(self) -> str:
        """As a user pastes it into a POSIX shell (every word quoted as needed)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        return f"{env} {shlex.join(self.argv)}" if env else shlex.join(self.argv)

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "argv": list(self.argv),
            "env": dict(self.env),
            "what": self.what,
        }


def render_commands(commands: Sequence[Command], notes: Sequence[str]) -> str:
    """Every command under a comment saying where it runs, then the notes."""
    lines: list[str] = []
    for c in commands:
        where = "the client" if c.node is None else c.node
        lines.append(f"# on {where}: {c.what}" if c.what else f"# on {where}")
        lines.append(c.render())
    lines.extend(f"# note: {note}" for note in notes)
    return "\n".join(lines)
