"""Files that decide what mbd serves or who may use it: written crash-safe, secrets kept 0600.

:func:`write_atomic` writes a temporary file beside the target, fsyncs it, renames it into
place and fsyncs the folder, so after a crash the target holds either the old or the new
content, never a torn mix. :func:`ensure_secret` reads a secret from its file or, when the
file does not exist yet, generates one and stores it with mode 0600 (created so, never
briefly readable by others).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

SECRET_MODE = 0o600
_TEMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in the folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and every folder in it (before renaming it into place)."""
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(parent))


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the folder.

    On a failure the temporary file is removed and ``path`` keeps its old content, except when
    only the last step (the folder's fsync) fails: then ``path`` holds the new content already.
    """
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as temp:
            temp.write(payload)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_dir(path.parent)


def leftover_temps(path: Path) -> list[Path]:
    """Temporary files that :func:`write_atomic` calls for ``path`` left behind by a crash."""
    return sorted(path.parent.glob(f".{path.name}.*{_TEMP_SUFFIX}"))


def write_secret(path: Path, text: str) -> None:
    """Store a secret in ``path`` (mode 0600, its folder 0700 when this creates it)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    write_atomic(path, text.strip() + "\n", mode=SECRET_MODE)


def read_secret(path: Path) -> str:
    """The secret in ``path``; refuses a file that others can read, naming it and its mode."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(
            f"secret file {path} has mode {mode:o}; make it 0600 (chmod 600 {path})"
        )
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"secret file {path} is empty")
    return text


def ensure_secret(path: Path, *, nbytes: int = 32) -> str:
    """The secret stored in ``path``; a new random one (URL-safe) when the file is missing."""
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(nbytes))
    return read_secret(path)
