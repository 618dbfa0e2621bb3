"""``mbd certs``: the certificates and secrets docker-compose.yml needs to run mbd across hosts.

- A small certificate authority (``ca.pem``; its key ``ca.key``, 0600) and one certificate for
  the Kafka brokers signed by it, for the names clients and brokers dial (``kafka-1`` to
  ``kafka-3`` in docker-compose.yml):
  ``broker.pem`` (its certificate and the CA's) and ``broker.p12``, the broker's keystore (its
  key and that chain, encrypted with a generated password). PKCS#12, not Kafka's PEM keystore:
  that one needs an encrypted PKCS#8 key, and Java 17 cannot decrypt PBES2 (what OpenSSL and
  ``cryptography`` write) there ("PBES2 SecretKeyFactory not available"), while a PKCS#12 store
  with PBES2/AES-256 it reads. Clients trust ``ca.pem`` only (``MBD_KAFKA_SSL_CAFILE``).
- Two env files (0600, never committed): ``compose.env`` for mbd's services and Spark (the
  Kafka client user's password, Spark's authentication secret) and ``compose-kafka.env`` for
  the broker alone (its own users' passwords, its key's password, the cluster id).

Existing files and values are kept, so running it again changes nothing; ``renew`` makes new
certificates (the secrets stay).
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.hazmat.primitives.serialization.pkcs12 import PBES
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.files import SECRET_MODE, read_secret, write_atomic, write_secret
from common.settings import PROJECT_ROOT

DEFAULT_DIR = PROJECT_ROOT / "infra" / "certs"
DEFAULT_ENV_FILE = PROJECT_ROOT / "infra" / "compose.env"
DEFAULT_KAFKA_ENV_FILE = PROJECT_ROOT / "infra" / "compose-kafka.env"
DEFAULT_HOSTS = ("kafka-1", "kafka-2", "kafka-3", "localhost", "127.0.0.1")
KEY_PASSWORD_VARIABLE = "MBD_KAFKA_INTERNAL_SSL_KEYSTORE_PASSWORD"
# What each env file holds: variable → how a new value is made.
SERVICE_SECRETS = (
    "MBD_KAFKA_SASL_PASSWORD",
    "_SPARK_AUTH_SECRET",
    "MBD_API_READ_TOKEN",
    "MBD_API_ADMIN_TOKEN",
)
KAFKA_SECRETS = (
    "MBD_KAFKA_SASL_PASSWORD",  # the client user, written into the metadata at format time
    "MBD_KAFKA_INTERNAL_BROKER_PASSWORD",
    "MBD_KAFKA_INTERNAL_CONTROLLER_PASSWORD",
    KEY_PASSWORD_VARIABLE,
    "MBD_KAFKA_CLUSTER_ID",
)


@dataclass(frozen=True, kw_only=True)
class CertFiles:
    ca_cert: Path
    ca_key: Path
    broker_cert: Path
    broker_keystore: Path
    env_file: Path
    kafka_env_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mbd"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _certificate(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey, *, days: int, ca: bool,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )  # fmt: skip
    if ca:
        usage = x509.KeyUsage(digital_signature=False, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              key_cert_sign=True, crl_sign=True, encipher_only=False,
                              decipher_only=False)  # fmt: skip
        builder = builder.add_extension(usage, critical=True)
    else:
        builder = builder.add_extension(_san(hosts), critical=False).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    lines = read_secret(path).splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def ensure_env_file(
    path: Path, names: tuple[str, ...], *, shared: dict[str, str]
) -> dict[str, str]:
    """``path`` (0600) with a value for each of ``names``: kept if present, else taken from
    ``shared`` (a value both env files must agree on), else generated."""
    values = _load_env(path)
    for name in names:
        if name not in values:
            values[name] = shared.get(name) or (
                _cluster_id() if name == "MBD_KAFKA_CLUSTER_ID" else secrets.token_urlsafe(32)
            )
        shared.setdefault(name, values[name])
    header = "# Generated by `mbd certs`; secrets: keep this file 0600 and out of git.\n"
    write_secret(path, header + "".join(f"{name}={value}\n" for name, value in values.items()))
    return values


def _cluster_id() -> str:
    from infra.broker import new_cluster_id

    return new_cluster_id()


def make_certs(
    folder: Path = DEFAULT_DIR, *, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 825,
    env_file: Path = DEFAULT_ENV_FILE, kafka_env_file: Path = DEFAULT_KAFKA_ENV_FILE,
    renew: bool = False,
) -> CertFiles:  # fmt: skip
    """Make (or keep) the CA, the broker's certificate and keystore, and both env files."""
    shared = _load_env(kafka_env_file)
    service_env = ensure_env_file(env_file, SERVICE_SECRETS, shared=shared)
    kafka_env = ensure_env_file(kafka_env_file, KAFKA_SECRETS, shared=dict(service_env))
    files = CertFiles(
        ca_cert=folder / "ca.pem", ca_key=folder / "ca.key", broker_cert=folder / "broker.pem",
        broker_keystore=folder / "broker.p12", env_file=env_file,
        kafka_env_file=kafka_env_file,
    )  # fmt: skip
    if files.broker_keystore.exists() and files.ca_cert.exists() and not renew:
        return files
    folder.mkdir(parents=True, exist_ok=True)
    if files.ca_key.exists() and files.ca_cert.exists():
        ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate(_name("mbd CA"), ca_key, _name("mbd CA"), ca_key, days=days, ca=True)
        key_pem = ca_key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())  # fmt: skip
        write_atomic(files.ca_key, key_pem, mode=SECRET_MODE)
        write_atomic(files.ca_cert, _pem(ca_cert))
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = _certificate(_name(hosts[0]), broker_key, ca_cert.subject, ca_key, days=days,
                               ca=False, hosts=hosts)  # fmt: skip
    password = kafka_env[KEY_PASSWORD_VARIABLE].encode()
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50_000)
        .key_cert_algorithm(PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    keystore = pkcs12.serialize_key_and_certificates(
        b"broker", broker_key, broker_cert, [ca_cert], encryption
    )
    write_atomic(files.broker_keystore, keystore, mode=SECRET_MODE)
    write_atomic(files.broker_cert, _pem(broker_cert) + _pem(ca_cert))
    return files
