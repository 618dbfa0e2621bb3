"""Serving the promoted model: load it, score window tensors, follow ``CURRENT`` as it changes.

:class:`PromotedModel` watches a :class:`~models.registry.Registry`. :meth:`~PromotedModel.get`
returns the :class:`LoadedModel` now serving (or None before anything loads); it is one
attribute read, so a caller keeps the model it started with even if a swap happens meanwhile.
:meth:`~PromotedModel.refresh` reads ``CURRENT`` (at most every ``check_interval_s``) and, when
it names another version, loads that version — inline or on a background thread — warms it up
and swaps it in with a single reference assignment. A version that fails to load leaves the
previous model serving; the failure is logged and kept in :attr:`~PromotedModel.last_error`
until a later load succeeds, and the same pointer is not retried until ``CURRENT`` changes.

No web framework here: the prediction API and the streaming job's live scoring both use it.
TensorFlow is imported only when a model is loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.registry import Registry, RegistryError
from models.runtime import limit_tensorflow_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """One registry version in memory, ready to score flattened window tensors."""

    version: int
    classes: tuple[str, ...]
    input_dim: int
    model: Any
    loaded_at: float = field(default_factory=time.time)
    _call: Callable[[np.ndarray], np.ndarray] | None = None

    def predict(self, tensors: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n, len(classes))``, for ``(n, input_dim)`` tensors."""
        batch = np.asarray(tensors, dtype=np.float32)
        if batch.ndim == 1:
            batch = batch[np.newaxis, :]
        if batch.ndim != 2 or batch.shape[1] != self.input_dim:
            raise ValueError(
                f"v{self.version} scores tensors of shape (n, {self.input_dim}), got {batch.shape}"
            )
        if self._call is not None:
            return self._call(batch)
        return np.asarray(self.model.predict_on_batch(batch))

    def activities(self, probabilities: np.ndarray) -> list[str]:
        """The most probable class name per row."""
        return [self.classes[i] for i in np.argmax(probabilities, axis=1)]


def _compiled_call(model: Any, input_dim: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """A traced inference function: ~0.5 ms per window where an eager call takes ~3 ms."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    signature = [tf.TensorSpec([None, input_dim], tf.float32)]
    traced = tf.function(lambda x: model(x, training=False), input_signature=signature)

    def call(batch: np.ndarray) -> np.ndarray:
        return traced(batch).numpy()

    return call


def load_version(registry: Registry, version: int) -> LoadedModel:
    """Load, check and warm up ``version``; every problem is a :class:`RegistryError`."""
    entry = registry.get(version)
    spec = entry.config.get("spec")
    classes = spec.get("classes") if isinstance(spec, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise RegistryError(
            f"{entry.path / 'config.json'} has no class list at spec.classes (got {classes!r})"
        )
    model = registry.load_model(version)
    input_shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    if len(input_shape) != 2 or not isinstance(input_shape[1], int):
        raise RegistryError(f"v{version} takes inputs of shape {input_shape}, not (n, features)")
    input_dim = int(input_shape[1])
    loaded = LoadedModel(
        version=version,
        classes=tuple(classes),
        input_dim=input_dim,
        model=model,
        _call=_compiled_call(model, input_dim),
    )
    try:
        probabilities = loaded.predict(np.zeros((1, input_dim), np.float32))
    except Exception as error:
        raise RegistryError(f"v{version} fails on a zero window: {error}") from error
    if probabilities.shape != (1, len(classes)):
        raise RegistryError(
            f"v{version} outputs shape {probabilities.shape[1:]} but config.json names "
            f"{len(classes)} classes {classes}"
        )
    return loaded


@dataclass(frozen=True)
class ServingStatus:
    """What /readyz and the dashboard show about the model."""

    serving: int | None
    promoted: int | None
    loading: int | None
    last_error: str | None
    last_error_at: float | None
    loaded_at: float | None


class PromotedModel:
    """The promoted version of ``registry``, reloaded when ``CURRENT`` changes.

    ``single_threaded`` limits TensorFlow to one thread per op before the first load (see
    :func:`models.runtime.limit_tensorflow_threads`): right for a server scoring one window
    per request on few cores.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        check_interval_s: float = 1.0,
        single_threaded: bool = False,
        loader: Callable[[Registry, int], LoadedModel] = load_version,
    ) -> None:
        if check_interval_s <= 0:
            raise ValueError(f"check_interval_s must be > 0, got {check_interval_s}")
        self.registry = registry
        self.single_threaded = single_threaded
        self.check_interval_s = check_interval_s
        self._loader = loader
        self._model: LoadedModel | None = None
        self._promoted: int | None = None
        self._loading: int | None = None
        self._failed: tuple[int, int] | None = None  # (version, CURRENT's mtime) that failed
        self._checked_at = float("-inf")
        self._state_lock = threading.Lock()  # guards the bookkeeping, never held while loading
        self._load_ended = threading.Condition(self._state_lock)
        self._load_lock = threading.Lock()  # one load at a time
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def get(self) -> LoadedModel | None:
        """The model serving now; callers keep this reference for the whole request."""
        return self._model

    def status(self) -> ServingStatus:
        model = self._model
        return ServingStatus(
            serving=model.version if model else None,
            promoted=self._promoted,
            loading=self._loading,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            loaded_at=model.loaded_at if model else None,
        )

    def refresh(self, *, force: bool = False, wait: bool = True) -> bool:
        """Follow ``CURRENT``; True when this call swapped in (or began loading) a version.

        Without ``force`` the pointer is read at most every ``check_interval_s``. With
        ``wait=False`` the load runs on a background thread and this returns at once.
        """
        now = time.monotonic()
        with self._state_lock:
            if not force and now - self._checked_at < self.check_interval_s:
                return False
            self._checked_at = now
        try:
            stamp = self._pointer_stamp()
            version = self.registry.current_version()
        except RegistryError as error:
            self._record_error(str(error))
            return False
        with self._state_lock:
            self._promoted = version
            serving = self._model.version if self._model else None
            if version is None or version == serving:
                return False
            if version == self._loading:
                if wait:  # another thread is loading it: the caller asked to see the outcome
                    self._load_ended.wait_for(lambda: self._loading != version)
                return False
            if not force and self._failed == (version, stamp):
                return False  # known bad; retried once CURRENT is rewritten
            self._loading = version
        if wait:
            self._load(version, stamp)
        else:
            threading.Thread(
                target=self._load, args=(version, stamp), name=f"load-v{version}", daemon=True
            ).start()
        return True

    def _pointer_stamp(self) -> int:
        try:
            return self.registry.current_file.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def _load(self, version: int, stamp: int) -> None:
        with self._load_lock:
            if self.single_threaded:
                # One window per call is too small to split: extra TF pool threads only spin
                # and take the cores from the threads answering requests (bench/predict.py:
                # p99 at 100 requests/s on 2 cores, ~300 ms with TF's default pools, ~10 ms).
                limit_tensorflow_threads()
            started = time.perf_counter()
            try:
                loaded = self._loader(self.registry, version)
            except Exception as error:  # a bad model must never take the serving one down
                message = f"v{version} failed to load: {error}"
                log.error("%s; still serving %s", message, self._describe_serving())
                with self._state_lock:
                    self._failed = (version, stamp)
                    if self._loading == version:
                        self._loading = None
                    self._load_ended.notify_all()
                self._record_error(message)
                return
            with self._state_lock:
                previous = self._model
                self._model = loaded  # the swap: one reference assignment
                self._failed = None
                if self._loading == version:
                    self._loading = None
                self.last_error = self.last_error_at = None
                self._load_ended.notify_all()
        log.info(
            "serving model v%d (was %s), loaded in %.2f s",
            version,
            f"v{previous.version}" if previous else "none",
            time.perf_counter() - started,
        )

    def _describe_serving(self) -> str:
        model = self._model
        return f"v{model.version}" if model else "no model"

    def _record_error(self, message: str) -> None:
        with self._state_lock:
            self.last_error, self.last_error_at = message, time.time()

    def start(self) -> None:
        """Watch ``CURRENT`` on a daemon thread until :meth:`stop`; loads the first model now."""
        if self._watcher is not None:
            return
        self._stop.clear()
        try:
            self.registry.recover()
        except RegistryError as error:  # serve what loads; the status says what is wrong
            log.error("%s", error)
            self._record_error(str(error))
        self.refresh(force=True, wait=False)
        self._watcher = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            try:
                self.refresh(wait=True)
            except Exception:  # keep watching whatever one check did
                log.exception("checking %s failed", self.registry.current_file)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout_s)
            self._watcher = None

    def wait_until_serving(self, version: int | None = None, *, timeout_s: float = 60.0) -> bool:
        """Block until a model (``version`` if given) serves; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            model = self._model
            if model is not None and (version is None or model.version == version):
                return True
            time.sleep(0.02)
        return False
