"""Kafka topic names and how mbd creates its topics."""

from __future__ import annotations

from dataclasses import dataclass

READINGS_TOPIC = "mbd.readings"
PREDICTIONS_TOPIC = "mbd.predictions"


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """A topic mbd needs: its name, partition count and per-topic configuration."""

    name: str
    partitions: int = 4
    replication_factor: int = 1
    config: tuple[tuple[str, str], ...] = ()
