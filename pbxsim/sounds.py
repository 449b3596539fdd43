"""Sound files the simulated PBX can "play": it needs only their length, and whether they exist."""
from __future__ import annotations

import wave
from pathlib import Path
from typing import Optional

__all__ = ["SoundLibrary"]

# Bytes per second of Asterisk's raw formats.
_RAW_RATES = {"ulaw": 8000, "alaw": 8000, "sln": 16000, "gsm": 1650, "g722": 8000}

# Core sounds that a stock Asterisk has, with their lengths (seconds).
BUILTIN_SOUNDS = {"beep": 0.425, "demo-congrats": 30.28}


class SoundLibrary:
    """Finds ``name`` as Asterisk would under ``<dir>/<language>/`` then ``<dir>/``."""

    def __init__(self, directories: list[Path], *, speed: float = 1.0,
                 extra: Optional[dict[str, float]] = None) -> None:
        self.directories = [Path(d) for d in directories]
        self.speed = speed
        self.extra = dict(BUILTIN_SOUNDS)
        self.extra.update(extra or {})
        self._cache: dict[tuple[str, str], Optional[float]] = {}

    def duration(self, name: str, language: str = "en") -> Optional[float]:
        """Seconds the file plays for at the configured speed, or None if Asterisk would not find it."""
        key = (name, language)
        if key not in self._cache:
            self._cache[key] = self._find(name, language)
        length = self._cache[key]
        return None if length is None else length / self.speed

    def _find(self, name: str, language: str) -> Optional[float]:
        if ".." in name.split("/"):
            return None
        for directory in self.directories:
            for base in (directory / language, directory):
                for path in base.glob(f"{name}.*") if base.is_dir() else ():
                    length = self._length(path)
                    if length is not None:
                        return length
        return self.extra.get(name)

    @staticmethod
    def _length(path: Path) -> Optional[float]:
        ext = path.suffix.lstrip(".").lower()
        try:
            if ext in ("wav", "wav16"):
                with wave.open(str(path), "rb") as audio:
                    return audio.getnframes() / float(audio.getframerate())
            if ext in _RAW_RATES:
                return path.stat().st_size / _RAW_RATES[ext]
        except (OSError, wave.Error, EOFError):
            return None
        return None
