"""Who may use the prediction API, and how often.

Three kinds of credential, each sent as ``Authorization: Bearer <token>``:

- the **admin** token: everything, including promotion and rollback;
- the **read** token: every read endpoint, the dashboard and ``POST /v1/predict``;
- a phone's **device** token (issued by ``mbd devices add``, checked against the gateway's
  devices file): its own phone's activity and ``POST /v1/predict``, nothing else.

The dashboard is opened once with ``/?token=<read token>``; the API answers with an HttpOnly,
SameSite=Strict cookie holding the token and a redirect to ``/``, so the token leaves the
address bar and the page's own requests carry the cookie. Cookies count for GET requests only,
so no other site can make a browser post with them. Every authenticated request takes a token
from its credential's bucket (:class:`~common.ratelimit.RateLimiter`) before anything of its
body is parsed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from common.ratelimit import RateLimiter
from ingest.devices import DeviceRegistry

COOKIE = "mbd_token"
Role = Literal["admin", "read", "device"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its role, its phone for a device token, its rate-limit key."""

    role: Role
    key: str
    device_id: str | None = None

    def may_read(self, device_id: str | None = None) -> bool:
        """Whether it may read the fleet (``device_id`` None) or that one phone."""
        if self.role in ("admin", "read"):
            return True
        return device_id is not None and device_id == self.device_id


def _same(token: str, expected: SecretStr) -> bool:
    return secrets.compare_digest(token.encode(), expected.get_secret_value().encode())


class Credentials:
    """Checks bearer tokens against the configured secrets and the phones' device tokens."""

    def __init__(
        self,
        *,
        read_token: SecretStr,
        admin_token: SecretStr,
        devices: DeviceRegistry,
        limiter: RateLimiter,
    ) -> None:
        self.read_token, self.admin_token = read_token, admin_token
        self.devices, self.limiter = devices, limiter

    def devices_problem(self) -> str | None:
        """Why the devices file is not in use as it is on disk, or None when it is."""
        self.devices.refresh(max_age_s=1.0)
        return self.devices.problem

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal a token stands for, or None for a missing or unknown one."""
        if not token:
            return None
        if _same(token, self.admin_token):
            return Principal(role="admin", key="admin")
        if _same(token, self.read_token):
            return Principal(role="read", key="read")
        device = self.devices.authenticate(token)
        if device is None:
            return None
        # Rate-limited per token, keyed by a hash so the token itself is never kept.
        return Principal(
            role="device", key=hashlib.sha256(token.encode()).hexdigest(), device_id=device
        )
