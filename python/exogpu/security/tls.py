"""Certificates and TLS 1.3 contexts for mutual TLS between exogpu nodes.

`init_certs(DIR, ["node-a", ...])` makes an ECDSA P-256 CA (DIR/ca.pem, DIR/ca.key)
and per node a certificate good for both server and client authentication, with the
node name as common name and DNS SAN (DIR/NAME.pem, DIR/NAME.key). Keys are written
readable by the owner only. An existing CA in DIR is reused, so nodes can be added.

Contexts are TLS 1.3 only and require a peer certificate from the CA on both sides.
Pins are SPKI SHA-256 digests in the `sha256//BASE64` form curl uses; a client may
hold several (old and new key) so that keys can be rotated without an outage.

`ReloadingServerContext` lets a running server take a new certificate without a
restart: every handshake is steered (from the SNI callback, which OpenSSL runs for
every ClientHello) to the context built from the newest files.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "NodeFiles",
    "PinMismatch",
    "ReloadingServerContext",
    "check_pin",
    "client_context",
    "common_name",
    "expiry_warnings",
    "init_certs",
    "issue_node_certificate",
    "load_ca",
    "node_files",
    "server_context",
    "spki_pin",
    "write_key",
    "write_pem",
]

_UTC = dt.timezone.utc


class PinMismatch(ConnectionError):
    """The peer's public key matches none of the pins."""


@dataclass(frozen=True)
class NodeFiles:
    cert: Path
    key: Path
    ca: Path


def node_files(directory: str | os.PathLike[str], node: str) -> NodeFiles:
    d = Path(directory)
    return NodeFiles(d / f"{node}.pem", d / f"{node}.key", d / "ca.pem")


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _check_node_name(name: str) -> None:
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(
            lab
            and len(lab) <= 63
            and all(c.isalnum() or c == "-" for c in lab)
            and lab[0] != "-"
            and lab[-1] != "-"
            and lab.isascii()
            for lab in labels
        )
    ):
        raise ValueError(
            f"node name {name!r} is not a valid DNS name (letters, digits, '-', "
            "dot-separated labels)"
        )


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM, unencrypted, created with mode 0600 (never readable by others, not even
    for an instant)."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_pem(path: Path, cert: x509.Certificate) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def make_ca(
    common_name: str = "exogpu cluster CA", days: int = 3650, not_before: dt.datetime | None = None
) -> CertificateAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(_UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert, key)


def issue_node_certificate(
    ca: CertificateAuthority,
    name: str,
    *,
    days: int = 365,
    not_before: dt.datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    extra_sans: Sequence[str] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for `name`, for both TLS server and client authentication."""
    _check_node_name(name)
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(_UTC) - dt.timedelta(minutes=5)
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for extra in extra_sans:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(extra)))
        except ValueError:
            sans.append(x509.DNSName(extra))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


def load_ca(directory: str | os.PathLike[str]) -> CertificateAuthority:
    d = Path(directory)
    cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{d / 'ca.key'} is not an EC private key")
    return CertificateAuthority(cert, key)


def _node_spec(spec: str) -> tuple[str, list[str]]:
    """`NAME` or `NAME=ADDR[,ADDR...]`: the node's name and extra SANs, IP
    addresses or DNS names (gRPC peers such as Ray's check the server's
    address against the certificate, so a node reached by IP needs its IP)."""
    name, _, rest = spec.partition("=")
    _check_node_name(name)
    sans = [a.strip() for a in rest.split(",") if a.strip()] if rest else []
    if rest and not sans:
        raise ValueError(f"node {spec!r}: no address after '='")
    for extra in sans:
        try:
            ipaddress.ip_address(extra)
        except ValueError:
            _check_node_name(extra)
    return name, sans


def init_certs(
    directory: str | os.PathLike[str], nodes: Iterable[str], *, days: int = 365, ca_days: int = 3650
) -> list[NodeFiles]:
    """Create (or reuse) the CA in `directory` and issue one certificate per node;
    an existing node certificate is replaced (that is how certificates are rotated).
    A node given as `NAME=ADDR[,ADDR...]` also gets those addresses as SANs."""
    specs = [_node_spec(n) for n in nodes]
    if not specs:
        raise ValueError("at least one --node is required")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    if (d / "ca.pem").exists() and (d / "ca.key").exists():
        ca = load_ca(d)
    elif (d / "ca.pem").exists() or (d / "ca.key").exists():
        raise FileExistsError(f"{d} holds only one of ca.pem and ca.key; refusing to replace it")
    else:
        ca = make_ca(days=ca_days)
        write_key(d / "ca.key", ca.key)
        write_pem(d / "ca.pem", ca.cert)
    out = []
    for n, sans in specs:
        cert, key = issue_node_certificate(ca, n, days=days, extra_sans=sans)
        files = node_files(d, n)
        write_key(files.key, key)  # key first: a cert never pairs with a missing key
        write_pem(files.cert, cert)
        out.append(files)
    return out


# -- contexts ------------------------------------------------------------------------------
def _tls13_only(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(
    cert: str | os.PathLike[str], key: str | os.PathLike[str], ca: str | os.PathLike[str]
) -> ssl.SSLContext:
    """TLS 1.3 only; a client certificate from `ca` is required."""
    ctx = _tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    return ctx


def client_context(
    cert: str | os.PathLike[str], key: str | os.PathLike[str], ca: str | os.PathLike[str]
) -> ssl.SSLContext:
    """TLS 1.3 only; presents `cert`; the server must have a certificate from `ca`
    naming the host asked for."""
    ctx = _tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = True
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    return ctx


HandshakeObserver = Callable[[ssl.SSLObject, "ssl.SSLError | None"], None]


def _observed_sslobject(observer: HandshakeObserver) -> type[ssl.SSLObject]:
    """An SSLObject class reporting each finished handshake, failed or not. asyncio
    drops failed handshakes silently (and without sending the alert), so this is the
    only place a server on asyncio can see and audit them."""

    class ObservedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                observer(self, exc)
                raise
            observer(self, None)

    return ObservedSSLObject


class ReloadingServerContext:
    """A server context whose certificate, key and CA can be replaced while running.

    `context` is the one given to the server; each new handshake is moved to the
    context built from the files at the last `reload()`. Connections already open
    keep what they negotiated. `observer`, if given, is told of every handshake
    (the SSL object and the error, None on success)."""

    def __init__(
        self,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        ca: str | os.PathLike[str],
        observer: HandshakeObserver | None = None,
    ):
        self.files = NodeFiles(Path(cert), Path(key), Path(ca))
        self._current = server_context(cert, key, ca)
        self._stamp = self._file_stamp()
        self._lock = threading.Lock()
        self.context = server_context(cert, key, ca)
        self.context.sni_callback = self._pick
        if observer is not None:
            self.context.sslobject_class = _observed_sslobject(observer)

    def _pick(
        self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        sock.context = self._current

    def _file_stamp(self) -> tuple[int, ...]:
        return tuple(p.stat().st_mtime_ns for p in (self.files.cert, self.files.key, self.files.ca))

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.files.cert.read_bytes())

    def reload(self) -> None:
        """Build a context from the files now; raises (keeping the old one) if they
        are unreadable or the key does not match the certificate."""
        with self._lock:
            fresh = server_context(self.files.cert, self.files.key, self.files.ca)
            self._current = fresh
            self._stamp = self._file_stamp()

    def reload_if_changed(self) -> bool:
        """Reload when any file changed since the last load; True if it did."""
        try:
            changed = self._file_stamp() != self._stamp
        except OSError:
            return False  # mid-replacement; try again next time
        if changed:
            self.reload()
        return changed


# -- pinning -------------------------------------------------------------------------------
def spki_pin(cert: x509.Certificate | bytes) -> str:
    """`sha256//BASE64` of the certificate's SubjectPublicKeyInfo (DER or object)."""
    if isinstance(cert, bytes):
        cert = x509.load_der_x509_certificate(cert)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def check_pin(peer_der: bytes | None, pins: Iterable[str]) -> str:
    """Raise PinMismatch unless the peer's key matches one of `pins`; returns the pin."""
    pins = set(pins)
    if peer_der is None:
        raise PinMismatch("peer sent no certificate; cannot check pins")
    pin = spki_pin(peer_der)
    if pin not in pins:
        raise PinMismatch(f"peer public key {pin} matches none of the {len(pins)} pinned keys")
    return pin


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else None
    return value if isinstance(value, str) else None


def expiry_warnings(
    certs: Iterable[tuple[str, x509.Certificate]],
    *,
    warn_days: int = 30,
    now: dt.datetime | None = None,
) -> list[str]:
    """Messages for certificates expired or expiring within `warn_days`."""
    now = now or dt.datetime.now(_UTC)
    out = []
    for label, cert in certs:
        end = cert.not_valid_after_utc
        left = end - now
        if left <= dt.timedelta(0):
            out.append(f"{label}: certificate EXPIRED on {end:%Y-%m-%d %H:%M} UTC")
        elif left <= dt.timedelta(days=warn_days):
            out.append(
                f"{label}: certificate expires in {left.days} days "
                f"({end:%Y-%m-%d %H:%M} UTC); renew it with `exogpu certs init`"
            )
    return out
