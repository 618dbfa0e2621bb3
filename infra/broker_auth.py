"""Who may talk to the embedded broker: its SASL users, their secret files and its listener config.

Three users, each with a password generated on first use and kept in its own 0600 file in the
broker's secrets folder (``<data dir>/secrets/`` unless ``MBD_BROKER_SECRETS_DIR`` names one,
which brokers of one cluster share):

- ``mbd``, the client user every mbd service logs in as (SCRAM-SHA-512);
- ``mbd-broker``, the broker's own user on its client listener (inter-broker, SCRAM-SHA-512);
- ``mbd-controller``, the only user of the KRaft controller listener (PLAIN, see
  :func:`listener_properties`).

SCRAM users live in the cluster's metadata log, so they are written when the storage is formatted
(:func:`scram_arguments`). The broker reads its own two passwords from its environment through
Kafka's ``EnvVarConfigProvider``: server.properties names them and holds none.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from common.files import ensure_secret, write_secret
from common.settings import KafkaSettings

CLIENT_USER = "mbd"
BROKER_USER = "mbd-broker"
CONTROLLER_USER = "mbd-controller"
CLIENT_MECHANISM = "SCRAM-SHA-512"
CLIENT_PASSWORD_FILE = "client.password"
BROKER_PASSWORD_FILE = "broker.password"
CONTROLLER_PASSWORD_FILE = "controller.password"
# The broker JVM's environment carries its own passwords; the provider is allowed these only.
ENV_BROKER_PASSWORD = "MBD_KAFKA_INTERNAL_BROKER_PASSWORD"
ENV_CONTROLLER_PASSWORD = "MBD_KAFKA_INTERNAL_CONTROLLER_PASSWORD"
ENV_PROVIDER = "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
# What a password may hold so that it needs no quoting in a JAAS line, a SCRAM argument or an
# argument file (ensure_secret's URL-safe tokens do).
_PLAIN_PASSWORD = re.compile(r"[A-Za-z0-9._~-]{16,256}")


class CredentialsError(RuntimeError):
    """A secret file exists but cannot serve as a broker password; the message names the file."""


@dataclass(frozen=True, kw_only=True)
class BrokerCredentials:
    secrets_dir: Path
    client: str
    broker: str
    controller: str

    @property
    def client_password_file(self) -> Path:
        return self.secrets_dir / CLIENT_PASSWORD_FILE

    def passwords(self) -> tuple[str, ...]:
        return (self.client, self.broker, self.controller)


def _password(path: Path) -> str:
    password = ensure_secret(path)
    if not _PLAIN_PASSWORD.fullmatch(password):
        raise CredentialsError(
            f"secret file {path} must hold 16-256 of A-Z a-z 0-9 . _ ~ - (delete it to have a "
            "new one generated, before the broker's storage is formatted)"
        )
    return password


def ensure_credentials(secrets_dir: Path) -> BrokerCredentials:
    """The broker's users' passwords from ``secrets_dir``, generating those missing (0600)."""
    secrets_dir = secrets_dir.resolve()
    return BrokerCredentials(
        secrets_dir=secrets_dir,
        client=_password(secrets_dir / CLIENT_PASSWORD_FILE),
        broker=_password(secrets_dir / BROKER_PASSWORD_FILE),
        controller=_password(secrets_dir / CONTROLLER_PASSWORD_FILE),
    )


def scram_arguments(credentials: BrokerCredentials) -> list[str]:
    """``kafka-storage format`` arguments that write the SCRAM users into the metadata log."""
    users = {CLIENT_USER: credentials.client, BROKER_USER: credentials.broker}
    return [
        argument
        for name, password in users.items()
        for argument in ("--add-scram", f"{CLIENT_MECHANISM}=[name={name},password={password}]")
    ]


def jvm_environment(credentials: BrokerCredentials) -> dict[str, str]:
    """The variables the broker JVM reads its own passwords from."""
    return {
        ENV_BROKER_PASSWORD: credentials.broker,
        ENV_CONTROLLER_PASSWORD: credentials.controller,
    }


def listener_properties(*, client_listener: str, authentication: bool) -> dict[str, str]:
    """server.properties entries for the security of the client and controller listeners.

    SCRAM cannot guard the controller listener in KRaft: the controller is where SCRAM users are
    stored, and it must authenticate the broker before any metadata reaches the broker. So the
    controller listener takes SASL PLAIN with one static user, ``mbd-controller``, whose
    generated password the broker also uses to log in; it listens on loopback only, and PLAIN's
    password in clear is what SCRAM's proof would protect on a network this listener never sees.
    """
    if not authentication:
        return {
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{client_listener}:PLAINTEXT",
        }
    lower = client_listener.lower()
    controller_password = f"${{env:{ENV_CONTROLLER_PASSWORD}}}"
    broker_password = f"${{env:{ENV_BROKER_PASSWORD}}}"
    return {
        "config.providers": "env",
        "config.providers.env.class": ENV_PROVIDER,
        "config.providers.env.param.allowlist.pattern": (
            f"^({ENV_BROKER_PASSWORD}|{ENV_CONTROLLER_PASSWORD})$"
        ),
        "listener.security.protocol.map": (
            f"CONTROLLER:SASL_PLAINTEXT,{client_listener}:SASL_PLAINTEXT"
        ),
        "sasl.enabled.mechanisms": CLIENT_MECHANISM,
        "sasl.mechanism.inter.broker.protocol": CLIENT_MECHANISM,
        f"listener.name.{lower}.sasl.enabled.mechanisms": CLIENT_MECHANISM,
        f"listener.name.{lower}.{CLIENT_MECHANISM.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{broker_password}";'
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{CONTROLLER_USER}" password="{controller_password}" '
            f'user_{CONTROLLER_USER}="{controller_password}";'
        ),
        # A client that fails to log in waits this long before the broker answers, which
        # slows guessing; a client with the right password never waits.
        "connection.failed.authentication.delay.ms": "1000",
    }


def client_fields(*, port: int | None, secrets_dir: Path, authentication: bool) -> dict[str, str]:
    """KafkaSettings fields (as text) for the client user of a broker on loopback ``port``
    (no address when ``port`` is None: the users of ``secrets_dir`` on any broker)."""
    fields = {"bootstrap_servers": f"127.0.0.1:{port}"} if port is not None else {}
    if not authentication:
        return fields | {"security_protocol": "PLAINTEXT"}
    return fields | {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": CLIENT_MECHANISM,
        "sasl_username": CLIENT_USER,
        "sasl_password_file": str(secrets_dir.resolve() / CLIENT_PASSWORD_FILE),
    }


def client_environment(
    *, port: int | None, secrets_dir: Path, authentication: bool
) -> dict[str, str]:
    """``MBD_KAFKA_*`` variables that make every ``KafkaSettings()`` log in as the client user.

    The password travels as the path of its 0600 file, never as a value.
    """
    fields = client_fields(port=port, secrets_dir=secrets_dir, authentication=authentication)
    return {f"MBD_KAFKA_{name.upper()}": value for name, value in fields.items()}


def rotate_client_password(kafka: KafkaSettings, password_file: Path) -> None:
    """Give the client user a new SCRAM password, logged in with the current one, then store
    it in ``password_file``. Connections already made stay up; each service picks the new
    password up when it next starts (restart them; ``mbd up`` restarts any that is killed)."""
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    from common.kafka import make_admin

    new = secrets.token_urlsafe(32)
    upsert = UserScramCredentialUpsertion(
        user=CLIENT_USER,
        mechanism=ScramMechanism.SCRAM_SHA_512,
        password=new,
        iterations=4096,
    )
    admin = make_admin(kafka)
    try:
        errors = {
            user: error
            for user, error in admin.alter_user_scram_credentials([upsert]).items()
            if error
        }
    finally:
        admin.close()
    if errors:
        raise CredentialsError(f"the broker refused the new password of {CLIENT_USER!r}: {errors}")
    write_secret(password_file, new)
