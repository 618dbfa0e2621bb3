"""The supervisor: order and readiness, restarts, a clean stop with nothing left behind."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from infra.supervisor import Service, ServiceFailed, Supervisor
from tests.processes import alive

PY = sys.executable


def sleeper(name: str, seconds: float = 60, **kwargs) -> Service:
    return Service(name=name, command=[PY, "-c", f"import time; time.sleep({seconds})"],
                   settle_s=0.2, **kwargs)  # fmt: skip


def test_services_start_in_order_each_once_the_previous_is_ready(tmp_path: Path) -> None:
    marker = tmp_path / "first-ready"
    first = Service(name="first", settle_s=0.2, ready=marker.exists, command=[
        PY, "-c", f"import time, pathlib; time.sleep(1); pathlib.Path({str(marker)!r}).touch(); "
                  "time.sleep(60)"])  # fmt: skip
    second = sleeper("second")
    order: list[str] = []
    supervisor = Supervisor([first, second], log_dir=tmp_path / "logs",
                            state_file=tmp_path / "state.json")  # fmt: skip
    try:
        supervisor.start_all(on_ready=lambda s: order.append(s.name))
        assert order == ["first", "second"]
        assert second.started_at >= marker.stat().st_mtime - 0.05
        state = json.loads((tmp_path / "state.json").read_text())["services"]
        assert state["first"]["running"] and state["second"]["running"]
    finally:
        supervisor.stop_all()


def test_a_dead_service_is_restarted_and_stop_leaves_no_process(tmp_path: Path) -> None:
    # A service whose own child would outlive it if only the parent were signalled.
    spawner = Service(name="spawner", settle_s=0.2, command=[
        PY, "-c", "import subprocess, sys, time; "
                  "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                  "time.sleep(60)"])  # fmt: skip
    victim = sleeper("victim")
    supervisor = Supervisor([spawner, victim], log_dir=tmp_path / "logs",
                            state_file=tmp_path / "state.json")  # fmt: skip
    supervisor.start_all()
    first_pid = victim.process.pid
    os.kill(first_pid, 9)
    victim.process.wait()
    supervisor.check()
    assert victim.restarts == 1 and victim.process.pid != first_pid

    def group() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and _pgid(int(p.name)) == spawner.process.pid]  # fmt: skip

    deadline = time.monotonic() + 30
    while len(group()) < 2 and time.monotonic() < deadline:  # the spawner and its child
        time.sleep(0.1)
    members = group()
    assert len(members) >= 2, members
    supervisor.stop_all()
    assert not any(alive(pid) for pid in [*members, victim.process.pid])


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_service_that_never_gets_ready_fails_with_its_log(tmp_path: Path) -> None:
    broken = Service(name="broken", settle_s=0.2, command=[
        PY, "-c", "import sys; print('cannot bind port 8000'); sys.exit(3)"])  # fmt: skip
    supervisor = Supervisor([broken], log_dir=tmp_path / "logs", state_file=tmp_path / "s.json")
    with pytest.raises(ServiceFailed, match=r"broken exited with status 3[\s\S]*cannot bind"):
        supervisor.start_all()
    supervisor.stop_all()


def test_a_service_that_keeps_dying_young_is_given_up(tmp_path: Path) -> None:
    flaky = sleeper("flaky", seconds=1.0)
    supervisor = Supervisor([flaky], log_dir=tmp_path / "logs", state_file=tmp_path / "s.json",
                            max_restarts=1)  # fmt: skip
    supervisor.start_all()
    try:
        with pytest.raises(ServiceFailed, match="flaky died 2 times in a row"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                supervisor.check()
                time.sleep(0.1)
    finally:
        supervisor.stop_all()


def test_an_on_failure_service_that_finishes_stays_stopped_but_one_that_fails_restarts(
    tmp_path: Path,
) -> None:
    def one_shot(name: str, status: int) -> Service:
        return Service(name=name, restart="on-failure", settle_s=0.2, command=[
            PY, "-c", f"import sys, time; time.sleep(1); sys.exit({status})"])  # fmt: skip

    done, failed = one_shot("done", 0), one_shot("failed", 4)
    supervisor = Supervisor([done, failed], log_dir=tmp_path / "logs",
                            state_file=tmp_path / "s.json")  # fmt: skip
    supervisor.start_all()
    try:
        done.process.wait()
        failed.process.wait()
        supervisor.check()
        assert done.finished and done.restarts == 0
        assert not failed.finished and failed.restarts == 1
        supervisor.check()  # a finished service is left alone from then on
        assert done.restarts == 0
        state = json.loads((tmp_path / "s.json").read_text())["services"]
        assert state["done"]["finished"] and not state["done"]["running"]
    finally:
        supervisor.stop_all()
