"""Reading an operator's YAML file (settings, queues, scenarios) with one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["YAMLFileError", "read_yaml"]


class YAMLFileError(ValueError):
    """Why the file cannot be used, in a few words (the caller adds which file and what for)."""


def read_yaml(path: Path) -> Any:
    """The file's data, or YAMLFileError: 'cannot read (reason)' / 'line N is not valid YAML'."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise YAMLFileError(f"cannot read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YAMLFileError(f"line {mark.line + 1} is not valid YAML" if mark else "is not valid YAML") from None
