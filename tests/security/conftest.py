"""Fixtures of the security tests: the API over a registry of two real small models."""

from tests.api.conftest import client, registry, settings  # noqa: F401  (pytest fixtures)
