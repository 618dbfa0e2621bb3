"""Processes as Linux's /proc shows them: a service's whole process tree and its resident memory.

A service of ``mbd up`` is more than its own pid: the stream and the trainer start a Spark JVM,
which forks Python workers from its own threads. So a tree is found from every process's
parent (not from one thread's ``children`` file), plus whatever stayed in the service's session
after its parent left. A process is named by its pid and its start time together, so a pid the
kernel hands out again later is not mistaken for one of ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, kw_only=True)
class ProcessInfo:
    pid: int
    ppid: int
    session: int
    state: str
    start_ticks: int  # clock ticks after boot: with the pid, one process for good


def parse_stat(text: str) -> ProcessInfo:
    """One /proc/<pid>/stat line. The command name may hold spaces and ')', so split after
    its last ')'."""
    pid, _, rest = text.partition(" (")
    fields = rest[rest.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state, ppid, pgrp, session, …, starttime is field 22.
    return ProcessInfo(
        pid=int(pid),
        state=fields[0],
        ppid=int(fields[1]),
        session=int(fields[3]),
        start_ticks=int(fields[19]),
    )


def process_table(proc: Path = PROC) -> dict[int, ProcessInfo]:
    table = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                info = parse_stat((entry / "stat").read_text())
            except (OSError, ValueError):
                continue  # it ended while we looked
            table[info.pid] = info
    return table


def tree(root: int, table: Mapping[int, ProcessInfo]) -> set[int]:
    """``root``, its descendants, and the rest of its session when it leads one."""
    if root not in table:
        return set()
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    found.update(pid for pid, info in table.items() if info.session == root)
    return found


def rss_kb(pid: int, proc: Path = PROC) -> int:
    """Resident memory (VmRSS) of one process in kB; 0 once it has gone or for a zombie."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int, table: Mapping[int, ProcessInfo], proc: Path = PROC) -> float:
    return round(sum(rss_kb(pid, proc) for pid in tree(root, table)) / 1024, 1)


def still_running(known: Mapping[int, int], table: Mapping[int, ProcessInfo]) -> list[ProcessInfo]:
    """Which of ``known`` (pid → start ticks) are alive: same pid, same start, not a zombie."""
    return [
        table[pid]
        for pid, ticks in known.items()
        if pid in table and table[pid].start_ticks == ticks and table[pid].state != "Z"
    ]


def command_of(pid: int, proc: Path = PROC) -> str:
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def mentioning(text: str, pids: Iterable[int], proc: Path = PROC) -> list[int]:
    """The processes among ``pids`` whose command line contains ``text`` (a data folder)."""
    return [pid for pid in pids if text in command_of(pid, proc)]
