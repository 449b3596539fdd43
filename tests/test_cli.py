"""The ``hotline`` command: help, one-line errors and exit codes, embedded stores start and stop."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from hotline.embedded import free_port


def hotline(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def test_help_lists_the_commands():
    result = hotline("--help")
    assert result.returncode == 0
    for command in ("demo", "db", "services", "bench"):
        assert command in result.stdout


def test_bad_setting_is_one_line_and_exit_2(tmp_path):
    result = hotline("demo", "--duration", "1", env={"HOTLINE_AMI_PORT": "abc", "HOTLINE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["hotline: error: setting HOTLINE_AMI_PORT: Input should be a valid integer, "
                     "unable to parse string as an integer (got 'abc')"]


def test_bad_option_is_refused():
    result = hotline("demo", "--rate", "-5")
    assert result.returncode == 2 and "--rate must be greater than 0" in result.stderr


def test_unreachable_postgres_is_one_line_and_nonzero(tmp_path):
    port = free_port()   # nothing listens there
    result = hotline("db", "upgrade", env={
        "HOTLINE_DATABASE_URL": f"postgresql://hotline@127.0.0.1:{port}/hotline",
        "HOTLINE_REDIS_URL": "redis://127.0.0.1:1/0", "HOTLINE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"hotline: error: database 127.0.0.1:{port}/hotline: cannot connect")


def test_db_upgrade_on_embedded_postgres_then_nothing_left_running(tmp_path):
    result = hotline("db", "upgrade", env={"HOTLINE_DATA_DIR": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stderr
    from hotline.db import MIGRATIONS_DIR

    assert f"applied {len(list(MIGRATIONS_DIR.glob('*.sql')))} migration(s)" in result.stdout
    again = hotline("db", "upgrade", env={"HOTLINE_DATA_DIR": str(tmp_path)}, timeout=120)
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout
    # The embedded servers were stopped on exit: no process keeps the data directory.
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_demo_stops_cleanly_on_ctrl_c():
    import select
    import shutil
    import signal
    import tempfile
    import time

    data = tempfile.mkdtemp(prefix="hotline-test-demo-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update({"HOTLINE_DATA_DIR": data, "HOTLINE_AMI_PORT": str(free_port()),
                "HOTLINE_AGI_PORT": str(free_port()), "HOTLINE_CTI_PORT": str(free_port()),
                "HOTLINE_ACD_PORT": str(free_port())})
    proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", "demo", "--rate", "60", "--agents", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        output, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                line = proc.stdout.readline()
                output.append(line)
                if line.startswith("traffic:"):
                    break
        assert any(line.startswith("traffic:") for line in output), "".join(output) + proc.stderr.read()
        assert any("wallboard" in line for line in output) and any("metrics" in line for line in output)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert "summary (from PostgreSQL)" in stdout
        leftover = subprocess.run(["pgrep", "-f", data], capture_output=True, text=True)
        assert leftover.stdout.strip() == "", "embedded servers still running after Ctrl-C"
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)
