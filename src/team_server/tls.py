"""The team server's TLS certificate: made at the first start for this host's names, or given and checked.

Basic auth sends the password with every request, so the server is reachable from other machines
only over HTTPS. Its certificate is self-signed, made once for the host's names and addresses
(kept in `.mlflow-server/tls/`, the key readable by its owner only), or the one given with
`CERT=… KEY=…`. This is the server's side only: clients trust the certificate through MLflow's
own setting, MLFLOW_TRACKING_SERVER_CERT_PATH, which the project's clients honour as MLflow's
does (`tracking.access`: CERT_VARIABLE, the health check, the message for an untrusted one).
"""

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from team_server.postgres import ServerError

VALID_DAYS = 825  # the longest validity clients accept for a server certificate


def host_names() -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) this host answers to: its name, its fully qualified name,
    localhost, and every IPv4 address of its interfaces."""
    import psutil

    names = list(dict.fromkeys(n for n in (socket.gethostname(), socket.getfqdn(), "localhost") if n))
    addresses = [a.address for nics in psutil.net_if_addrs().values() for a in nics
                 if a.family == socket.AF_INET]
    return names, list(dict.fromkeys(["127.0.0.1", *addresses]))


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) in `folder`, made now if missing: a self-signed ECDSA P-256 certificate
    for `host_names`. The key is written 0600 before any byte of it."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names, addresses = host_names()
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    alternative = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(private, hashes.SHA256()))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key.touch(mode=0o600)
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def check_given(given: tuple[Path, Path]) -> tuple[Path, Path]:
    """The given certificate and key, absolute, if both can be read and the key by no one else."""
    certificate, key = (path.resolve() for path in given)
    for path, variable in ((certificate, "CERT"), (key, "KEY")):
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ServerError(f"{variable}={path}: not a readable file")
    if key.stat().st_mode & 0o077:
        raise ServerError(f"KEY={key}: others may read it (mode {oct(key.stat().st_mode & 0o777)}): "
                          f"`chmod 600 {key}` first")
    try:
        ssl.create_default_context().load_cert_chain(certificate, key)
    except (ssl.SSLError, OSError) as error:
        raise ServerError(f"CERT={certificate} and KEY={key} do not make a certificate and its key "
                          f"({error})") from None
    return certificate, key

