"""The services, the core package and the simulated PBX pass the type check configured in setup.cfg ([mypy])."""
from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def test_the_services_and_the_core_package_type_check():
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, "mypy found problems:\n" + result.stdout + result.stderr
