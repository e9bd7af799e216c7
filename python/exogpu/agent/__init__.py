"""The exogpu node agent (HTTPS, mutual TLS) and its client."""

from __future__ import annotations

from exogpu.agent.client import AgentClient, AgentError
from exogpu.agent.server import Agent, AgentConfig, AgentThread, NetworkProbeHook, run_agent

__all__ = [
    "Agent",
    "AgentClient",
    "AgentConfig",
    "AgentError",
    "AgentThread",
    "NetworkProbeHook",
    "run_agent",
]
