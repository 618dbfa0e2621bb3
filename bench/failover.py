"""Leader failover as a phone sees it: three brokers, a gateway, phones posting, a leader killed.

Starts three KRaft brokers (replication 3, ``min.insync.replicas`` 2; bench/brokers.py), creates
the readings topic, and starts ``mbd gateway``. ``--phones-per-partition`` phones for each
partition of the topic (device ids chosen by the key's partition, checked against the 202s'
``partition``) post batch after batch, ``--pause`` apart; a batch refused (503) or unanswered is
posted again, the same ``batch_seq``, after ``--retry-pause`` (not the ``Retry-After``: this
measures when the cluster takes writes again, not a phone's backoff). Then ``--kills`` times:

1. a quiet window of ``--quiet-seconds`` with all three brokers in sync: the baseline, every
   phone's time between its consecutive 202s;
2. the broker leading the most partitions of the readings topic is killed (SIGKILL);
3. the time from the kill to each phone's first 202 for a batch posted after it (a post in
   flight at the kill may have been acknowledged just before it); ``failover_s`` is the longest of
   the phones whose partition the killed broker led (their partitions' new leader is elected
   after the broker session times out), ``other_phones_s`` the longest of the rest (whose
   partitions kept their leader: how far one partition's loss holds up the others);
4. the broker is started again (``start_node``) and the bench waits until no partition of the
   topic is under-replicated before the next quiet window.

Figures: p50/p95/max of ``failover_s`` over the kills (p95 interpolated, from few kills), the
503s and unanswered posts, the baseline's median gap and the ratio of the failover's p50 to it.
The last line printed is one JSON object.

    python -m bench.failover [--kills 5] [--quiet-seconds 10] [--phones-per-partition 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from kafka.partitioner.default import murmur2

from bench.brokers import running_brokers
from bench.ingest import start_gateway, stop_gateway
from common.kafka import default_topics, ensure_topics
from common.settings import BrokerSettings, JvmSettings, KafkaSettings
from infra import kafka_cluster
from ingest.devices import DeviceRegistry
from simulators.client import wait_until_ready

NO_ANSWER = 0  # the status recorded for a post that got no HTTP answer


def batch_body(device_id: str, batch_seq: int, *, samples: int = 40) -> dict[str, Any]:
    """A valid wire batch: the last 2 s of 20 Hz accelerometer readings and one GPS fix."""
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - samples * 50
    return {
        "device_id": device_id,
        "batch_seq": batch_seq,
        "sent_at": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(),
        "accel": [{"t": start_ms + 50 * i, "x": 0.1, "y": 9.81, "z": 0.2} for i in range(samples)],
        "gps": [{"t": start_ms, "lat": 53.35, "lon": -6.26, "acc_m": 5.0}],
    }


def phones_for_partitions(partitions: int, per_partition: int) -> dict[str, int]:
    """Device ids, ``per_partition`` for each partition, with the partition the producer's
    default partitioner (murmur2 of the key, as Kafka's Java client) sends each to."""
    phones: dict[str, int] = {}
    filled: Counter[int] = Counter()
    index = 0
    while len(phones) < partitions * per_partition:
        phone = f"failover-{index:05d}"
        partition = (murmur2(phone.encode()) & 0x7FFFFFFF) % partitions
        if filled[partition] < per_partition:
            phones[phone] = partition
            filled[partition] += 1
        index += 1
    return phones


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() when the post began
    at: float  # and when its answer (or its failure) came
    phone: str
    status: int
    partition: int | None  # from a 202's body


class Phones:
    """Phones posting in a thread of their own, each batch until accepted; every answer kept."""

    def __init__(self, url: str, tokens: dict[str, str], *, pause_s: float, retry_pause_s: float):
        self.url, self.tokens = url, tokens
        self.pause_s, self.retry_pause_s = pause_s, retry_pause_s
        self.answers: list[Answer] = []  # appended by the thread, read by the bench
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Phones:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._phone(session, phone) for phone in self.tokens))

    async def _phone(self, session: aiohttp.ClientSession, phone: str) -> None:
        headers = {"Authorization": f"Bearer {self.tokens[phone]}",
                   "Content-Type": "application/json"}  # fmt: skip
        seq = 0
        while not self.stopping.is_set():
            seq += 1
            body = json.dumps(batch_body(phone, seq)).encode()
            while not self.stopping.is_set():
                sent = time.monotonic()
                status, partition = await self._post(session, body, headers)
                self.answers.append(Answer(sent, time.monotonic(), phone, status, partition))
                if status == 202 or status not in (503, NO_ANSWER):
                    break  # accepted, or refused for good (counted, never expected)
                await asyncio.sleep(self.retry_pause_s)
            await asyncio.sleep(self.pause_s)

    async def _post(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
    ) -> tuple[int, int | None]:
        try:
            async with session.post(f"{self.url}/v1/readings", data=body, headers=headers) as r:
                reply = await r.read()
                if r.status == 202:
                    return r.status, int(json.loads(reply)["partition"])
                return r.status, None
        except (aiohttp.ClientError, TimeoutError):
            return NO_ANSWER, None

    def since(self, moment: float) -> list[Answer]:
        """The answers to posts sent at ``moment`` or later."""
        return [answer for answer in list(self.answers) if answer.sent >= moment]


def wait_for(what: str, condition: Any, timeout_s: float, poll_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(poll_s)
    raise RuntimeError(f"{what} not within {timeout_s:.0f} s")


def first_accepted(answers: list[Answer], phones: list[str]) -> dict[str, float] | None:
    """Each phone's first 202 among ``answers``; None until every phone has one."""
    first: dict[str, float] = {}
    for answer in answers:
        if answer.status == 202 and answer.phone not in first:
            first[answer.phone] = answer.at
    return first if len(first) == len(phones) else None


def gaps_between_accepts(answers: list[Answer]) -> list[float]:
    """Seconds between each phone's consecutive 202s among ``answers``."""
    last: dict[str, float] = {}
    gaps = []
    for answer in answers:
        if answer.status == 202:
            if answer.phone in last:
                gaps.append(answer.at - last[answer.phone])
            last[answer.phone] = answer.at
    return gaps


def one_kill(
    brokers: BrokerSettings, kafka: KafkaSettings, phones: Phones, partition_of: dict[str, int],
    timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Kill the busiest leader, time every phone's first 202 after it, bring it back."""
    topic = kafka.readings_topic
    views = kafka_cluster.partitions(kafka, [topic])
    leaders = kafka_cluster.leader_counts(views)
    victim = max(leaders, key=lambda node: leaders[node])
    led = sorted(view.partition for view in views if view.leader == victim)
    killed_at = time.monotonic()
    if not kafka_cluster.kill_node(brokers.data_dir, victim):
        raise RuntimeError(f"broker {victim} was not running")
    first = wait_for(
        "a 202 for every phone after the kill",
        lambda: first_accepted(phones.since(killed_at), list(partition_of)),
        timeout_s,
    )
    recovered_at = max(first.values())
    during = [a for a in list(phones.answers) if killed_at < a.at <= recovered_at]
    after = {phone: round(at - killed_at, 3) for phone, at in first.items()}
    affected = [phone for phone, partition in partition_of.items() if partition in led]
    others = [phone for phone in partition_of if phone not in affected]
    leaders_after = kafka_cluster.leader_counts(kafka_cluster.partitions(kafka, [topic]))
    began = time.monotonic()
    kafka_cluster.start_node(brokers, JvmSettings(), victim)
    restart_s = time.monotonic() - began
    resync_s = kafka_cluster.wait_fully_replicated(kafka, [topic])
    return {
        "victim": victim,
        "leaders_before": leaders,
        "leaders_after_kill": leaders_after,
        "victim_led_partitions": led,
        "failover_s": max(after[phone] for phone in affected) if affected else None,
        "other_phones_s": max(after[phone] for phone in others) if others else None,
        "first_202_after_kill_s": after,
        "statuses_until_every_phone_accepted": dict(Counter(a.status for a in during)),
        "restart_s": round(restart_s, 2),
        "in_sync_after_restart_s": round(resync_s, 2),
    }


def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p95_s": None, "max_s": None}
    return {
        "p50_s": round(float(np.percentile(values, 50)), 3),
        "p95_s": round(float(np.percentile(values, 95)), 3),
        "max_s": round(max(values), 3),
    }


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    with running_brokers(3) as (brokers, kafka):
        ensure_topics(kafka, default_topics(kafka))
        expected = phones_for_partitions(kafka.partitions, args.phones_per_partition)
        tokens = DeviceRegistry(folder / "devices.json").add(list(expected))
        gateway, url = start_gateway(kafka, folder / "devices.json", args.workers)
        try:
            wait_until_ready(url, timeout_s=60)
            with Phones(url, tokens, pause_s=args.pause, retry_pause_s=args.retry_pause) as phones:
                wait_for("every phone's first 202",
                         lambda: first_accepted(phones.since(0), list(tokens)), 60)  # fmt: skip
                time.sleep(args.warmup_seconds)  # connections, producer metadata, first calls
                partition_of = {a.phone: a.partition for a in phones.since(0)
                                if a.status == 202 and a.partition is not None}  # fmt: skip
                if partition_of != expected:
                    raise RuntimeError(f"phones landed on {partition_of}, expected {expected}")
                started = time.monotonic()
                quiet: list[float] = []
                kills = []
                for kill in range(1, args.kills + 1):
                    window_start = time.monotonic()
                    time.sleep(args.quiet_seconds)
                    window_end = time.monotonic()
                    window = [a for a in phones.since(window_start) if a.at <= window_end]
                    quiet += gaps_between_accepts(window)
                    result = one_kill(brokers, kafka, phones, partition_of, args.kill_timeout)
                    kills.append(result)
                    print(f"kill {kill}: {json.dumps(result)}", flush=True)
                answers = phones.since(started)
        finally:
            stop_gateway(gateway)
    failovers = [k["failover_s"] for k in kills if k["failover_s"] is not None]
    others = [k["other_phones_s"] for k in kills if k["other_phones_s"] is not None]
    statuses = Counter(a.status for a in answers)
    baseline = statistics.median(quiet) if quiet else None
    p50 = spread(failovers)["p50_s"]
    return {
        "kills": kills,
        "failover": spread(failovers),
        "other_phones": spread(others),
        "statuses": {str(status): n for status, n in sorted(statuses.items())},
        "refused_503": statuses.get(503, 0),
        "unanswered": statuses.get(NO_ANSWER, 0),
        "baseline_gap_median_s": None if baseline is None else round(baseline, 4),
        "baseline_gaps": len(quiet),
        "ratio_failover_p50_to_baseline_gap": (
            round(p50 / baseline, 1) if p50 is not None and baseline else None
        ),
        "restart_s": [k["restart_s"] for k in kills],
        "in_sync_after_restart_s": [k["in_sync_after_restart_s"] for k in kills],
        "partitions": kafka.partitions,
        "replication_factor": kafka.replication_factor,
        "min_insync_replicas": kafka.min_insync,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--quiet-seconds", type=float, default=10.0,
                        help="before each kill, all brokers in sync: the baseline")  # fmt: skip
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--phones-per-partition", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.05, help="s between a phone's batches")
    parser.add_argument("--retry-pause", type=float, default=0.05, help="s before a repost")
    parser.add_argument("--kill-timeout", type=float, default=120.0,
                        help="s for every phone to be accepted again after a kill")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="of the gateway")
    args = parser.parse_args()
    if args.kills < 1:
        parser.error(f"--kills {args.kills}: at least one")

    with tempfile.TemporaryDirectory(prefix="mbd-bench-failover-") as tmp:
        figures = measure(args, Path(tmp))
    summary = {
        "benchmark": "failover",
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "brokers": 3,
        "phones": figures["partitions"] * args.phones_per_partition,
        "pause_s": args.pause,
        "retry_pause_s": args.retry_pause,
        "gateway_workers": args.workers,
        **figures,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
