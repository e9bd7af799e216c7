"""Certificates and TLS 1.3 contexts for mutual TLS between exogpu nodes.

`init_certs(DIR, ["node-a", ...])` makes an ECDSA P-256 CA (DIR/ca.pem, DIR/ca.key)
and per node a certificate good for both server and client authentication, with the
node name as common name and DNS SAN (DIR/NAME.pem, DIR/NAME.key). Keys are written
readable by the owner only. An existing CA in DIR is reused, so nodes can be added.

Contexts are TLS 1.3 only and require a peer certificate from the CA on both sides.
Pins are SPKI SHA-256 digests in the `sha256//BASE64` form curl uses; a client may
hold several (old and new key) so that keys can be rotated without an outage.

Revocation: DIR/crl.pem is a CRL signed by the CA. `init_certs` writes an empty
one with the CA, and re-issuing a node's certificate revokes the one it replaces
(`revoke` takes back any certificate by serial). A server context built with the
CRL has OpenSSL check the client's certificate against it on every handshake.

`ReloadingServerContext` lets a running server take a new certificate or CRL
without a restart: every handshake is steered (from the SNI callback, which
OpenSSL runs for every ClientHello) to the context built from the newest files.
A CRL that is unsigned, expired, from another CA, or older (lower CRL number)
than the one in force is refused and the one in force stays: replaying an old
CRL cannot take a revocation back.
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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CRL_FILE",
    "CertificateAuthority",
    "Issued",
    "NodeFiles",
    "PinMismatch",
    "ReloadingServerContext",
    "RevocationError",
    "check_pin",
    "client_context",
    "common_name",
    "crl_number",
    "expiry_warnings",
    "init_certs",
    "issue_node_certificate",
    "issue_nodes",
    "load_ca",
    "load_crl",
    "node_files",
    "revoke",
    "serial_of",
    "server_context",
    "spki_pin",
    "write_key",
    "write_pem",
]

_UTC = dt.timezone.utc
CRL_FILE = "crl.pem"
# A CRL lists serials, a few dozen bytes each: 16 MiB is hundreds of thousands.
_MAX_CRL_BYTES = 16 << 20


class PinMismatch(ConnectionError):
    """The peer's public key matches none of the pins."""


class RevocationError(ValueError):
    """A CRL that cannot be trusted or used (unsigned, expired, other CA, replayed)."""


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


@dataclass(frozen=True)
class Issued:
    files: NodeFiles
    serial: int
    revoked: int | None  # serial of the certificate this one replaced and revoked


def _node_spec(spec: str) -> tuple[str, list[str]]:
    """`NAME` or `NAME=ADDR[,ADDR...]`: the node's name and extra SANs, IP
    addresses or DNS names (gRPC peers such as Ray's check the server's
    address against the certificate, so a node reached by IP needs its IP)."""
    name, sep, rest = spec.partition("=")
    _check_node_name(name)
    sans = [a.strip() for a in rest.split(",") if a.strip()]
    if sep and not sans:
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
    an existing node certificate is replaced and revoked (that is how certificates
    are rotated). A node given as `NAME=ADDR[,ADDR...]` also gets those addresses
    as SANs."""
    return [i.files for i in issue_nodes(directory, nodes, days=days, ca_days=ca_days)]


def _issued_by(path: Path, ca: CertificateAuthority) -> int | None:
    """The serial of the certificate at `path` when this CA issued it."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(ca.cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return None
    return cert.serial_number


def issue_nodes(
    directory: str | os.PathLike[str], nodes: Iterable[str], *, days: int = 365, ca_days: int = 3650
) -> list[Issued]:
    """`init_certs`, saying which certificate each node got and which it revoked."""
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
    old = {n: _issued_by(node_files(d, n).cert, ca) for n, _ in specs}
    # Revoke first: a crash between the two steps leaves a node without a valid
    # certificate (it fails closed), never with two.
    _revoke_with(d, ca, [s for s in old.values() if s is not None])
    out = []
    for n, sans in specs:
        cert, key = issue_node_certificate(ca, n, days=days, extra_sans=sans)
        files = node_files(d, n)
        write_key(files.key, key)  # key first: a cert never pairs with a missing key
        write_pem(files.cert, cert)
        out.append(Issued(files, cert.serial_number, old[n]))
    return out


# -- revocation ----------------------------------------------------------------------------
def load_crl(
    path: str | os.PathLike[str],
    ca: x509.Certificate,
    *,
    now: dt.datetime | None = None,
    check_expiry: bool = True,
) -> x509.CertificateRevocationList:
    """The CRL at `path`, checked: PEM, issued and signed by `ca`, not past its next
    update. RevocationError (naming the file and the fault) otherwise."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_CRL_BYTES + 1)
    except OSError as exc:
        raise RevocationError(f"{path}: cannot read the CRL: {exc.strerror}") from None
    if len(data) > _MAX_CRL_BYTES:
        raise RevocationError(f"{path}: more than {_MAX_CRL_BYTES} bytes; not a CRL of ours")
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError as exc:
        raise RevocationError(f"{path}: not a PEM CRL ({exc})") from None
    if crl.issuer != ca.subject:
        raise RevocationError(f"{path}: issued by {crl.issuer.rfc4514_string()}, not the CA")
    if not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise RevocationError(f"{path}: signature does not verify with the CA's key")
    if check_expiry:
        now = now or dt.datetime.now(_UTC)
        nxt = crl.next_update_utc
        if nxt is None or nxt <= now:
            raise RevocationError(
                f"{path}: expired (next update {nxt}); refresh it with `exogpu certs revoke DIR`"
            )
    return crl


def crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        ext = crl.extensions.get_extension_for_class(x509.CRLNumber)
    except x509.ExtensionNotFound:
        return 0
    return int(ext.value.crl_number)


def _revoke_with(
    d: Path, ca: CertificateAuthority, serials: Iterable[int], days: int = 365
) -> x509.CertificateRevocationList:
    path = d / CRL_FILE
    revoked: dict[int, dt.datetime] = {}
    number = 0
    if path.exists():
        old = load_crl(path, ca.cert, check_expiry=False)
        number = crl_number(old)
        revoked = {r.serial_number: r.revocation_date_utc for r in old}
    elif not path.parent.exists():
        raise FileNotFoundError(f"{d} does not exist")
    now = dt.datetime.now(_UTC)
    for serial in serials:
        revoked.setdefault(serial, now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number + 1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(ca.key, hashes.SHA256())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return crl


def revoke(
    directory: str | os.PathLike[str], serials: Iterable[int] = (), *, days: int = 365
) -> x509.CertificateRevocationList:
    """Add `serials` to DIR's CRL (made if missing), re-signed with a higher CRL number
    and a next update `days` ahead; with no serials it just refreshes the CRL."""
    d = Path(directory)
    if days < 1:
        raise ValueError(f"the CRL must be valid for at least one day, not {days}")
    return _revoke_with(d, load_ca(d), serials, days)


def serial_of(path: str | os.PathLike[str]) -> int:
    return int(x509.load_pem_x509_certificate(Path(path).read_bytes()).serial_number)


# -- contexts ------------------------------------------------------------------------------
def _tls13_only(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    ca: str | os.PathLike[str],
    crl: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """TLS 1.3 only; a client certificate from `ca` is required, and, with `crl`,
    one not revoked by it (checked on every handshake)."""
    ctx = _tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    if crl is not None:
        load_crl(crl, x509.load_pem_x509_certificate(Path(ca).read_bytes()))
        ctx.load_verify_locations(crl)  # the CRL goes into the trust store...
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF  # ...and must be consulted
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
    """A server context whose certificate, key, CA and CRL can be replaced while running.

    `context` is the one given to the server; each new handshake is moved to the
    context built from the files at the last `reload()`. Connections already open
    keep what they negotiated. `observer`, if given, is told of every handshake
    (the SSL object and the error, None on success). With `crl`, every handshake
    checks the client's certificate against the CRL loaded last."""

    def __init__(
        self,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        ca: str | os.PathLike[str],
        observer: HandshakeObserver | None = None,
        crl: str | os.PathLike[str] | None = None,
    ):
        self.files = NodeFiles(Path(cert), Path(key), Path(ca))
        self.crl_path = Path(crl) if crl is not None else None
        self._lock = threading.Lock()
        self.crl: x509.CertificateRevocationList | None = None
        self._current = self._build()
        self._stamp = self._file_stamp()
        self.context = server_context(cert, key, ca, self.crl_path)
        self.context.sni_callback = self._pick
        if observer is not None:
            self.context.sslobject_class = _observed_sslobject(observer)

    def _build(self) -> ssl.SSLContext:
        crl = None
        if self.crl_path is not None:
            ca = x509.load_pem_x509_certificate(self.files.ca.read_bytes())
            crl = load_crl(self.crl_path, ca)
            old = self.crl
            if (
                old is not None
                and old.issuer == crl.issuer
                and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
                and old.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
                and crl_number(crl) < crl_number(old)
            ):
                raise RevocationError(
                    f"{self.crl_path}: CRL number {crl_number(crl)} is older than the one in "
                    f"force ({crl_number(old)}); an old CRL would take revocations back"
                )
        ctx = server_context(self.files.cert, self.files.key, self.files.ca, self.crl_path)
        self.crl = crl
        return ctx

    def _pick(
        self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        sock.context = self._current

    def _file_stamp(self) -> tuple[int, ...]:
        paths = [self.files.cert, self.files.key, self.files.ca]
        if self.crl_path is not None:
            paths.append(self.crl_path)
        return tuple(p.stat().st_mtime_ns for p in paths)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.files.cert.read_bytes())

    def reload(self) -> None:
        """Build a context from the files now; raises (keeping the old one) if they
        are unreadable, the key does not match the certificate, or the CRL is
        refused."""
        with self._lock:
            stamp = self._file_stamp()
            try:
                self._current = self._build()
            finally:
                self._stamp = stamp  # a refused set of files is not retried until it changes

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
