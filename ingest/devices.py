"""Device tokens: each phone presents a bearer token bound to its ``device_id``.

A token is ``mbd_<token id>_<secret>``. The registry file keeps, per token id, the device it
belongs to and the SHA-256 of the 256-bit secret — never the secret — so a leaked file lets no
one impersonate a phone. Secrets are random, so a fast hash is enough (nothing to brute-force).
The file is rewritten atomically (and durably, mode 0600) under a lock and re-read by the
gateway when it changes. A file that cannot be read there leaves the last good set of tokens in
force — logged once, and shown as :attr:`DeviceRegistry.problem` — so the gateway keeps
answering; with no good read yet, every token is refused. Writers refuse an unreadable file
rather than replace it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from common.files import SECRET_MODE, write_atomic
from common.schema import DeviceId

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mbd"
_device_id = TypeAdapter(DeviceId)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "device_id": str, "token_id": str, "sha256": str, "created_at": (int, float),
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class DeviceToken:
    device_id: str
    token_id: str
    sha256: str
    created_at: float


class DeviceRegistryError(ValueError):
    """A device id or registry file that cannot be used; the message says which and why."""


def _token_entry(number: int, token_id: Any, entry: Any) -> DeviceToken:
    """Entry ``number`` of the file, checked field by field (the problem quotes no value)."""
    if not isinstance(entry, dict) or set(entry) != set(_FIELDS):
        raise ValueError(f"entry {number} lacks the fields {', '.join(_FIELDS)} or has others")
    for name, kind in _FIELDS.items():
        if not isinstance(entry[name], kind) or isinstance(entry[name], bool):
            raise ValueError(f"entry {number} has a {name} of the wrong type")
    if not _SHA256.fullmatch(entry["sha256"]):  # compare_digest raises on non-ASCII text
        raise ValueError(f"entry {number} has a sha256 that is not 64 hex digits")
    if entry["token_id"] != token_id:
        raise ValueError(f"entry {number} is filed under another token id")
    return DeviceToken(**entry)


def _reason(error: OSError | ValueError) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


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
        self._good_read = False
        self._problem: str | None = None

    @property
    def problem(self) -> str | None:
        """Why the file on disk is not the set in force (None when it is); names no content."""
        return self._problem

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, DeviceToken]:
        """The tokens in the file; an OSError or ValueError says why not, quoting no content."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:  # its message quotes no content, unlike ours
            raise ValueError(f"not JSON at line {error.lineno} column {error.colno}") from None
        except ValueError:
            raise ValueError("not UTF-8 JSON") from None
        if not isinstance(raw, dict):
            raise ValueError(f"a JSON {type(raw).__name__}, not an object of token entries")
        return {
            token_id: _token_entry(number, token_id, entry)
            for number, (token_id, entry) in enumerate(raw.items(), 1)
        }

    def _read(self) -> dict[str, DeviceToken]:
        try:
            return self._load()
        except (OSError, ValueError) as error:
            raise DeviceRegistryError(
                f"device registry {self.path} is unreadable: {_reason(error)}"
            ) from None

    def _write(self, tokens: dict[str, DeviceToken]) -> None:
        body = {token_id: vars(entry) for token_id, entry in tokens.items()}
        write_atomic(self.path, json.dumps(body, indent=1), mode=SECRET_MODE)

    def refresh(self, *, max_age_s: float = 0.0) -> None:
        """Re-read the file if it changed since the last read (one stat per ``max_age_s``)."""
        now = time.monotonic()
        if now - self._checked_at < max_age_s:
            return
        self._checked_at = now
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._tokens, self._loaded_version, self._good_read = {}, None, True
            self._clear_problem()
            return
        except OSError as error:
            self._loaded_version = None
            self._keep_last_good(error)
            return
        # Every write replaces the file, so a new inode always means new content.
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version == self._loaded_version:
            return
        self._loaded_version = version  # a bad version is not read (nor logged) again
        try:
            self._tokens = self._load()
        except (OSError, ValueError) as error:
            if isinstance(error, OSError):  # e.g. a mode fixed by chmod: try again next time
                self._loaded_version = None
            self._keep_last_good(error)
            return
        self._good_read = True
        self._clear_problem()

    def _keep_last_good(self, error: OSError | ValueError) -> None:
        if self._good_read:
            kept = f"the last good set of {len(self._tokens)} token(s) stays in force"
        else:
            kept = "no good copy was read yet, so every token is refused"
        problem = f"{self.path.name} is unreadable ({_reason(error)}); {kept}"
        if problem != self._problem:
            log.error("device registry %s is unreadable (%s); %s", self.path, _reason(error), kept)
        self._problem = problem

    def _clear_problem(self) -> None:
        if self._problem is not None:
            log.warning("device registry %s is readable again", self.path)
        self._problem = None

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
        """Registered device ids with their number of live tokens (refused if unreadable)."""
        self.refresh()
        if self._problem is not None:
            raise DeviceRegistryError(f"device registry {self.path}: {self._problem}")
        counts: dict[str, int] = {}
        for entry in self._tokens.values():
            counts[entry.device_id] = counts.get(entry.device_id, 0) + 1
        return counts

    def authenticate(self, token: str, *, max_age_s: float = 1.0) -> str | None:
        """The device of ``token``, with the file checked at most every ``max_age_s``.

        A token whose id is not known yet re-checks the file at once (one stat): a phone
        that was just registered is let in on its first request.
        """
        self.refresh(max_age_s=max_age_s)
        parts = split_token(token)
        if parts is not None and parts[0] not in self._tokens:
            self.refresh()
        return self.device_for(token)

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
