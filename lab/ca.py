"""The lab's certificate authority: made once per state dir, it signs the lab hosts' TLS certificates
(the registry's, the proxy's), and every lab host trusts it system-wide.

`<state>/ca.key` (0600, never printed) and `<state>/ca.crt` (the client's copy, e.g. for
`requests.get(..., verify=...)` or the inventory's `tls_ca_bundle`). Uses `cryptography` (a
dependency of paramiko, so of Fabric).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MACHINE_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian's; Go, curl and OpenSSL read it
CA_DAYS = 3650
LEAF_DAYS = 825


def cert_path(state: Path) -> Path:
    """The lab CA's certificate, the client side's copy."""
    return state / "ca.crt"


def ensure(state: Path) -> Path:
    """Make the lab CA in `state` unless it is there; return its certificate's path."""
    key_file, cert_file = state / "ca.key", cert_path(state)
    if key_file.exists() and cert_file.exists():
        return cert_file
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"binderhub-ops lab CA ({state})"[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    write_private(key_file, _key_pem(key))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file


def issue(state: Path, common_name: str, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """A server certificate from the lab CA for these addresses and names: (leaf + CA chain PEM, key PEM)."""
    ca_cert = x509.load_pem_x509_certificate(cert_path(state).read_bytes())
    ca_key = serialization.load_pem_private_key((state / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    until = now + datetime.timedelta(days=LEAF_DAYS)
    names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips] + [x509.DNSName(d) for d in dns]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    return chain, _key_pem(key)


def bundle(state: Path) -> bytes:
    """The machine's CA bundle plus the lab CA: what the hosts' /etc/ssl/certs/ca-certificates.crt holds."""
    machine = MACHINE_BUNDLE.read_bytes() if MACHINE_BUNDLE.exists() else b""
    if machine and not machine.endswith(b"\n"):
        machine += b"\n"
    return machine + cert_path(state).read_bytes()


def write_private(path: Path, data: bytes, gid: int = 0, mode: int = 0o600) -> None:
    """Write a key file that only root (and group `gid` when mode allows) can read, created so from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chown(tmp, 0, gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
