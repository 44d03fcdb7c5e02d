"""The team server's TLS: its certificate (made at the first start, or given), and clients trusting it.

Basic auth sends the password with every request, so the server is reachable from other machines
only over HTTPS. Its certificate is self-signed, made once for the host's names and addresses
(kept in `.mlflow-server/tls/`, the key readable by its owner only), or the one given with
`CERT=… KEY=…`. Clients trust it through MLflow's own setting, MLFLOW_TRACKING_SERVER_CERT_PATH,
which this project's health check and error messages honour as MLflow's client does.
"""

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from team_server.postgres import ServerError

CERT_VARIABLE = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # MLflow's: the CA bundle its client trusts
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


def client_context(url: str) -> ssl.SSLContext | None:
    """For urllib: the context trusting MLFLOW_TRACKING_SERVER_CERT_PATH (if set) for an https URL."""
    if not url.startswith("https://"):
        return None
    given = os.environ.get(CERT_VARIABLE) or None
    try:
        return ssl.create_default_context(cafile=given)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"{CERT_VARIABLE}={given}: not a readable PEM certificate "
                         f"({getattr(error, 'reason', None) or error})") from None


def is_certificate_error(error: BaseException) -> bool:
    """Whether a failed request failed on the server's certificate (urllib's or requests')."""
    seen, depth = error, 0
    while isinstance(seen, BaseException) and depth < 10:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen, depth = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__, depth + 1
    return False


def untrusted(url: str) -> str:
    """What to do when `url`'s certificate is not trusted: name the variable."""
    given = os.environ.get(CERT_VARIABLE)
    now = f"{CERT_VARIABLE}={given} does not verify it" if given else f"{CERT_VARIABLE} is not set"
    return (f"MLflow tracking server {url}: its TLS certificate is not trusted ({now}): set "
            f"{CERT_VARIABLE} to the server's certificate (.mlflow-server/tls/cert.pem on its host)")
