"""How far the streaming job is behind the readings topic: the Kafka records it has not read.

Spark's own source metric, ``maxOffsetsBehindLatest``, compares a micro-batch's end with the
topic's end as it was when the batch was planned. Without ``maxOffsetsPerTrigger`` a batch reads
up to that end, so the metric reads 0 however much arrived while the batch ran (the 500-phone
soak's status said 0 throughout while the job fell minutes behind). Here the batch's end offsets
are compared with the topic's end when the status is written, just after the batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kafka import TopicPartition

from common.kafka import make_consumer
from common.settings import KafkaSettings


def records_behind(
    batch_end: str | Mapping[str, Any] | None, topic: str, topic_end: Mapping[int, int]
) -> int | None:
    """Records in ``topic`` past a micro-batch's end offsets (Spark's ``endOffset``: a JSON
    object, or its text, of topic → partition → offset); None when the batch has none."""
    if not batch_end:
        return None
    offsets = json.loads(batch_end) if isinstance(batch_end, str) else batch_end
    read = {int(partition): int(offset) for partition, offset in offsets.get(topic, {}).items()}
    # A partition the batch has no offset for is unread from its start (offset 0) on.
    return sum(max(0, end - read.get(partition, 0)) for partition, end in topic_end.items())


class TopicEnd:
    """The end offset of each of a topic's partitions, asked of the broker when called."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.kafka, self.topic = kafka, topic
        self._consumer: Any = None

    def __call__(self) -> dict[int, int]:
        if self._consumer is None:
            # No group: it only asks for offsets. Short timeouts, so that a broker that is down
            # delays the status thread by seconds, not kafka-python's default five minutes.
            self._consumer = make_consumer(
                self.kafka, group_id=None, client_id="mbd-stream-lag",
                session_timeout_ms=3000, heartbeat_interval_ms=1000, request_timeout_ms=5000,
            )  # fmt: skip
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        ends = self._consumer.end_offsets([TopicPartition(self.topic, p) for p in partitions])
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
