"""Deciding and recording promotions: the macro-F1 gate, ``CURRENT`` and ``history.jsonl``.

:func:`should_promote` is the gate of the design: the first model must reach a floor, a later
one must not be worse than the promoted model on the same held-out devices.

``CURRENT`` is replaced atomically (temp file in the same folder, fsync, ``os.replace``,
fsync of the folder), so a reader sees the old pointer or the new one, never a missing or
half-written file. ``history.jsonl`` is append-only, one JSON object per promotion or
rollback; replaying it gives the stack of promoted versions that rollbacks walk back down.
Errors are left as ``OSError`` for :mod:`models.registry` to word for the user.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

POINTER_TEMP_PREFIX = ".CURRENT."
POINTER_TEMP_SUFFIX = ".tmp"


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


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_pointer(path: Path, text: str) -> None:
    """Replace the file at ``path`` with ``text`` atomically; on failure it is unchanged."""
    fd, temp_name = tempfile.mkstemp(
        prefix=POINTER_TEMP_PREFIX, suffix=POINTER_TEMP_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            temp.write(text)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_dir(path.parent)


def read_history(path: Path) -> list[dict[str, Any]]:
    """Promotions and rollbacks, oldest first; unreadable lines are logged and skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            entry["version"] = int(entry["version"])
        except (ValueError, TypeError, KeyError) as error:
            logger.warning("%s line %d is unreadable: %s", path, number, error)
            continue
        if entry.get("action") in ("promote", "rollback"):
            entries.append(entry)
        else:
            logger.warning("%s line %d has unknown action %r", path, number, entry.get("action"))
    return entries


def append_history(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as history:
        history.write(json.dumps(entry, ensure_ascii=False) + "\n")
        history.flush()
        os.fsync(history.fileno())


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
