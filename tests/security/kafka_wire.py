"""A few Kafka protocol requests by hand: what a listener asks of a client before anything else.

kafka-python cannot talk to a KRaft controller listener (it bootstraps with a Metadata request,
which controllers do not serve), so the SASL handshake and a PLAIN login are spoken directly:
SaslHandshake v1 (API key 17) and SaslAuthenticate v0 (API key 36), non-flexible versions with
request header v1 and response header v0.
"""

from __future__ import annotations

import socket
import struct

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
NONE = 0
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"the listener closed the connection after {len(data)} bytes")
        data += chunk
    return data


def request(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    """Send one request and return its response body (after the correlation id)."""
    correlation = api_key * 100 + version
    message = struct.pack(">hhi", api_key, version, correlation) + _string("mbd-test") + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _read_exactly(sock, 4))
    response = _read_exactly(sock, size)
    assert struct.unpack(">i", response[:4])[0] == correlation
    return response[4:]


def handshake(sock: socket.socket, mechanism: str) -> tuple[int, list[str]]:
    """The error code of a SaslHandshake for ``mechanism`` and the mechanisms the listener has."""
    body = request(sock, SASL_HANDSHAKE, 1, _string(mechanism))
    error, count = struct.unpack(">hi", body[:6])
    mechanisms, at = [], 6
    for _ in range(count):
        (length,) = struct.unpack(">h", body[at : at + 2])
        mechanisms.append(body[at + 2 : at + 2 + length].decode())
        at += 2 + length
    return error, mechanisms


def plain_login(host: str, port: int, username: str, password: str) -> int:
    """The error code of a SASL PLAIN login (0: logged in)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        error, _ = handshake(sock, "PLAIN")
        if error:
            return error
        token = b"\0" + username.encode() + b"\0" + password.encode()
        body = request(sock, SASL_AUTHENTICATE, 0, struct.pack(">i", len(token)) + token)
        return int(struct.unpack(">h", body[:2])[0])


def mechanisms_offered(host: str, port: int, asking: str) -> tuple[int, list[str]]:
    """What a listener answers a client that asks to log in with ``asking``."""
    with socket.create_connection((host, port), timeout=10) as sock:
        return handshake(sock, asking)
