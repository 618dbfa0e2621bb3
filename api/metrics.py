"""Prometheus metrics of the prediction API, in a registry of its own per app (tests stay apart)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(
        self,
        *,
        devices: Callable[[], float],
        serving_version: Callable[[], float],
        load_failing: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry()
        self.predict_latency = Histogram(
            "mbd_api_predict_seconds",
            "Time to answer POST /v1/predict",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.predict_answers = Counter(
            "mbd_api_predict_answers",
            "Answers of POST /v1/predict, by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.predictions_consumed = Counter(
            "mbd_api_predictions_consumed",
            "Records read from the predictions topic and kept",
            registry=self.registry,
        )
        self.predictions_malformed = Counter(
            "mbd_api_predictions_malformed",
            "Records on the predictions topic that could not be parsed and were skipped",
            registry=self.registry,
        )
        self.devices_evicted = Counter(
            "mbd_api_devices_evicted",
            "Phones dropped from memory: silent past the TTL or over the device limit",
            registry=self.registry,
        )
        self.devices = Gauge(
            "mbd_api_devices", "Phones with a latest prediction in memory", registry=self.registry
        )
        self.devices.set_function(devices)
        self.serving_version = Gauge(
            "mbd_api_model_version",
            "Model version serving POST /v1/predict (0 when none)",
            registry=self.registry,
        )
        self.serving_version.set_function(serving_version)
        self.load_failing = Gauge(
            "mbd_api_model_load_failing",
            "1 while the promoted version failed to load and an older one serves",
            registry=self.registry,
        )
        self.load_failing.set_function(load_failing)
