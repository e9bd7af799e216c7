"""Who may do what: RBAC with quotas, guarded sessions, a tamper-evident audit log
and mutual TLS. Pure Python on top of the core; the core knows nothing of it."""

from __future__ import annotations

from exogpu.security.audit import AuditLog, AuditWriterFailed, EventType, Severity
from exogpu.security.audit_query import AuditPage, query
from exogpu.security.audit_verify import VerifyReport, verify_files
from exogpu.security.policy_file import dump_policy, load_policy, parse_policy, save_policy
from exogpu.security.rbac import (
    ROLE_PERMISSIONS,
    AccessControl,
    Permission,
    PermissionDenied,
    Policy,
    PolicyError,
    PrincipalPolicy,
    QuotaExceeded,
    Role,
)
from exogpu.security.session import GuardedBuffer, Session

__all__ = [
    "ROLE_PERMISSIONS",
    "AccessControl",
    "AuditLog",
    "AuditPage",
    "AuditWriterFailed",
    "EventType",
    "GuardedBuffer",
    "Permission",
    "PermissionDenied",
    "Policy",
    "PolicyError",
    "PrincipalPolicy",
    "QuotaExceeded",
    "Role",
    "Session",
    "Severity",
    "VerifyReport",
    "dump_policy",
    "load_policy",
    "parse_policy",
    "query",
    "save_policy",
    "verify_files",
]
