"""The streaming job's status file, written from the query's progress without Spark's listener."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from common.settings import LakeSettings, StreamSettings
from streaming.job import ProgressStatus
from streaming.sink import LakeWriter


class Query:
    """What the status thread asks of a streaming query."""

    id, runId = "query-1", "run-1"

    def __init__(self) -> None:
        self.lastProgress: dict[str, Any] | None = None
        self.isActive = True


def progress(batch_id: int, *, behind: str = "0") -> dict[str, Any]:
    return {"batchId": batch_id, "timestamp": f"2026-11-24T05:00:0{batch_id}Z",
            "numInputRows": 40, "processedRowsPerSecond": 80.0, "batchDuration": 500,
            "sources": [{"metrics": {"maxOffsetsBehindLatest": behind}}]}  # fmt: skip


def status_thread(tmp_path: Path, *, poll_s: float) -> tuple[Query, LakeWriter, ProgressStatus]:
    settings = StreamSettings(
        lake=LakeSettings(uri=tmp_path / "lake"),
        checkpoint_dir=tmp_path / "checkpoint",
        status_file=tmp_path / "status" / "stream.json",
        live_scoring=False,
    )
    query, writer = Query(), LakeWriter(settings)
    return query, writer, ProgressStatus(query, settings, writer, poll_s=poll_s)


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_finishing_writes_the_last_batch_with_the_lake_writers_figures(tmp_path: Path) -> None:
    query, writer, status = status_thread(tmp_path, poll_s=60)
    status.start()
    query.lastProgress = progress(3, behind="12")
    writer.written = {"last_batch": {"batch_id": 3, "windows": 7}, "totals": {"windows": 20}}
    status.finish()

    written = json.loads((tmp_path / "status" / "stream.json").read_text())
    assert written["batch_id"] == 3 and written["input_rows"] == 40
    assert written["offsets_behind_latest"] == "12"
    assert written["last_batch"] == {"batch_id": 3, "windows": 7}
    assert written["totals"] == {"windows": 20}
    assert not status.is_alive()


def test_nothing_is_written_before_the_first_batch(tmp_path: Path) -> None:
    _, _, status = status_thread(tmp_path, poll_s=0.01)
    status.start()
    status.finish()
    assert not (tmp_path / "status").exists()


def test_a_failed_write_is_tried_again_and_polling_ends_with_the_query(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    query, _, status = status_thread(tmp_path, poll_s=0.02)
    (tmp_path / "status").write_text("a file where the status folder should be")
    query.lastProgress = progress(1)
    with caplog.at_level(logging.WARNING, logger="streaming.job"):
        status.start()
        wait_for(lambda: caplog.text.count("could not write the status") >= 2)
    assert status.is_alive()

    (tmp_path / "status").unlink()
    wait_for(lambda: (tmp_path / "status" / "stream.json").exists())
    query.lastProgress, query.isActive = progress(2), False
    status.join(timeout=10)
    assert not status.is_alive()
    assert json.loads((tmp_path / "status" / "stream.json").read_text())["batch_id"] == 2


def test_the_status_counts_the_records_past_the_batch_in_the_readings_topic(
    tmp_path: Path,
) -> None:
    query, writer, _ = status_thread(tmp_path, poll_s=60)
    settings = StreamSettings(status_file=tmp_path / "stream.json", live_scoring=False)
    topic = settings.kafka.readings_topic
    asked: list[list[int]] = []

    def topic_end(partitions: list[int]) -> dict[int, int]:
        asked.append(partitions)
        return {0: 50, 1: 20}

    status = ProgressStatus(query, settings, writer, poll_s=60, topic_end=topic_end)
    query.lastProgress = progress(4) | {
        "sources": [{"endOffset": json.dumps({topic: {"1": 20, "0": 40}}), "metrics": {}}]
    }
    status.start()
    status.finish()

    assert json.loads((tmp_path / "stream.json").read_text())["records_behind_topic_end"] == 10
    assert asked == [[0, 1]]  # the partitions the batch read


def test_a_broker_that_cannot_say_its_end_leaves_the_lag_unknown_not_the_status_unwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    query, writer, _ = status_thread(tmp_path, poll_s=60)
    settings = StreamSettings(status_file=tmp_path / "stream.json", live_scoring=False)

    def broker_down(partitions: list[int]) -> dict[int, int]:
        raise TimeoutError("no broker at localhost:9092")

    status = ProgressStatus(query, settings, writer, poll_s=60, topic_end=broker_down)
    batch_end = json.dumps({settings.kafka.readings_topic: {"0": 3}})
    query.lastProgress = progress(5) | {"sources": [{"endOffset": batch_end, "metrics": {}}]}
    with caplog.at_level(logging.WARNING, logger="streaming.job"):
        status.start()
        status.finish()

    written = json.loads((tmp_path / "stream.json").read_text())
    assert written["batch_id"] == 5 and written["records_behind_topic_end"] is None
    assert f"could not read the end of {settings.kafka.readings_topic}" in caplog.text
