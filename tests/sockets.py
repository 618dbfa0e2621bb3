"""Which TCP sockets a process tree listens on, as /proc shows it.

Listening sockets come from /proc/net/tcp and tcp6 and are matched to processes by the socket
inodes in their /proc/<pid>/fd, over each process and everything it started.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from pathlib import Path

LISTEN = "0A"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6}: 32-bit words in host byte order."""
    raw = bytes.fromhex(hex_address)
    packed = b"".join(
        struct.pack("=I", struct.unpack(">I", raw[i : i + 4])[0]) for i in range(0, len(raw), 4)
    )
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return ipaddress.ip_address(socket.inet_ntop(family, packed))


def listening_sockets() -> dict[int, tuple[str, int]]:
    """Socket inode → (address, port) of every listening TCP socket of this machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            address, port = fields[1].split(":")
            found[int(fields[9])] = (str(_address(address)), int(port, 16))
    return found


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return pids


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listening_addresses(services: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Service name → the (address, port) its process tree listens on, sorted."""
    listening = listening_sockets()
    bound: dict[str, list[tuple[str, int]]] = {}
    for name, pid in services.items():
        inodes = set().union(*(socket_inodes(p) for p in process_tree(pid)))
        bound[name] = sorted(listening[inode] for inode in inodes if inode in listening)
    return bound
