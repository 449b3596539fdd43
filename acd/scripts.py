"""The ACD's Redis scripts, read from ``acd/lua/*.lua`` when the module is imported (at start).

A script names the shared functions it uses with a line ``--#include <name>`` (from
``acd/lua/lib/<name>.lua``, each included once), and the constants it needs as ``@NAME@``, given
to :func:`load`. A placeholder left unfilled is an error at start, not a Lua error at the first call.
"""
from __future__ import annotations

import re
from importlib.resources import files

__all__ = ["load"]

_DIR = files("acd") / "lua"
_INCLUDE = re.compile(r"^--#include (\w+)[ \t]*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


def load(name: str, **constants: object) -> str:
    """The text of script ``name`` with its includes and constants filled in."""
    included: set[str] = set()

    def expand(text: str) -> str:
        def include(match: re.Match[str]) -> str:
            fragment = match.group(1)
            if fragment in included:
                return ""
            included.add(fragment)
            return expand((_DIR / "lib" / f"{fragment}.lua").read_text(encoding="utf-8"))
        return _INCLUDE.sub(include, text)

    text = expand((_DIR / f"{name}.lua").read_text(encoding="utf-8"))
    for key, value in constants.items():
        text = text.replace(f"@{key}@", str(value))
    left = _PLACEHOLDER.search(text)
    if left:
        raise ValueError(f"script {name}: {left.group()} not given")
    return text
