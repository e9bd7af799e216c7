"""Ray's own mutual TLS, from the files ``exogpu certs init`` writes.

Ray secures its gRPC with ``RAY_USE_TLS=1`` and three files: the node's
certificate (presented both as server and as client), its key, and the CA
that every peer's certificate must chain to. ``exogpu certs init DIR --node
NAME=IP`` writes exactly those (``NAME.pem``, ``NAME.key``, ``ca.pem``); the
IP matters, because a gRPC client checks the address it dialled against the
server's certificate. Every Ray process of a node, a driver on it included,
uses that node's files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from exogpu import InvalidArgument
from exogpu.security.tls import node_files


def ray_tls_env(
    certs_dir: str | os.PathLike[str], node: str, ip: str | None = None
) -> dict[str, str]:
    """The environment that makes a Ray node (``ray start``, a driver) speak
    mutual TLS with `node`'s certificate from `certs_dir`.

    Checks what Ray would only find out at its first handshake: the files are
    there, the key is not readable by others, the certificate was issued by
    the CA and is valid now, and (when `ip` is given) it names that address.
    Raises exogpu.InvalidArgument naming the problem."""
    files = node_files(certs_dir, node)
    for path in (files.cert, files.key, files.ca):
        if not path.is_file():
            raise InvalidArgument(
                f"{path} is missing: run `exogpu certs init {certs_dir} --node {node}=IP`"
            )
    if os.name == "posix" and files.key.stat().st_mode & 0o077:
        raise InvalidArgument(f"{files.key} is readable by others: chmod 600 it")
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    except ValueError as exc:
        raise InvalidArgument(f"cannot read the certificates in {certs_dir}: {exc}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise InvalidArgument(f"{files.cert} was not issued by {files.ca}: {exc}") from None
    now = dt.datetime.now(dt.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InvalidArgument(
            f"{files.cert} is valid from {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, not now: renew it with `exogpu certs init`"
        )
    if ip is not None and ipaddress.ip_address(ip) not in _ip_sans(cert):
        raise InvalidArgument(
            f"{files.cert} does not name {ip}: Ray's peers dial that address; reissue it "
            f"with `exogpu certs init {certs_dir} --node {node}={ip}`"
        )
    return {
        "RAY_USE_TLS": "1",
        "RAY_TLS_SERVER_CERT": str(Path(files.cert).resolve()),
        "RAY_TLS_SERVER_KEY": str(Path(files.key).resolve()),
        "RAY_TLS_CA_CERT": str(Path(files.ca).resolve()),
    }


def _ip_sans(cert: x509.Certificate) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(sans.get_values_for_type(x509.IPAddress))  # type: ignore[arg-type]

__all__ = ["ray_tls_env"]
