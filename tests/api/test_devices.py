"""GET /v1/devices and GET /v1/devices/{id}/activity, fed straight into the store."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.deps import get_store
from api.store import LatestPredictions
from tests.api.factories import CLASSES, prediction


def feed(app: FastAPI, *predictions) -> None:
    for item in predictions:
        app.state.store.update(item)


def test_a_phone_shows_its_latest_activity(client: TestClient, app: FastAPI) -> None:
    end_ms = int(time.time() * 1000) - 3000
    feed(app, prediction("phone-1", "jogging", window_end_ms=end_ms, model_version=4))

    response = client.get("/v1/devices/phone-1/activity")

    assert response.status_code == 200
    body = response.json()
    assert body["device_id"] == "phone-1" and body["activity"] == "jogging"
    assert body["model_version"] == 4
    assert set(body["probabilities"]) == set(CLASSES) and body["probabilities"]["jogging"] == 0.75
    assert body["window"]["start_ms"] == end_ms - 10_000 and body["window"]["end_ms"] == end_ms
    assert 2.5 < body["age_s"] < 30
    assert 0 <= body["received_s_ago"] < 30


def test_an_unknown_phone_is_a_404_naming_it(client: TestClient) -> None:
    response = client.get("/v1/devices/phone-404/activity")

    assert response.status_code == 404
    assert response.json()["detail"] == "no prediction for device 'phone-404' in the last 600 s"


def test_the_device_list_is_paginated_by_id_with_the_activity_mix(
    client: TestClient, app: FastAPI
) -> None:
    feed(app, *(prediction(f"phone-{i:02d}", CLASSES[i % 3]) for i in range(25)))

    first = client.get("/v1/devices", params={"limit": 10}).json()
    last = client.get("/v1/devices", params={"limit": 10, "offset": 20}).json()

    assert first["total"] == 25 and first["next_offset"] == 10
    assert [d["device_id"] for d in first["items"]] == [f"phone-{i:02d}" for i in range(10)]
    assert first["activities"] == {"walking": 9, "jogging": 8, "upstairs": 8}
    assert [d["device_id"] for d in last["items"]] == [f"phone-{i:02d}" for i in range(20, 25)]
    assert last["next_offset"] is None


def test_the_list_filters_by_recency(client: TestClient, app: FastAPI) -> None:
    clock = [1_000.0]
    store = LatestPredictions(max_devices=100, ttl_s=600, clock=lambda: clock[0])
    app.dependency_overrides[get_store] = lambda: store
    try:
        store.update(prediction("quiet-phone"))
        clock[0] += 120
        store.update(prediction("busy-phone"))

        recent = client.get("/v1/devices", params={"within_s": 60}).json()
        everyone = client.get("/v1/devices").json()
    finally:
        app.dependency_overrides.clear()

    assert [d["device_id"] for d in recent["items"]] == ["busy-phone"]
    assert recent["within_s"] == 60
    assert everyone["total"] == 2 and everyone["within_s"] == 600


def test_bad_paging_parameters_are_422(client: TestClient) -> None:
    for params in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"within_s": 0}):
        response = client.get("/v1/devices", params=params)
        assert response.status_code == 422, params
        assert response.json()["problems"][0]["field"] == next(iter(params))


def test_no_phones_yet_is_an_empty_page(client: TestClient) -> None:
    body = client.get("/v1/devices").json()
    assert body["items"] == [] and body["total"] == 0 and body["activities"] == {}


def test_the_admin_erases_a_phone_from_the_lake_its_token_and_the_store(
    client: TestClient, app: FastAPI, settings
) -> None:
    from common.erasure import erasure_log
    from ingest.devices import DeviceRegistry
    from simulators.windows import simulate_windows, write_lake
    from tests.api.conftest import admin, reader
    from tests.lake import read_lake

    windows = simulate_windows(devices=2, seconds_per_device=60, device_prefix="phone-")
    write_lake(windows, Path(settings.lake.uri))
    phones = sorted(set(windows["device_id"]))
    DeviceRegistry(settings.devices_file).add(phones)
    feed(app, *(prediction(phone, "walking") for phone in phones))

    assert client.delete(f"/v1/devices/{phones[0]}", headers=reader()).status_code == 403
    anonymous = {"Authorization": ""}
    assert client.delete(f"/v1/devices/{phones[0]}", headers=anonymous).status_code == 401
    response = client.delete(f"/v1/devices/{phones[0]}", headers=admin())

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["device_id"] == phones[0] and body["state"] == "done"
    assert body["windows_deleted"] == int((windows["device_id"] == phones[0]).sum())
    assert body["tokens_revoked"] == 1 and body["requested_by"] == "api:admin"
    assert client.get(f"/v1/devices/{phones[0]}/activity").status_code == 404
    assert client.get(f"/v1/devices/{phones[1]}/activity").status_code == 200
    assert set(read_lake(settings.lake)[0]["device_id"]) == {phones[1]}
    assert [e["state"] for e in erasure_log(settings.lake)] == ["requested", "done"]
    feed(app, prediction(phones[0], "jogging"))  # a late prediction of the erased phone
    assert client.get(f"/v1/devices/{phones[0]}/activity").status_code == 404
    unknown = client.delete("/v1/devices/phone-404", headers=admin())
    assert unknown.status_code == 404 and "phone-404" in unknown.json()["detail"]
