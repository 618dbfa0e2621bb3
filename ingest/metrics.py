"""Prometheus metrics of the gateway, in a registry of its own per app (tests stay apart)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# What the gateway logs when it stops, followed by :meth:`GatewayMetrics.totals` as JSON: the
# soak benchmark reads it once the phones have stopped, when the totals are final.
STOPPED_TOTALS = "gateway stopped, totals "


class GatewayMetrics:
    def __init__(self, pending: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.accepted_batches = Counter(
            "mbd_gateway_accepted_batches", "Batches acknowledged by Kafka", registry=self.registry
        )
        self.accepted_readings = Counter(
            "mbd_gateway_accepted_readings",
            "Accelerometer samples and GPS fixes in acknowledged batches",
            registry=self.registry,
        )
        self.rejected = Counter(
            "mbd_gateway_rejected_batches",
            "Batches answered with an error, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mbd_gateway_request_seconds",
            "Time to answer POST /v1/readings",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "mbd_gateway_producer_queue_depth",
            "Batches waiting for the broker's acknowledgement",
            registry=self.registry,
        )
        self.queue_depth.set_function(pending)

    def totals(self) -> dict[str, int]:
        """Batches and readings accepted and batches rejected (all reasons) so far."""
        counters = {
            "accepted_batches": self.accepted_batches,
            "accepted_readings": self.accepted_readings,
            "rejected_batches": self.rejected,
        }
        return {name: int(_total(counter)) for name, counter in counters.items()}


def _total(counter: Counter) -> float:
    """A counter's value, summed over its labels."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
