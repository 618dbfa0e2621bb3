"""How far the streaming job is behind the readings topic: the Kafka records it has not read.

Spark's own source metric, ``maxOffsetsBehindLatest``, compares a micro-batch's end with the
topic's end as it was when the batch was planned. Without ``maxOffsetsPerTrigger`` a batch reads
up to that end, so the metric reads 0 however much arrived while the batch ran. Here the batch's
end offsets are compared with the topic's end offsets when the status is written, which is up
to one status poll after the batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import TopicPartition

from common.kafka import make_consumer
from common.settings import KafkaSettings


def batch_offsets(batch_end: str | Mapping[str, Any] | None, topic: str) -> dict[int, int]:
    """Partition → offset in ``topic`` from a micro-batch's ``endOffset`` (Spark's JSON object,
    or its text; PySpark writes a missing one as ``"None"``); empty when there is none.

    Raises ValueError for text that is not JSON.
    """
    if batch_end in (None, "", "None", "null"):
        return {}
    offsets = json.loads(batch_end) if isinstance(batch_end, str) else batch_end
    return {int(partition): int(offset) for partition, offset in offsets.get(topic, {}).items()}


def records_behind(read: Mapping[int, int], topic_end: Mapping[int, int]) -> int | None:
    """Records past ``read`` (the next offset to read, per partition) up to ``topic_end``; None
    when nothing was read or the end of a partition read is unknown."""
    if not read or any(partition not in topic_end for partition in read):
        return None
    return sum(max(0, topic_end[partition] - offset) for partition, offset in read.items())


class TopicEnd:
    """The end offsets of a topic's partitions, asked of the broker when called.

    The caller names the partitions (those the batch read), so no metadata refresh is needed,
    which kafka-python would wait on without a limit when the broker is away.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, *, timeout_ms: int = 5000) -> None:
        self.kafka, self.topic, self.timeout_ms = kafka, topic, timeout_ms
        self._consumer: Any = None

    def __call__(self, partitions: Iterable[int]) -> dict[int, int]:
        if self._consumer is None:
            # No group: it only asks for offsets. Short timeouts, so that a broker that is away
            # delays the status thread by seconds, not kafka-python's default minutes.
            self._consumer = make_consumer(
                self.kafka, group_id=None, client_id="mbd-stream-lag",
                bootstrap_timeout_ms=self.timeout_ms, session_timeout_ms=3000,
                heartbeat_interval_ms=1000, request_timeout_ms=self.timeout_ms,
            )  # fmt: skip
        wanted = [TopicPartition(self.topic, partition) for partition in partitions]
        ends = self._consumer.end_offsets(wanted, timeout_ms=self.timeout_ms)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
