"""Where the shipped Asterisk configuration and prompt sounds are, installed or from a checkout."""
from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["ASTERISK_CONFIG", "SOUNDS"]

_CHECKOUT = Path(__file__).resolve().parents[1]
# Where ``pip install .`` puts it (setup.cfg data_files): <prefix>/share/hotline/asterisk-config.
_INSTALLED = Path(sys.prefix) / "share" / "hotline"


def _asterisk_config() -> Path:
    override = os.environ.get("HOTLINE_ASTERISK_CONFIG_DIR")
    if override:
        return Path(override)
    for base in (_CHECKOUT, Path.cwd(), _INSTALLED):
        if (base / "asterisk-config" / "extensions.conf").is_file():
            return base / "asterisk-config"
    return _CHECKOUT / "asterisk-config"


ASTERISK_CONFIG = _asterisk_config()
# Prompts live with the IVR that plays them, laid out like Asterisk's sounds directory.
SOUNDS = Path(__file__).resolve().parents[1] / "ivr" / "sounds"
