"""Settings come from MBD_ variables and fail fast naming the bad value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import BrokerSettings, KafkaSettings, SparkSettings, WireSettings


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBD_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9093")
    monkeypatch.setenv("MBD_SPARK_MASTER", "spark://master:7077")
    monkeypatch.setenv("MBD_WIRE_CLASSES", "walking, sitting")
    assert KafkaSettings().bootstrap_list == ["kafka-1:9092", "kafka-2:9093"]
    assert SparkSettings().master == "spark://master:7077"
    assert WireSettings().classes == ("walking", "sitting")


@pytest.mark.parametrize(
    ("factory", "bad", "needle"),
    [
        (lambda v: KafkaSettings(bootstrap_servers=v), "kafka-without-port", "kafka-without-port"),
        (lambda v: SparkSettings(master=v), "spark:/oops", "spark:/oops"),
        (lambda v: BrokerSettings(heap=v), "lots", "lots"),
        (lambda v: BrokerSettings(port=v), 70000, "65535"),
        (lambda v: WireSettings(classes=v), "walking,walking", "repeat"),
    ],
)
def test_bad_values_fail_fast_and_name_the_value(factory, bad, needle) -> None:
    with pytest.raises(ValidationError, match=needle):
        factory(bad)


@pytest.mark.parametrize("master", ["local", "local[*]", "local[2]", "spark://h:7077", "yarn"])
def test_known_spark_masters(master: str) -> None:
    assert SparkSettings(master=master).master == master
