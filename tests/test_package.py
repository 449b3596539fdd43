"""What a non-editable install carries: the Asterisk configuration goes with the wheel
(setup.cfg data_files), so the demo and the simulated PBX run from a server's install."""
from __future__ import annotations

import configparser

from .conftest import REPO


def test_every_asterisk_config_file_is_installed_with_the_package():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    listed = {line.strip() for line in cfg["options.data_files"]["share/hotline/asterisk-config"].splitlines()
              if line.strip()}
    shipped = {f"asterisk-config/{p.name}" for p in (REPO / "asterisk-config").glob("*.conf")}
    assert listed == shipped
