"""The versioned model registry: numbered versions on a local folder and the promoted one.

Layout under the root (``MBD_REGISTRY_DIR``)::

    v<N>/            model.keras, config.json, metrics.json, report.png (+ trainer extras)
    CURRENT          the promoted version, e.g. ``v3``
    history.jsonl    one line per promotion or rollback
    .staging/        versions being written; never listed

A trainer asks for a :meth:`Registry.staging` folder, writes a complete version there and
:meth:`Registry.publish` fsyncs it and renames it to the next free ``v<N>``, so a crashed run
leaves only staging junk and a published version survives a crash whole. ``CURRENT`` is
replaced atomically (see :mod:`models.promotion`) and only after the model has been loaded,
so readers never see a missing, partial or corrupt pointer. A promotion or rollback happens
whole or not at all: when recording it fails, ``CURRENT`` is put back and a
:class:`RegistryStorageError` says so. :meth:`Registry.recover` mends what a crash leaves
behind and refuses, naming the file, what only a person can fix.
Keras is imported only to load models: listing versions does not pay for TensorFlow.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from common.files import fsync_dir, fsync_tree, leftover_temps, write_atomic
from models.promotion import (
    POINTER_MODE,
    append_history,
    exclusive_lock,
    history_is_torn,
    promotion_stack,
    read_history,
    repair_history,
    should_promote,
)

__all__ = ["ModelVersion", "Registry", "RegistryError", "RegistryStorageError", "should_promote"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.png"
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, METRICS_FILE)

_VERSION_DIR = re.compile(r"v(\d+)")
_PUBLISH_ATTEMPTS = 100


class RegistryError(RuntimeError):
    """The registry cannot do what was asked; the message names the path and the problem."""


class RegistryStorageError(RegistryError):
    """The disk failed during a promotion or rollback; the message says which step failed and
    what ``CURRENT`` names now (put back on the version before, unless that failed too)."""


@dataclass(frozen=True)
class ModelVersion:
    """One published version: its folder and what the trainer recorded about it."""

    version: int
    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return f"v{self.version}"

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def macro_f1(self) -> float | None:
        value = self.metrics.get("macro_f1")
        return float(value) if isinstance(value, int | float) else None

    @property
    def created_at(self) -> datetime:
        """When the trainer made it (``metrics["created_at"]``), else when it was written."""
        stamp = self.metrics.get("created_at")
        if isinstance(stamp, str):
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(stamp)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        written = self.path / METRICS_FILE
        mtime = (written if written.exists() else self.path).stat().st_mtime
        return datetime.fromtimestamp(mtime, tz=UTC)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path} is missing") from None
    except (OSError, ValueError) as error:
        raise RegistryError(f"{path} is unreadable: {error}") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


def _check_archive(path: Path) -> None:
    """Name a corrupt or truncated ``.keras`` file plainly (Keras calls it "not found")."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        size = path.stat().st_size
        raise RegistryError(
            f"model file {path} ({size} bytes) is not a readable .keras zip archive: {error}"
        ) from None
    if damaged is not None:
        raise RegistryError(f"model file {path} is corrupt: member {damaged} fails its CRC check")


class Registry:
    """Versions of the activity model under ``root`` and the pointer to the promoted one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def current_file(self) -> Path:
        return self.root / "CURRENT"

    @property
    def history_file(self) -> Path:
        return self.root / "history.jsonl"

    @property
    def staging_root(self) -> Path:
        return self.root / ".staging"

    def _version_dirs(self) -> dict[int, Path]:
        if not self.root.is_dir():
            return {}
        found = {}
        for entry in self.root.iterdir():
            match = _VERSION_DIR.fullmatch(entry.name)
            if match and entry.is_dir():
                found[int(match.group(1))] = entry
        return found

    def _read_version(self, version: int, path: Path) -> ModelVersion:
        return ModelVersion(
            version=version,
            path=path,
            metrics=_read_json(path / METRICS_FILE),
            config=_read_json(path / CONFIG_FILE),
        )

    def versions(self) -> list[ModelVersion]:
        """Every readable published version, oldest first; unreadable ones are logged."""
        listed = []
        for version, path in sorted(self._version_dirs().items()):
            try:
                listed.append(self._read_version(version, path))
            except RegistryError as error:
                logger.warning("skipping model version v%d: %s", version, error)
        return listed

    def get(self, version: int) -> ModelVersion:
        path = self._version_dirs().get(version)
        if path is None:
            raise RegistryError(f"no model version v{version} in {self.root}")
        return self._read_version(version, path)

    def current_version(self) -> int | None:
        """The promoted version per ``CURRENT``, or None if nothing was ever promoted."""
        try:
            text = self.current_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise RegistryError(f"{self.current_file} is unreadable: {error}") from None
        match = _VERSION_DIR.fullmatch(text)
        if not match:
            raise RegistryError(f"{self.current_file} holds {text!r}, not a version like v3")
        return int(match.group(1))

    def current(self) -> ModelVersion | None:
        version = self.current_version()
        return None if version is None else self.get(version)

    def staging(self) -> Path:
        """A fresh empty folder to write a version into before :meth:`publish`."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return Path(tempfile.mkdtemp(prefix=f"{stamp}-{os.getpid()}-", dir=self.staging_root))

    def clean_staging(self, older_than_s: float = 24 * 3600) -> int:
        """Remove staging folders (and stray pointer temp files) older than ``older_than_s``."""
        if older_than_s < 0:
            raise ValueError(f"older_than_s must be >= 0, got {older_than_s}")
        deadline = time.time() - older_than_s
        stale = [*self.staging_root.glob("*"), *leftover_temps(self.current_file)]
        removed = 0
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                if path.lstat().st_mtime > deadline:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed += 1
                logger.info("removed stale staging %s", path)
        return removed

    def publish(self, staging_dir: Path) -> ModelVersion:
        """Turn a complete staging folder into the next free version ``v<N>``."""
        staging_dir = Path(staging_dir)
        if not staging_dir.is_dir():
            raise RegistryError(f"staging folder {staging_dir} does not exist")
        missing = [name for name in REQUIRED_FILES if not (staging_dir / name).is_file()]
        if missing:
            raise RegistryError(f"staging folder {staging_dir} lacks {', '.join(missing)}")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fsync_tree(staging_dir)  # the rename must not outrun the files' contents to disk
        except OSError as error:
            raise RegistryError(f"cannot flush {staging_dir} to disk: {error}") from None
        version = max(self._version_dirs(), default=0) + 1
        for _ in range(_PUBLISH_ATTEMPTS):
            target = self.root / f"v{version}"
            try:
                # A non-empty target makes rename fail, so racing publishers take turns.
                os.rename(staging_dir, target)
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise RegistryError(
                        f"cannot publish {staging_dir} as {target}: {error}"
                    ) from None
                version = max([version, *self._version_dirs()]) + 1
                continue
            try:
                fsync_dir(self.root)
            except OSError as error:
                raise RegistryError(
                    f"published {target}, but flushing {self.root} to disk failed: {error}"
                ) from None
            logger.info("published model version v%d in %s", version, self.root)
            return self.get(version)
        raise RegistryError(f"gave up publishing {staging_dir}: {self.root} keeps changing")

    def load_model(self, version: int | None = None) -> Any:
        """The Keras model of ``version`` (default: the promoted one), without compiling it."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise RegistryError(
                    f"no model is promoted in {self.root} (no {self.current_file.name} file)"
                )
        folder = self._version_dirs().get(version)
        if folder is None:
            raise RegistryError(f"no model version v{version} in {self.root}")
        path = folder / MODEL_FILE
        if not path.is_file():
            raise RegistryError(f"model file {path} is missing")
        _check_archive(path)
        try:
            import keras

            import models.features  # noqa: F401  registers the layer the models begin with

            return keras.saving.load_model(str(path), compile=False)
        except Exception as error:
            detail = " ".join(str(error).split())  # Keras errors span lines; ours is one
            raise RegistryError(
                f"cannot load model file {path}: {type(error).__name__}: {detail}"
            ) from error

    def promote(self, version: int, *, reason: str) -> ModelVersion:
        """Make ``version`` the promoted one, after checking that its model loads."""
        with self._lock():
            chosen = self.get(version)
            self.load_model(version)
            self._switch(chosen, action="promote", reason=reason)
            return chosen

    def rollback(self, *, reason: str) -> ModelVersion:
        """Go back to the version promoted before the current one that still loads."""
        with self._lock():
            current = self.current_version()
            if current is None:
                raise RegistryError(f"no model is promoted in {self.root}; nothing to roll back")
            stack = promotion_stack(self.history())
            if current in stack:
                stack = stack[: len(stack) - 1 - stack[::-1].index(current)]
            for version in reversed(stack):
                if version == current:
                    continue
                try:
                    chosen = self.get(version)
                    self.load_model(version)
                except RegistryError as error:
                    logger.warning("rollback skips v%d: %s", version, error)
                    continue
                self._switch(chosen, action="rollback", reason=reason, previous=current)
                return chosen
        raise RegistryError(
            f"nothing to roll back to from v{current}: {self.history_file} names no earlier "
            "promoted version that still loads"
        )

    def history(self) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first (``history.jsonl``)."""
        return read_history(self.history_file)

    def recover(self) -> list[str]:
        """Mend what a crash leaves behind; refuse what only a person can fix.

        Removes half-written pointer files and repairs a torn last line of ``history.jsonl``,
        returning a note for each repair (also logged). Raises :class:`RegistryError`, naming
        the file, when ``CURRENT`` is garbled or names a version that is not in the registry.
        """
        if not self.root.is_dir():
            return []
        notes = []
        try:
            # Only a repair writes (and locks): a reader that may not write the folder can check.
            if leftover_temps(self.current_file) or history_is_torn(self.history_file):
                notes = self._repair()
        except OSError as error:
            raise RegistryError(f"cannot repair the registry in {self.root}: {error}") from None
        version = self.current_version()
        if version is not None and version not in self._version_dirs():
            raise RegistryError(
                f"{self.current_file} names v{version}, but {self.root} has no v{version} "
                "folder: promote a published version (mbd models promote N) or remove "
                f"{self.current_file}"
            )
        return notes

    def _repair(self) -> list[str]:
        notes = []
        with self._lock():  # a promotion in flight has its own temp pointer and appends
            for temp in leftover_temps(self.current_file):
                temp.unlink(missing_ok=True)
                notes.append(f"removed {temp}, a pointer half-written when a switch crashed")
                logger.warning("%s", notes[-1])
            repaired = repair_history(self.history_file)
            if repaired:
                notes.append(repaired)
        return notes

    def _read_pointer(self) -> str | None:
        try:
            return self.current_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _switch(
        self,
        chosen: ModelVersion,
        *,
        action: Literal["promote", "rollback"],
        reason: str,
        previous: int | None = None,
    ) -> None:
        """Point ``CURRENT`` at ``chosen`` and record it, or leave both as they were."""
        try:
            before = self._read_pointer()
        except OSError as error:
            raise RegistryStorageError(f"{self.current_file} is unreadable: {error}") from None
        entry: dict[str, Any] = {
            "version": chosen.version,
            "action": action,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "reason": reason,
        }
        if previous is not None:
            entry["from"] = previous
        pointer = f"v{chosen.version}\n"
        step = f"could not point {self.current_file} at v{chosen.version}"
        try:
            write_atomic(self.current_file, pointer, mode=POINTER_MODE)
            step = f"could not record {action} of v{chosen.version} in {self.history_file}"
            append_history(self.history_file, entry)
        except OSError as error:
            raise RegistryStorageError(f"{step}: {error}; {self._put_back(before)}") from None
        logger.info("%s: CURRENT is now v%d (%s)", action, chosen.version, reason)

    def _put_back(self, before: str | None) -> str:
        """Restore ``CURRENT`` to ``before`` (None: no file) and say where it stands."""
        was = "no promoted version" if before is None else before.strip()
        try:
            if self._read_pointer() == before:
                return f"{self.current_file.name} still names {was}"
            if before is None:
                self.current_file.unlink(missing_ok=True)
                fsync_dir(self.root)
            else:
                write_atomic(self.current_file, before, mode=POINTER_MODE)
            return f"{self.current_file.name} is back on {was}"
        except OSError as error:
            try:
                now = self._read_pointer()
            except OSError:
                now = "?"
            if now == before:  # restored; only making it durable failed
                logger.error("%s restored, but not flushed to disk: %s", self.current_file, error)
                return f"{self.current_file.name} is back on {was} (not yet flushed to disk)"
            named = "no version" if now is None else now.strip()
            logger.error("could not put %s back on %s: %s", self.current_file, was, error)
            return (
                f"putting {self.current_file.name} back on {was} failed too ({error}): "
                f"it names {named}"
            )

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise promotions so CURRENT and history.jsonl tell the same story."""
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / ".lock"):
            yield
