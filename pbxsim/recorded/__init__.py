"""What a real Asterisk 22.10.1 said on the wire, kept with the simulator that imitates it.

A copy of the recordings made on a real Asterisk (see README.md here): AMI and FastAGI
transcripts, Asterisk's own reference docs, the configuration it ran, and the SIPp scenarios.
Conformance tests replay them against the simulated PBX, and ``hotline bench ami`` replays the
recorded event stream.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["RECORDED", "TRANSCRIPTS", "REFERENCE", "CONFIG_REFERENCE"]

RECORDED = Path(__file__).resolve().parent
TRANSCRIPTS = RECORDED / "transcripts"
REFERENCE = RECORDED / "reference"
CONFIG_REFERENCE = RECORDED / "config-reference"
