"""``hotline demo`` in miniature: its PostgreSQL summary agrees with the simulator's ground truth."""
from __future__ import annotations

import json

import pytest

from hotline.embedded import free_port
from hotline.settings import Settings
from launcher.demo import DemoOptions, run_demo


async def test_demo_summary_matches_the_simulator_log(pg_url, redis_url, tmp_path):
    settings = Settings(database_url=pg_url, redis_url=redis_url, data_dir=tmp_path, ami_port=free_port(),
                        agi_port=free_port(), cti_port=free_port(), acd_port=free_port())
    log_path, summary_path = tmp_path / "sim.jsonl", tmp_path / "summary.json"
    options = DemoOptions(duration=6, rate=240, agents=4, summary_json=summary_path, sim_log=log_path,
                          talk_mean=0.6, patience_mean=3.0, wrapup=0.1, drain_s=20, speed=8.0, seed=7)
    summary = await run_demo(settings, options)
    truth = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert summary == json.loads(summary_path.read_text())
    assert summary["offered"] == len(truth) > 10
    assert summary["answered"] == sum(r["outcome"] == "answered" for r in truth) > 0
    assert summary["abandoned"] == sum(r["outcome"] == "abandoned" for r in truth)
    waits = [r["wait_s"] for r in truth if r["outcome"] == "answered"]
    assert summary["avg_wait_s"] == pytest.approx(sum(waits) / len(waits), abs=0.5)
    talks = [r["talk_s"] for r in truth if r["outcome"] == "answered"]
    assert summary["avg_talk_s"] == pytest.approx(sum(talks) / len(talks), abs=0.5)
