"""Whether a process the tests started is still running, as /proc shows it."""

from __future__ import annotations

from bench.processes import PROC, parse_stat


def alive(pid: int) -> bool:
    """Whether ``pid`` has not exited. An exited process is a zombie until its parent reaps it,
    and counts as gone (a daemonised broker's parent is the machine's init)."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text()).state != "Z"
    except (OSError, ValueError):
        return False
