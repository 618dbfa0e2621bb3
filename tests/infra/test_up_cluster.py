"""What `mbd up` starts for a cluster on this machine: each broker, a Spark master and workers."""

from __future__ import annotations

import json
from pathlib import Path

from infra.up import UpSettings, environment, services


def test_mbd_up_supervises_each_broker_of_a_cluster(tmp_path: Path) -> None:
    settings = UpSettings(data_dir=tmp_path, brokers=3, broker_port=19092, devices=0)
    names = [service.name for service in services(settings)]
    assert names[:3] == ["broker-1", "broker-2", "broker-3"] and "broker" not in names
    assert environment(settings)["MBD_KAFKA_BOOTSTRAP_SERVERS"].count(",") == 2


def test_mbd_up_runs_a_spark_master_and_workers_and_submits_to_it(tmp_path: Path) -> None:
    settings = UpSettings(data_dir=tmp_path, spark_workers=2, spark_port=17077, devices=0)
    started = {service.name: service for service in services(settings)}
    assert {"spark-master", "spark-worker-0", "spark-worker-1"} <= started.keys()
    worker = started["spark-worker-0"].command
    assert worker is not None and worker[-1] == "spark://127.0.0.1:17077"
    assert started["spark-master"].env["SPARK_LOCAL_IP"] == "127.0.0.1"
    env = environment(settings)
    assert env["MBD_SPARK_MASTER"] == "spark://127.0.0.1:17077"
    assert json.loads(env["MBD_SPARK_EXTRA_CONF"])["spark.cores.max"] == "2"
    assert "MBD_SPARK_MASTER" not in environment(UpSettings(data_dir=tmp_path, devices=0))
