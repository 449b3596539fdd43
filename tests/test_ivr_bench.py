"""`hotline bench ivr` on a tiny load: both servers serve every session and the JSON has its figures."""
from __future__ import annotations

import json
import subprocess
import sys


def test_bench_ivr_smoke() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.ivr", "--concurrency", "20", "--duration", "1",
         "--wait-min", "0.01", "--wait-max", "0.05"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["sessions"] > 0 and figures["errors"] == 0 and figures["completed"] == figures["sessions"]
    assert figures["panoramisk_sessions"] == figures["sessions"] and figures["panoramisk_errors"] == 0
    # Every session of the main line is 11 commands: 10 turnarounds measured each.
    assert figures["commands"] == 10 * figures["sessions"]
    for key in ("peak_concurrent", "p50_ms", "p99_ms", "panoramisk_p99_ms"):
        assert figures[key] > 0, key
