"""``hotline bench acd`` end to end on a small floor: two processes, a checked JSON line."""
from __future__ import annotations

import json

from bench import acd


def test_bench_acd_small(capsys):
    acd.main(["--agents", "60", "--waiting", "300", "--duration", "0.5", "--processes", "2",
              "--pbx-agents", "4", "--pbx-callers", "30", "--transport", "tcp,unix"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("agents", "waiting", "processes", "decisions_per_s", "p50_ms", "p99_ms", "double_assignments",
                "free_to_ring_p50_ms", "free_to_ring_p99_ms"):
        assert key in result
    assert result["processes"] == 2 and result["agents"] == 60 and result["waiting"] == 300
    assert result["decisions"] > 0 and result["assignments"] > 0
    assert result["double_assignments"] == 0
    assert result["pbx_answered"] == 30 and result["free_to_ring_samples"] > 0
    # TCP and the Unix socket side by side; the headline is the TCP run.
    assert [(r["transport"], r["processes"]) for r in result["runs"]] == [("tcp", 2), ("unix", 2)]
    assert result["transport"] == "tcp" and len(result["unix_decisions_per_s_per_process"]) == 2
    assert all(r["double_assignments"] == 0 and r["redis_script_us"] > 0 for r in result["runs"])
    # Each process keeps its copies of the agents in step with the other's published changes (as
    # the ACD does), so READY is hardly ever refused for a stale copy; their CPU is reported.
    assert all(len(r["acd_cpu_us_per_decision"]) == 2 and r["redis_cpu_us_per_decision"] > 0 for r in result["runs"])
    assert all(r["agent_changed_retries"] <= r["decisions"] // 20 for r in result["runs"])
