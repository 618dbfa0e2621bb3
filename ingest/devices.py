"""Device tokens: each phone presents a bearer token bound to its ``device_id``.

A token is ``mbd_<token id>_<secret>``. The registry file keeps, per token id, the device it
belongs to and the SHA-256 of the 256-bit secret — never the secret — so a leaked file lets no
one impersonate a phone. Secrets are random, so a fast hash is enough (nothing to brute-force).
The file is rewritten atomically under a lock and re-read by the gateway when it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from common.schema import DeviceId

TOKEN_PREFIX = "mbd"
_device_id = TypeAdapter(DeviceId)


@dataclass(frozen=True, kw_only=True)
class DeviceToken:
    device_id: str
    token_id: str
    sha256: str
    created_at: float


class DeviceRegistryError(ValueError):
    """A device id or registry file that cannot be used; the message says which and why."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class DeviceRegistry:
    """Tokens of the phones allowed to post, backed by one JSON file."""

    def __init__(self, path: Path):
        self.path = path
        self._tokens: dict[str, DeviceToken] = {}
        self._loaded_version: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, DeviceToken]:
        if not self.path.is_file():
            return {}
        try:
            raw = json.loads(self.path.read_text())
            return {token_id: DeviceToken(**entry) for token_id, entry in raw.items()}
        except (json.JSONDecodeError, TypeError, AttributeError) as error:
            raise DeviceRegistryError(
                f"device registry {self.path} is unreadable: {error}"
            ) from None

    def _write(self, tokens: dict[str, DeviceToken]) -> None:
        tmp = self.path.with_suffix(".tmp")
        body = {token_id: vars(entry) for token_id, entry in tokens.items()}
        tmp.write_text(json.dumps(body, indent=1))
        tmp.replace(self.path)

    def refresh(self, *, max_age_s: float = 0.0) -> None:
        """Re-read the file if it changed since the last read (one stat per ``max_age_s``)."""
        now = time.monotonic()
        if now - self._checked_at < max_age_s:
            return
        self._checked_at = now
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._tokens, self._loaded_version = {}, None
            return
        # Every write replaces the file, so a new inode always means new content.
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version != self._loaded_version:
            self._tokens = self._read()
            self._loaded_version = version

    def add(self, device_ids: list[str]) -> dict[str, str]:
        """Issue a new token for each device; returns ``{device_id: token}`` (shown only now)."""
        for device_id in device_ids:
            try:
                _device_id.validate_python(device_id)
            except ValidationError:
                raise DeviceRegistryError(
                    f"device id {device_id!r} must be 1-64 letters, digits or . _ : -"
                ) from None
        issued: dict[str, str] = {}
        with self._locked():
            tokens = self._read()
            for device_id in device_ids:
                token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32).replace("_", "")
                tokens[token_id] = DeviceToken(
                    device_id=device_id,
                    token_id=token_id,
                    sha256=_digest(secret),
                    created_at=time.time(),
                )
                issued[device_id] = f"{TOKEN_PREFIX}_{token_id}_{secret}"
            self._write(tokens)
        self.refresh()
        return issued

    def revoke(self, device_id: str) -> int:
        """Remove every token of ``device_id``; returns how many there were."""
        with self._locked():
            tokens = self._read()
            kept = {tid: entry for tid, entry in tokens.items() if entry.device_id != device_id}
            self._write(kept)
        self.refresh()
        return len(tokens) - len(kept)

    def devices(self) -> dict[str, int]:
        """Registered device ids with their number of live tokens."""
        self.refresh()
        counts: dict[str, int] = {}
        for entry in self._tokens.values():
            counts[entry.device_id] = counts.get(entry.device_id, 0) + 1
        return counts

    def device_for(self, token: str) -> str | None:
        """The device a token belongs to, or None for an unknown or wrong token."""
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        entry = self._tokens.get(token_id)
        if entry is None or not hmac.compare_digest(entry.sha256, _digest(secret)):
            return None
        return entry.device_id
