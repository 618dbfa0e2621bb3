"""The Markdown summary of a benchmark run: one table row per benchmark, from its JSON figures.

Pure: the benchmarks' JSON objects (each one's last line of output, with the ``suite`` record
that ``bench/suite.py`` adds: exit status, when, on which host) go in, Markdown comes out. A
benchmark without a result, with a failed run or with figures of an unexpected shape gets a
row that says it failed; the report itself never fails for want of one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Figures = Mapping[str, Any]


@dataclass(frozen=True)
class Goal:
    text: str
    met: bool | None  # None: the run could not tell


@dataclass(frozen=True)
class Headline:
    figures: list[str]
    goals: list[Goal] = field(default_factory=list)
    without_goals: str = "— (baseline for the others)"  # the goal cell when there are none


@dataclass(frozen=True, kw_only=True)
class Machine:
    hostname: str
    cores: int
    memory_gib: float
    cpu_model: str

    def describe(self) -> str:
        return f"{self.hostname}: {self.cpu_model}, {self.cores} cores, {self.memory_gib:g} GiB"


def machine_from_proc(*, hostname: str, cores: int, cpuinfo: str, meminfo: str) -> Machine:
    """The machine as /proc/cpuinfo and /proc/meminfo describe it."""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return Machine(
        hostname=hostname,
        cores=cores,
        memory_gib=round(int(memory.group(1)) / 2**20, 1) if memory else 0.0,
        cpu_model=model.group(1).strip() if model else "unknown CPU",
    )


def _n(value: Any) -> str:
    """A figure as the benchmarks rounded it; rates of thousands get separators."""
    if value is None:
        return "—"
    if isinstance(value, float | int) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def kafka_producer(f: Figures) -> Headline:
    settings = f["settings"]
    default_name, default = next(iter(settings.items()))
    return Headline(
        [
            f"{_n(f['baseline_records_per_s'])} records/s, {_n(f['baseline_mb_per_s'])} MB/s "
            f"({f['baseline_setting']})",
            f"{default_name}: {_n(default['records_per_s'])} records/s",
        ]
    )


def ingest(f: Figures) -> Headline:
    full, half_goal, half = f["throughput"], f["half_goal_rate"], f["half_rate"]
    rate, p99_half_goal = full["accepted_readings_per_s"], half_goal["latency_p99_ms"]

    def paced(name: str, run: Figures) -> str:
        return (
            f"at {name} ({_n(run['target_readings_per_s'])} readings/s): "
            f"p50 {_n(run['latency_p50_ms'])} ms, p99 {_n(run['latency_p99_ms'])} ms"
        )

    return Headline(
        [
            f"{_n(rate)} accepted readings/s, p50 {_n(full['latency_p50_ms'])} ms, "
            f"p99 {_n(full['latency_p99_ms'])} ms",
            paced("half the goal's rate", half_goal),
            paced("half the measured rate", half),
            f"ratio to the raw producer (batch-sized records) {_n(f['ratio_to_raw_producer'])}",
            f"gateway peak RSS {_n(f['gateway_peak_rss_mb'])} MB",
            *(
                [f"with SASL/SCRAM over without: {_n(sasl['sasl_ratio'])}"]
                if (sasl := f.get("sasl_comparison"))
                else []
            ),
            *([_replication(copies)] if (copies := f.get("replication_comparison")) else []),
        ],
        [
            Goal(f"≥ {_n(f['goal_readings_per_s'])} readings/s", rate >= f["goal_readings_per_s"]),
            Goal(
                f"p99 < {_n(f['goal_p99_ms_at_half_goal_rate'])} ms at half the goal's rate",
                p99_half_goal < f["goal_p99_ms_at_half_goal_rate"],
            ),
        ],
    )


def _replication(f: Figures) -> str:
    line = (
        f"three brokers (replication 3) over one: {_n(f['replication_ratio'])}; p99 at half "
        f"each arm's own rate {_n(f['three_brokers_half_rate_p99_ms_median'])} ms vs "
        f"{_n(f['one_broker_half_rate_p99_ms_median'])} ms"
    )
    three = f["three_brokers_half_goal_rate_p99_ms_median"]
    one = f["one_broker_half_goal_rate_p99_ms_median"]
    if three is not None or one is not None:
        line += f", at half the goal's rate {_n(three)} ms vs {_n(one)} ms"
    return line


def _other_drains(f: Figures) -> str:
    """The drains besides the headline's; runs of each of the bench's shapes get theirs."""
    if first := f.get("first_drain"):  # older runs: the headline was a warm second drain
        return (
            f"; the session's first drain {_n(first['job_readings_per_s'])} readings/s vs "
            f"{_n(first['bare_copy_readings_per_s'])}/s"
        )
    parts = []
    if second := f.get("second_drain"):
        parts.append(f"the same topic again, warm: {_n(second['job_readings_per_s'])} readings/s")
    if small := f.get("small_drain"):
        parts.append(
            f"{_n(small['readings'])} readings, warm: {_n(small['job_readings_per_s'])} readings/s"
        )
    cost = f.get("warm_drain_cost") or {}
    if cost.get("marginal_readings_per_s"):
        parts.append(
            f"a warm drain takes {_n(cost['fixed_seconds_per_drain'])} s + readings / "
            f"{_n(cost['marginal_readings_per_s'])}/s"
        )
    return "".join(f"<br>{part}" for part in parts)


def streaming(f: Figures) -> Headline:
    fresh = f["freshness"]
    lake, served = fresh["window_end_to_lake"], fresh["window_end_to_prediction"]
    p95 = served["p95_s"]
    return Headline(
        [
            (f"{_n(f['readings'])} readings: " if f.get("readings") else "")
            + f"job {_n(f['job_readings_per_s'])} readings/s vs bare Kafka→Parquet copy "
            f"{_n(f['bare_copy_readings_per_s'])}/s (ratio {_n(f['ratio_to_bare_copy'])})"
            + _other_drains(f),
            f"freshness ({_n(fresh['phones'])} phones): window end → lake p50 "
            f"{_n(lake['p50_s'])} s, p95 {_n(lake['p95_s'])} s; → prediction p50 "
            f"{_n(served['p50_s'])} s, p95 {_n(p95)} s",
        ],
        [
            Goal(
                f"≥ {_n(f['goal_readings_per_s'])} readings/s",
                f["job_readings_per_s"] >= f["goal_readings_per_s"],
            ),
            Goal(
                f"window end → prediction p95 ≤ {_n(f['goal_freshness_p95_s'])} s",
                None if p95 is None else p95 <= f["goal_freshness_p95_s"],
            ),
        ],
    )


def streaming_cluster(f: Figures) -> Headline:
    return Headline(
        [
            f"{_n(f['readings'])} readings: standalone cluster (two 1-core workers) "
            f"{_n(f['cluster_readings_per_s_median'])} readings/s vs local[2] "
            f"{_n(f['local_readings_per_s_median'])}/s (ratio {_n(f['cluster_ratio'])}; "
            f"each pair {', '.join(map(_n, f['cluster_ratio_each_pair']))})",
        ],
        without_goals="— (none set: figures to watch)",
    )


def failover(f: Figures) -> Headline:
    fail, others = f["failover"], f["other_phones"]
    return Headline(
        [
            f"{_n(len(f['kills']))} kills of the busiest leader: kill → first 202 of its "
            f"partitions' phones p50 {_n(fail['p50_s'])} s, p95 {_n(fail['p95_s'])} s, "
            f"max {_n(fail['max_s'])} s",
            f"the other phones' first 202 p50 {_n(others['p50_s'])} s, max {_n(others['max_s'])} s",
            f"{_n(f['refused_503'])} answered 503, {_n(f['unanswered'])} unanswered",
            f"baseline: a phone's median time between 202s {_n(f['baseline_gap_median_s'])} s "
            f"(failover p50 {_n(f['ratio_failover_p50_to_baseline_gap'])}× that)",
        ],
        without_goals="— (none set: figures to watch)",
    )


def predict(f: Figures) -> Headline:
    paced, closed, alone = f["paced"], f["closed_loop"], f["in_process"]
    return Headline(
        [
            f"paced {_n(paced['rate_per_s'])} requests/s: p50 {_n(paced['p50_ms'])} ms, "
            f"p99 {_n(paced['p99_ms'])} ms",
            f"{_n(closed['concurrency'])} concurrent: {_n(closed['requests_per_s'])} requests/s, "
            f"p99 {_n(closed['p99_ms'])} ms",
            f"model alone in-process p50 {_n(alone['model_p50'])} ms "
            f"(API/model p50 ratio {_n(f['ratio_api_p50_to_model_p50'])})",
            *(
                [
                    f"token check and rate limit p50 {_n(alone['auth_p50_us'])} µs "
                    f"({_n(f['ratio_auth_p50_to_pipeline_p50'])} of the route's own work)"
                ]
                if "auth_p50_us" in alone
                else []
            ),
        ],
        [
            Goal(
                f"p99 < {_n(paced['goal_p99_ms'])} ms at {_n(paced['rate_per_s'])} requests/s",
                paced["p99_ms"] < paced["goal_p99_ms"],
            )
        ],
    )


TRAINING_GOALS = {
    "c_within_1_point_of_a": "(c) held-out accuracy within 1 point of (a)",
    "speedup_at_least_1.7": "speedup (c) over (b) ≥ 1.7×",
    "macro_f1_at_least_0.95": "(c) held-out macro-F1 ≥ 0.95",
    "pretraining_helps": "pretraining raises macro-F1 at 10 % labels",
}


def training(f: Figures) -> Headline:
    target = f["target_val_accuracy"]
    lines = []
    for name, run in f["runs"].items():
        seconds = run["seconds_to_target"]
        reached = f"{_n(seconds)} s to {_n(target)}" if seconds else f"{_n(target)} not reached"
        if len(each := run.get("seconds_to_target_each_run", [])) > 1:
            reached += f" (median of {len(each)} runs: {', '.join(map(_n, each))} s)"
        lines.append(
            f"{name}: {reached}, held-out accuracy {_n(run['heldout_accuracy'])}, "
            f"macro-F1 {_n(run['heldout_macro_f1'])}"
        )
    lines.append(
        f"speedup (c) over (b) {_n(f['speedup_c_over_b'])}×; pretraining gain at 10 % "
        f"labels {f['pretraining_gain_macro_f1_at_10pct_labels']:+g} macro-F1"
    )
    return Headline(lines, _goals(f["goals"], TRAINING_GOALS))


def retraining(f: Figures) -> Headline:
    lines = []
    for name, arm in f["arms"].items():
        kept = "" if arm["same_workers"] else " (Spark replaced a worker)"
        lines.append(
            f"{name}: Python workers {arm['worker_mb_per_run']:+g} MB a run, driver "
            f"{arm['driver_mb_per_run']:+g} MB a run{kept}"
        )
    ratio = f["ratio_new_over_same"]
    lines.append(
        f"{_n(f['runs'])} runs an arm; new statistics over the same lake "
        + (f"{_n(ratio)}×" if ratio is not None else "— (the same lake's workers did not grow)")
    )
    return Headline(lines, without_goals="— (none set: figures to watch)")


SOAK_GOALS = {
    "no_restarts": "no service restarted",
    "memory_flat": "no service's peak RSS grew > 25 % from first to last minute",
    "stopped_cleanly": "SIGTERM stopped everything, no process left",
}


def soak(f: Figures) -> Headline:
    lines = [
        f"{_n(f['phones'])} phones for {_n(f['minutes'])} min, up after {_n(f['seconds_to_up'])} s"
    ]
    for name, service in f["services"].items():
        lines.append(
            f"{name}: peak RSS {_n(service['start_peak_rss_mb'])} → "
            f"{_n(service['end_peak_rss_mb'])} MB, restarts {_n(service['restarts'])}"
        )
    stream = f["stream"]
    lines.append(
        f"stream lag (Kafka records behind) first minute ≤ {_n(stream['start_max_lag'])}, "
        f"last minute ≤ {_n(stream['end_max_lag'])}; "
        f"{_n(stream['totals'].get('windows'))} windows in the lake, "
        f"{_n(stream['totals'].get('predictions'))} predictions"
    )
    model = f["model_version"]
    lines.append(f"promoted model v{model}" if model else "no model promoted")
    # results before 2026-11-24 read the gateway before the stop, while phones still posted
    read = f.get("gateway_read", "before the stop, phones still posting")
    accepted = f"gateway accepted {_n(f['gateway']['accepted_batches'])} batches (read {read})"
    if f.get("simulator"):  # its own tally, printed when it stopped
        accepted += f"; the simulator counted {_n(f['simulator'].get('accepted'))} accepted"
    lines.append(accepted)
    return Headline(lines, _goals(f["goals"], SOAK_GOALS))


def _goals(flags: Mapping[str, bool | None], texts: Mapping[str, str]) -> list[Goal]:
    return [Goal(texts.get(key, key.replace("_", " ")), met) for key, met in flags.items()]


HEADLINES: dict[str, Callable[[Figures], Headline]] = {
    "kafka_producer": kafka_producer,
    "ingest": ingest,
    "streaming": streaming,
    "streaming_cluster": streaming_cluster,
    "failover": failover,
    "predict": predict,
    "training": training,
    "retraining": retraining,
    "soak": soak,
}


def failure(name: str, figures: Figures | None, log_hint: str) -> str | None:
    """Why a benchmark's result is no result, or None when its run succeeded."""
    if figures is None:
        return "no result (not run yet, or its JSON is missing)"
    run = figures.get("suite", {})
    if run.get("error"):
        return f"{run['error']}; see `{log_hint}`"
    if run.get("exit_code", 0) != 0:
        return f"exit status {run['exit_code']}; see `{log_hint}`"
    if name not in HEADLINES:
        return f"no headline figures known for a benchmark named {name!r}"
    return None


def _cell(lines: Sequence[str]) -> str:
    return "<br>".join(line.replace("|", "\\|") for line in lines)


def _goal_cell(headline: Headline) -> str:
    goals = headline.goals
    if not goals:
        return headline.without_goals
    verdict = {True: "met", False: "**not met**", None: "unknown"}
    return _cell([f"{goal.text}: {verdict[goal.met]}" for goal in goals])


def row(name: str, figures: Figures | None, *, command: str, log_hint: str) -> list[str]:
    """One table row: benchmark, result, headline figures, goals, when, how to rerun."""
    run = (figures or {}).get("suite", {})
    when = f"{run['finished_at']}" if run.get("finished_at") else "—"
    if run.get("seconds") is not None:
        when += f" ({_n(run['seconds'])} s)"
    reproduce = f"`{command}`"
    why = failure(name, figures, log_hint)
    if why is None:
        assert figures is not None
        try:
            headline = HEADLINES[name](figures)
        except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as error:
            why = f"its JSON does not have the expected figures ({type(error).__name__}: {error})"
        else:
            return [
                name,
                "ok",
                _cell(headline.figures),
                _goal_cell(headline),
                when,
                reproduce,
            ]
    return [name, f"**failed**: {why}".replace("|", "\\|"), "—", "—", when, reproduce]


def render(
    results: Mapping[str, Figures | None],
    *,
    commands: Mapping[str, str],
    machine: Machine,
    generated_at: str,
    log_hints: Mapping[str, str] | None = None,
) -> str:
    """The whole README: heading, machine, date, and one row per benchmark in ``results``."""
    hints = log_hints or {}
    header = ["benchmark", "result", "headline figures", "goal", "finished (run time)", "reproduce"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench.suite` on {generated_at}. Machine: {machine.describe()}.",
        "",
        "Benchmarks run one at a time with nothing else busy (`make bench`); each row's command "
        "reruns that benchmark alone. Its full output is in `<name>.log` here, its figures in "
        "`<name>.json`.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for name, figures in results.items():
        host = (figures or {}).get("suite", {}).get("host")
        cells = row(
            name,
            figures,
            command=commands.get(name, f"python -m bench.{name}"),
            log_hint=hints.get(name, f"bench/results/{name}.log"),
        )
        if host and host != machine.hostname:
            cells[4] += f" on {host}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
