"""The Grafana dashboard and Prometheus config point at metrics the CTI service really exports."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from aiohttp.test_utils import TestClient, TestServer

from cti.app import make_app

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((DASHBOARDS / "grafana" / "hotline.json").read_text(encoding="utf-8"))
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\bhotline_[a-z_]+", target["expr"]))
    return names


def test_prometheus_scrapes_the_cti_metrics_path():
    config = yaml.safe_load((DASHBOARDS / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8080"]


async def test_every_dashboard_metric_is_exported(redis, pool):
    # A day with calls, so the "today" gauges are present too.
    await pool.execute(
        "INSERT INTO calls (uniqueid, arrived_at, queued_at, answered_at, ended_at, wait_s, talk_s, outcome) "
        "VALUES ('1.1', now(), now(), now(), now(), 1, 2, 'answered')")
    client = TestClient(TestServer(make_app(redis, pool)))
    await client.start_server()
    try:
        response = await client.get("/metrics")
        text = await response.text()
    finally:
        await client.close()
    exported = set(re.findall(r"^# TYPE (hotline_[a-z_]+)", text, re.M))
    missing = dashboard_metrics() - exported
    assert not missing, f"dashboard uses metrics the service does not export: {sorted(missing)}"
