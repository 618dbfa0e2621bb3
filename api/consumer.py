"""The background reader of ``mbd.predictions`` that keeps :class:`~api.store.LatestPredictions`.

Every API process must know every phone, so the reader assigns itself all partitions of the
topic (no consumer group: a group would split the phones between replicas) and starts
``lookback_s`` back in time, so a restarted API rebuilds its view of the active phones. It
runs on a daemon thread with kafka-python's blocking poll, waits for a broker or topic that is
not there yet, and counts and skips records it cannot trust (too large, not JSON, not a
prediction, a time outside the wire's accepted range): a bad record never stops it, never
reaches the store, and is logged with its partition and offset (the first ones, then one in
a thousand, so a flood of junk cannot flood the log).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from api.store import LatestPredictions
from common.kafka import make_consumer
from common.schema import Prediction
from common.settings import KafkaSettings, WireSettings

log = logging.getLogger(__name__)

_RETRY_S = 2.0
_PARTITION_CHECK_S = 30.0
_LOGGED_MALFORMED = 10  # then one line per 1000
MAX_RECORD_BYTES = 64 * 1024  # a prediction is a few hundred bytes


@dataclass(frozen=True)
class ConsumerStatus:
    running: bool
    assigned_partitions: int
    consumed: int
    malformed: int
    last_error: str | None


class PredictionConsumer:
    """Reads ``topic`` on a daemon thread into ``store`` until :meth:`stop`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        store: LatestPredictions,
        *,
        topic: str | None = None,
        lookback_s: float = 600.0,
        client_id: str = "mbd-api",
        on_record: Callable[[bool], None] | None = None,
        wire: WireSettings | None = None,
    ) -> None:
        self.kafka, self.store = kafka, store
        self.wire = wire or WireSettings()
        self.topic = topic or kafka.predictions_topic
        self.lookback_s = lookback_s
        self.client_id = client_id
        self._on_record = on_record
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._partitions = 0
        self.consumed = 0
        self.malformed = 0
        self.last_error: str | None = None

    def status(self) -> ConsumerStatus:
        running = self._thread is not None and self._thread.is_alive()
        return ConsumerStatus(
            running, self._partitions, self.consumed, self.malformed, self.last_error
        )

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="predictions-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def handle(
        self, value: bytes | None, *, partition: int | None = None, offset: int | None = None
    ) -> bool:
        """Keep one record's value; False (counted, logged) when it is not a trusted prediction."""
        try:
            if value is None:
                raise ValueError("record has no value")
            if len(value) > MAX_RECORD_BYTES:
                raise ValueError(f"record is {len(value)} bytes, limit is {MAX_RECORD_BYTES}")
            context = {"now_ms": int(time.time() * 1000), "wire": self.wire}
            prediction = Prediction.model_validate_json(value, context=context)
        except (ValidationError, ValueError) as error:
            self.malformed += 1
            if self.malformed <= _LOGGED_MALFORMED or self.malformed % 1000 == 0:
                detail = " ".join(str(error).split())[:300]
                where = f"{self.topic} partition {partition} offset {offset}"
                log.warning("skipping untrusted record %d on %s: %s", self.malformed, where, detail)
            if self._on_record:
                self._on_record(False)
            return False
        self.consumed += 1
        self.store.update(prediction)
        if self._on_record:
            self._on_record(True)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = self._connect()
                if consumer is not None:
                    self._consume(consumer)
            except Exception as error:  # broker gone, metadata errors …: report and retry
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("predictions reader: %s; retrying in %.0f s", error, _RETRY_S)
                self._stop.wait(_RETRY_S)
            finally:
                if consumer is not None:
                    consumer.close()
                self._partitions = 0

    def _connect(self) -> Any | None:
        """A consumer assigned to every partition of the topic, positioned ``lookback_s`` back."""
        from kafka import TopicPartition

        self.last_error = f"not connected to {self.kafka.bootstrap_servers} yet"
        consumer = make_consumer(
            self.kafka, group_id=None, client_id=self.client_id, auto_offset_reset="latest"
        )
        partitions = self._wait_for_partitions(consumer)
        if not partitions:
            consumer.close()
            return None
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        since_ms = int((time.time() - self.lookback_s) * 1000)
        starts = consumer.offsets_for_times({tp: since_ms for tp in assigned})
        for tp in assigned:
            found = starts.get(tp)
            if found is None:
                consumer.seek_to_end(tp)  # nothing that recent: only what comes next
            else:
                consumer.seek(tp, found.offset)
        self._partitions = len(assigned)
        self.last_error = None
        log.info(
            "reading %s: %d partitions from %d s back", self.topic, len(assigned), self.lookback_s
        )
        return consumer

    def _wait_for_partitions(self, consumer: Any) -> set[int]:
        while not self._stop.is_set():
            partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                return set(partitions)
            self.last_error = f"topic {self.topic} does not exist yet"
            self._stop.wait(_RETRY_S)
        return set()

    def _consume(self, consumer: Any) -> None:
        checked = time.monotonic()
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=500, max_records=2000)
            for records in batches.values():
                for record in records:
                    self.handle(record.value, partition=record.partition, offset=record.offset)
            if not batches:
                self.store.expire()
            if time.monotonic() - checked > _PARTITION_CHECK_S:
                checked = time.monotonic()
                partitions = consumer.partitions_for_topic(self.topic) or set()
                if len(partitions) != self._partitions:
                    log.info("%s now has %d partitions; reassigning", self.topic, len(partitions))
                    return  # reconnect assigns them all
