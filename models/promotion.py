"""Deciding and recording promotions: the macro-F1 gate, ``CURRENT`` and ``history.jsonl``.

:func:`should_promote` is the gate of the design: the first model must reach a floor, a later
one must not be worse than the promoted model on the same held-out devices.

``CURRENT`` is replaced with :func:`common.files.write_atomic`, so a reader sees the old
pointer or the new one, never a missing or half-written file. ``history.jsonl`` is
append-only, one JSON object per promotion or rollback; replaying it gives the stack of
promoted versions that rollbacks walk back down. A crash mid-append leaves a torn last line:
reading skips it, and the next append first drops it (or terminates it, when it still holds a
whole entry) so the new entry starts on a line of its own. An append that fails is cut off
again, so the file never records a switch that did not happen.
Errors are left as ``OSError`` for :mod:`models.registry` to word for the user.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.files import fsync_dir

logger = logging.getLogger(__name__)

# mkstemp's mode, which CURRENT has always had.
POINTER_MODE = 0o600


def should_promote(
    *,
    candidate_f1: float,
    incumbent_f1: float | None,
    floor: float,
    incumbent_version: int | None = None,
) -> tuple[bool, str]:
    """The promotion gate: is the candidate good enough to replace the promoted model?

    The first model must reach ``floor``; later ones must not be worse than the promoted
    one. The caller scores both on the same held-out devices, so the figures compare.
    Returns the decision and a sentence explaining it with the numbers.
    """
    for name, value in (("candidate_f1", candidate_f1), ("floor", floor)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a macro-F1 in [0, 1], got {value}")
    if incumbent_f1 is None:
        if candidate_f1 >= floor:
            return True, f"macro-F1 {candidate_f1:.3f} ≥ floor {floor:.3f} for the first model"
        return False, f"macro-F1 {candidate_f1:.3f} < floor {floor:.3f} for the first model"
    if not 0.0 <= incumbent_f1 <= 1.0:
        raise ValueError(f"incumbent_f1 must be a macro-F1 in [0, 1], got {incumbent_f1}")
    promoted = f"promoted v{incumbent_version}'s" if incumbent_version else "the promoted model's"
    decision = candidate_f1 >= incumbent_f1
    sign = "≥" if decision else "<"
    return decision, (
        f"macro-F1 {candidate_f1:.3f} {sign} {promoted} {incumbent_f1:.3f} "
        "on the same held-out devices"
    )


def _history_entry(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The entry on one line and the problem with it (None when there is none).

    A line that does not parse may be a torn entry with the next one glued on (an append after
    a crash, by an mbd that did not repair the tail first): the whole entry at its end is kept.
    """
    starts = [0, *(i for i in range(1, len(line)) if line[i : i + 1] == b"{")]
    problem = None
    for start in starts:
        try:
            entry = json.loads(line[start:])
            entry["version"] = int(entry["version"])
        except (ValueError, TypeError, KeyError) as error:
            problem = problem or f"{type(error).__name__}: {error}"
            continue
        if start:
            return entry, f"a torn entry of {start} bytes before it was skipped"
        return entry, None
    return None, problem


def read_history(path: Path) -> list[dict[str, Any]]:
    """Promotions and rollbacks, oldest first; unreadable lines are logged and skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        entry, problem = _history_entry(line)
        if entry is None:
            logger.warning("%s line %d is unreadable: %s", path, number, problem)
            continue
        if problem:
            logger.warning("%s line %d: %s", path, number, problem)
        if entry.get("action") in ("promote", "rollback"):
            entries.append(entry)
        else:
            logger.warning("%s line %d has unknown action %r", path, number, entry.get("action"))
    return entries


def history_is_torn(path: Path) -> bool:
    """Whether the last line of ``path`` lacks its newline (a crash mid-append)."""
    try:
        with path.open("rb") as history:
            if history.seek(0, os.SEEK_END) == 0:
                return False
            history.seek(-1, os.SEEK_END)
            return history.read(1) != b"\n"
    except FileNotFoundError:
        return False


def repair_history(path: Path) -> str | None:
    """Mend a last line that lacks its newline (a crash mid-append); says what it did.

    A tail that still holds a whole entry gets its newline; a torn one is cut off.
    """
    try:
        history = path.open("r+b")
    except FileNotFoundError:
        return None
    with history:
        data = history.read()
        if not data or data.endswith(b"\n"):
            return None
        start = data.rfind(b"\n") + 1
        entry, _ = _history_entry(data[start:])
        if entry is not None:
            history.write(b"\n")
            note = f"{path}: its last line lacked a newline (a crash mid-append); added it"
        else:
            history.truncate(start)
            note = (
                f"{path}: dropped a torn last line of {len(data) - start} bytes "
                "(a crash mid-append)"
            )
        history.flush()
        os.fsync(history.fileno())
    logger.warning("%s", note)
    return note


def append_history(path: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` as a line of its own, durably; on failure the file is as it was."""
    repair_history(path)
    created = not path.exists()
    line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
    # Unbuffered, so a failed write leaves nothing in a buffer to land after the truncate.
    with path.open("ab", buffering=0) as history:
        start = history.seek(0, os.SEEK_END)
        try:
            written = 0
            while written < len(line):
                written += history.write(line[written:]) or 0
            os.fsync(history.fileno())
            if created:
                fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                history.truncate(start)
            raise


def promotion_stack(entries: list[dict[str, Any]]) -> list[int]:
    """Versions in the order they were promoted, with the ones rolled back popped off.

    A promotion pushes its version (unless it is already on top); a rollback to ``v`` pops
    until ``v`` is on top, so rolling back twice walks down two promotions, and a version
    that was rolled back is not returned to by a later rollback.
    """
    stack: list[int] = []
    for entry in entries:
        version = entry["version"]
        if entry["action"] == "promote":
            if not stack or stack[-1] != version:
                stack.append(version)
            continue
        while stack and stack[-1] != version:
            stack.pop()
        if not stack:
            stack.append(version)
    return stack


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
