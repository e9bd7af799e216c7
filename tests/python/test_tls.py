"""Certificates, pins and TLS contexts."""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exogpu.security.tls import (
    CRL_FILE,
    PinMismatch,
    ReloadingServerContext,
    RevocationError,
    check_pin,
    client_context,
    crl_number,
    expiry_warnings,
    init_certs,
    issue_node_certificate,
    issue_nodes,
    load_ca,
    load_crl,
    make_ca,
    revoke,
    server_context,
    spki_pin,
    write_pem,
)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_makes_ca_and_node_certificates(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    made = init_certs(d, ["node-a", "node-b.lan"])
    assert sorted(p.name for p in d.iterdir()) == [
        "ca.key", "ca.pem", "crl.pem", "node-a.key", "node-a.pem", "node-b.lan.key",
        "node-b.lan.pem"]
    for key in d.glob("*.key"):
        assert (key.stat().st_mode & 0o777) == 0o600, key
    ca = load(d / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for files, name in zip(made, ["node-a", "node-b.lan"], strict=False):
        cert = load(files.cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [name]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
        pub = cert.public_key()
        assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        cert.verify_directly_issued_by(ca)
    # openssl agrees: the chain verifies for both purposes
    for purpose in ("sslserver", "sslclient"):
        out = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile",
                              str(d / "ca.pem"), str(d / "node-a.pem")],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr


def test_init_reuses_the_ca_and_refuses_half_a_ca(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    init_certs(d, ["a"])
    ca_before = (d / "ca.pem").read_bytes()
    init_certs(d, ["b"])
    assert (d / "ca.pem").read_bytes() == ca_before
    load(d / "b.pem").verify_directly_issued_by(load(d / "ca.pem"))
    (d / "ca.key").unlink()
    with pytest.raises(FileExistsError, match=r"only one of ca\.pem and ca\.key"):
        init_certs(d, ["c"])
    assert not (d / "c.pem").exists()


@pytest.mark.parametrize("name", ["", "bad name", "-lead", "a..b", "x" * 64, "ünï"])
def test_invalid_node_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a valid DNS name"):
        init_certs(tmp_path / "certs", [name])
    assert not (tmp_path / "certs").exists()


def test_spki_pin_matches_openssl(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    init_certs(d, ["node-a"])
    pipeline = (f"openssl x509 -in {d / 'node-a.pem'} -pubkey -noout | "
                "openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64")
    expected = subprocess.run(pipeline, shell=True, capture_output=True, text=True,
                              check=True).stdout.strip()
    cert = load(d / "node-a.pem")
    assert spki_pin(cert) == f"sha256//{expected}"
    der = cert.public_bytes(serialization.Encoding.DER)
    assert check_pin(der, ["sha256//other", spki_pin(cert)]) == spki_pin(cert)
    with pytest.raises(PinMismatch, match="matches none of the 1 pinned keys"):
        check_pin(der, ["sha256//AAAA"])
    with pytest.raises(PinMismatch, match="no certificate"):
        check_pin(None, [spki_pin(cert)])


def test_expiry_warnings(tmp_path: Path) -> None:
    init_certs(tmp_path, ["n"])
    ca = load_ca(tmp_path)
    now = dt.datetime.now(dt.timezone.utc)
    fresh, _ = issue_node_certificate(ca, "fresh", days=365)
    soon, _ = issue_node_certificate(ca, "soon", days=10)
    gone, _ = issue_node_certificate(ca, "gone", days=1, not_before=now - dt.timedelta(days=5))
    msgs = expiry_warnings([("fresh", fresh), ("soon", soon), ("gone", gone)], warn_days=30)
    assert len(msgs) == 2
    assert msgs[0].startswith("soon: certificate expires in 9 days")
    assert msgs[1].startswith("gone: certificate EXPIRED on")


def test_contexts_are_tls13_only_and_require_certificates(tmp_path: Path) -> None:
    init_certs(tmp_path, ["n"])
    args = (tmp_path / "n.pem", tmp_path / "n.key", tmp_path / "ca.pem")
    for ctx in (server_context(*args), client_context(*args)):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert client_context(*args).check_hostname


def test_reload_with_mismatched_key_keeps_the_old_context(tmp_path: Path) -> None:
    init_certs(tmp_path, ["n", "m"])
    rc = ReloadingServerContext(tmp_path / "n.pem", tmp_path / "n.key", tmp_path / "ca.pem")
    before = rc._current
    (tmp_path / "n.key").write_bytes((tmp_path / "m.key").read_bytes())
    with pytest.raises(ssl.SSLError):
        rc.reload_if_changed()
    assert rc._current is before


def test_crl_is_signed_by_the_ca_and_openssl_agrees(tmp_path: Path) -> None:
    init_certs(tmp_path, ["a", "b"])
    ca = load(tmp_path / "ca.pem")
    empty = load_crl(tmp_path / CRL_FILE, ca)
    assert len(empty) == 0 and crl_number(empty) == 1
    serial = load(tmp_path / "a.pem").serial_number
    crl = revoke(tmp_path, [serial])
    assert crl_number(crl) == 2
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    # an independent verifier: openssl itself
    verify = ["openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "ca.pem"),
              "-CRLfile", str(tmp_path / CRL_FILE)]
    a = subprocess.run([*verify, str(tmp_path / "a.pem")], capture_output=True, text=True,
                       check=False)
    b = subprocess.run([*verify, str(tmp_path / "b.pem")], capture_output=True, text=True,
                       check=False)
    assert a.returncode != 0 and "certificate revoked" in a.stdout + a.stderr
    assert b.returncode == 0, b.stdout + b.stderr
    # revoking again keeps what was revoked
    again = revoke(tmp_path, [])
    assert crl_number(again) == 3 and len(again) == 1


def test_reissue_revokes_only_certificates_of_this_ca(tmp_path: Path) -> None:
    first = issue_nodes(tmp_path, ["a"])
    assert first[0].revoked is None
    second = issue_nodes(tmp_path, ["a"])
    assert second[0].revoked == first[0].serial
    other = tmp_path / "other"
    foreign, _ = issue_node_certificate(make_ca("elsewhere"), "a")
    other.mkdir()
    init_certs(other, ["x"])
    write_pem(other / "a.pem", foreign)  # a certificate this CA did not issue
    assert issue_nodes(other, ["a"])[0].revoked is None


@pytest.mark.parametrize("fault", ["other-ca", "tampered", "expired", "too-big", "missing"])
def test_load_crl_refuses(tmp_path: Path, fault: str) -> None:
    init_certs(tmp_path, ["a"])
    ca = load(tmp_path / "ca.pem")
    path = tmp_path / CRL_FILE
    now = dt.datetime.now(dt.timezone.utc)
    if fault == "other-ca":
        init_certs(tmp_path / "o", ["a"])
        path = tmp_path / "o" / CRL_FILE
    elif fault == "tampered":
        crl = x509.load_pem_x509_crl(path.read_bytes())
        der = bytearray(crl.public_bytes(serialization.Encoding.DER))
        der[-1] ^= 1  # the last byte of the signature
        path.write_bytes(x509.load_der_x509_crl(bytes(der)).public_bytes(
            serialization.Encoding.PEM))
    elif fault == "too-big":
        path.write_bytes(b"A" * (17 << 20))
    elif fault == "missing":
        path.unlink()
    with pytest.raises(RevocationError) as info:
        load_crl(path, ca, now=now + dt.timedelta(days=400) if fault == "expired" else None)
    expected = {"other-ca": "does not verify", "tampered": "does not verify",
                "expired": "expired", "too-big": "more than", "missing": "cannot read"}[fault]
    assert expected in str(info.value) and str(path) in str(info.value)


def test_reload_refuses_an_older_crl(tmp_path: Path) -> None:
    init_certs(tmp_path, ["n"])
    old = (tmp_path / CRL_FILE).read_bytes()
    revoke(tmp_path, [12345])
    rc = ReloadingServerContext(tmp_path / "n.pem", tmp_path / "n.key", tmp_path / "ca.pem",
                                crl=tmp_path / CRL_FILE)
    assert rc.crl is not None and crl_number(rc.crl) == 2
    before = rc._current
    (tmp_path / CRL_FILE).write_bytes(old)
    with pytest.raises(RevocationError, match="older than the one in force"):
        rc.reload()
    assert rc._current is before and crl_number(rc.crl) == 2
    assert rc.reload_if_changed() is False  # a refused file is not retried until it changes


def test_node_addresses_become_sans_and_bad_specs_are_refused(tmp_path: Path) -> None:
    # Ray's gRPC client checks the dialled IP against the server's certificate.
    files = init_certs(tmp_path, ["head=10.0.0.1,head.lan"])[0]
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["head", "head.lan"]
    for bad in ["head=", "head=,", "head=bad name"]:
        with pytest.raises(ValueError):
            init_certs(tmp_path / "bad", [bad])
