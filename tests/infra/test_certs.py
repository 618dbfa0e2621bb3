"""`mbd certs`: a CA, the broker's certificate signed by it, and 0600 secrets for compose."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from infra.certs import KEY_PASSWORD_VARIABLE, _load_env
from infra.cli import main


def make(tmp_path: Path, *extra: str) -> int:
    return main(["certs", "--dir", str(tmp_path / "certs"), "--hosts", "kafka,localhost,127.0.0.1",
                 "--env-file", str(tmp_path / "compose.env"),
                 "--kafka-env-file", str(tmp_path / "compose-kafka.env"), *extra])  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_broker_certificate_is_signed_by_the_ca_for_the_names_given(tmp_path: Path) -> None:
    assert make(tmp_path) == 0
    certs = tmp_path / "certs"
    assert sorted(p.name for p in certs.iterdir()) == ["broker.p12", "broker.pem", "ca.key",
                                                       "ca.pem"]  # fmt: skip
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    broker, chained_ca = x509.load_pem_x509_certificates((certs / "broker.pem").read_bytes())
    assert chained_ca == ca
    broker.verify_directly_issued_by(ca)  # raises unless the CA's key signed it
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not broker.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kafka", "localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_keys_and_secrets_are_0600_and_the_keystore_opens_with_its_password(
    tmp_path: Path,
) -> None:
    assert make(tmp_path) == 0
    for path in [tmp_path / "certs" / "ca.key", tmp_path / "certs" / "broker.p12",
                 tmp_path / "compose.env", tmp_path / "compose-kafka.env"]:  # fmt: skip
        assert mode(path) == 0o600, path
    kafka_env, service_env = (
        _load_env(tmp_path / "compose-kafka.env"),
        _load_env(tmp_path / "compose.env"),
    )
    assert kafka_env["MBD_KAFKA_SASL_PASSWORD"] == service_env["MBD_KAFKA_SASL_PASSWORD"]
    assert len(service_env["_SPARK_AUTH_SECRET"]) >= 32
    assert "MBD_KAFKA_INTERNAL_BROKER_PASSWORD" not in service_env  # the broker's own, apart
    key, cert, chain = pkcs12.load_key_and_certificates(
        (tmp_path / "certs" / "broker.p12").read_bytes(),
        kafka_env[KEY_PASSWORD_VARIABLE].encode(),
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey) and cert is not None and len(chain) == 1
    assert cert.public_key() == key.public_key()


def test_running_it_again_keeps_everything_and_renew_keeps_the_secrets(tmp_path: Path) -> None:
    assert make(tmp_path) == 0
    files = [tmp_path / "certs" / "broker.pem", tmp_path / "compose.env",
             tmp_path / "compose-kafka.env", tmp_path / "certs" / "ca.pem"]  # fmt: skip
    before = [path.read_bytes() for path in files]
    assert make(tmp_path) == 0
    assert [path.read_bytes() for path in files] == before
    assert make(tmp_path, "--renew") == 0
    after = [path.read_bytes() for path in files]
    assert after[0] != before[0]  # a new broker certificate
    assert after[1:] == before[1:]  # the same secrets and CA


def test_the_services_env_file_gives_the_api_tokens_it_accepts(tmp_path: Path) -> None:
    from common.settings import ApiSettings

    assert make(tmp_path) == 0
    values = _load_env(tmp_path / "compose.env")

    api = ApiSettings(
        read_token=values["MBD_API_READ_TOKEN"], admin_token=values["MBD_API_ADMIN_TOKEN"]
    )
    assert api.read_token is not None and api.admin_token is not None
    assert api.read_token.get_secret_value() != api.admin_token.get_secret_value()
