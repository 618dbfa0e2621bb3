"""The runner: benchmarks in turn, figures and logs saved, a failure not stopping the rest."""

from __future__ import annotations

import json
from pathlib import Path

from bench.suite import run_suite

PRODUCER_FIGURES = {
    "benchmark": "kafka_producer",
    "settings": {"default": {"records_per_s": 100.0, "mb_per_s": 0.1}},
    "baseline_setting": "default",
    "baseline_records_per_s": 100.0,
    "baseline_mb_per_s": 0.1,
}
FAKE_BENCHMARKS = {
    "kafka_producer": ["-c", "import sys; print('warming up'); print('noise', file=sys.stderr); "
                             f"print({json.dumps(json.dumps(PRODUCER_FIGURES))})"],
    "ingest": ["-c", "import sys; print('broker gone', file=sys.stderr); sys.exit(3)"],
    "predict": ["-c", "print('done, but no figures')"],
}  # fmt: skip


def test_each_runs_in_turn_a_failure_does_not_stop_the_rest_and_the_report_shows_it(
    tmp_path: Path,
) -> None:
    failed = run_suite(["kafka_producer", "ingest", "predict"], tmp_path, FAKE_BENCHMARKS)

    assert failed == ["ingest", "predict"]
    producer = json.loads((tmp_path / "kafka_producer.json").read_text())
    assert {k: v for k, v in producer.items() if k != "suite"} == PRODUCER_FIGURES
    assert producer["suite"]["exit_code"] == 0
    assert producer["suite"]["command"].startswith("python -c ")
    log = (tmp_path / "kafka_producer.log").read_text()
    assert "warming up" in log and "noise" in log
    assert "broker gone" in (tmp_path / "ingest.log").read_text()
    assert json.loads((tmp_path / "ingest.json").read_text())["suite"]["exit_code"] == 3
    predict = json.loads((tmp_path / "predict.json").read_text())
    assert "'done, but no figures'" in predict["suite"]["error"]

    readme = (tmp_path / "README.md").read_text()
    rows = {
        line.split(" | ")[0].strip("| "): line for line in readme.splitlines() if line[:1] == "|"
    }
    assert "| ok | 100 records/s, 0.1 MB/s (default)" in rows["kafka_producer"]
    assert f"**failed**: exit status 3; see `{tmp_path / 'ingest.log'}`" in rows["ingest"]
    assert "**failed**: its last line of output is not a JSON object" in rows["predict"]


def test_a_run_of_one_keeps_the_other_benchmarks_last_figures_in_the_report(
    tmp_path: Path,
) -> None:
    run_suite(["kafka_producer"], tmp_path, FAKE_BENCHMARKS)
    first = (tmp_path / "kafka_producer.json").read_text()

    assert run_suite(["ingest"], tmp_path, FAKE_BENCHMARKS) == ["ingest"]

    assert (tmp_path / "kafka_producer.json").read_text() == first
    readme = (tmp_path / "README.md").read_text()
    assert "| kafka_producer | ok |" in readme
    assert "| ingest | **failed**: exit status 3" in readme
    assert "| predict | **failed**: no result" in readme
