"""Pinning standalone workers to CPUs of their own (benchmarks compare worker counts with it)."""

from __future__ import annotations

import os
import subprocess
import sys

from infra.spark_cluster import pinned_command, worker_cpus


def test_workers_get_cpus_of_their_own_and_share_only_when_they_ask_for_more() -> None:
    usable = sorted(os.sched_getaffinity(0))
    one_each = worker_cpus(len(usable), 1)
    assert one_each == [{cpu} for cpu in usable]
    crowded = worker_cpus(len(usable) + 1, 1)
    assert crowded[-1] == {usable[0]}  # more workers than CPUs: round-robin
    assert all(len(cpus) == min(2, len(usable)) for cpus in worker_cpus(2, 2))


def test_a_pinned_command_and_what_it_starts_run_on_those_cpus_only() -> None:
    cpu = max(os.sched_getaffinity(0))
    child = "import os, subprocess, sys; print(subprocess.check_output([sys.executable, '-c', "
    child += "'import os; print(sorted(os.sched_getaffinity(0)))'], text=True).strip())"
    done = subprocess.run([*pinned_command({cpu}), sys.executable, "-c", child],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == str([cpu])
    assert pinned_command(None) == pinned_command(set()) == []  # no CPUs named: not pinned
