"""Voice menus as data: the YAML files of ``ivr/menus/`` loaded into checked, frozen plans.

A menu file describes one hotline number (a *line*): the node the call starts in,
the nodes (``play``, ``menu``, ``broadcast``, ``caller-list``, ``hours``), and
where each choice leads: a *target*, a mapping with exactly one of

* ``goto: <node>``: another node of the file (a submenu);
* ``queue: <name>`` with ``skills: {skill: level}`` and ``priority``: hand the
  caller to the ACD; the language skill of the caller's language is added;
* ``transfer: <name>``: an external number from the file's ``transfers``;
* ``service: <name>``: an IVR service (``progress-query``, ``callback``, ``message``), which
  decides the next target;
* ``hangup: true``: the IVR served the caller and the call ends;

and, optionally, ``language: zh|yue|en`` (the caller's language from now on) and
``prompt: <name>`` (played first). Prompt names are sound files
``hotline/<name>`` that must exist as ``ivr/sounds/<lang>/hotline/<name>.wav``
in every language of the line.

:func:`check_file` lists every problem of a file, one line each (``hotline ivr
check``); :func:`load_line` returns the plan or raises :class:`MenuError` with
all of them, so the IVR refuses to start with a broken menu.

The plan itself is :mod:`ivr.menu_model`, reading a file :mod:`ivr.menu_reader`,
the checks across a plan :mod:`ivr.menu_check`; this module puts them together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from hotline.settings import SettingsError

from .menu_check import check_plan
# The plan's names are re-exported: code that imported them from ivr.menu keeps working.
from .menu_model import (
    LANGUAGE_SKILLS,
    LANGUAGES,
    MENUS_DIR,
    SERVICES,
    SOUNDS_DIR,
    Hours,
    LinePlan,
    Node,
    Target,
    Transfer,
    normalize_number,
    prompt_sound,
)
from .menu_reader import read_menu

__all__ = [
    "MENUS_DIR",
    "SOUNDS_DIR",
    "LANGUAGES",
    "LANGUAGE_SKILLS",
    "SERVICES",
    "MenuError",
    "Target",
    "Node",
    "Transfer",
    "Hours",
    "LinePlan",
    "check_file",
    "check_plan",
    "load_line",
    "load_lines",
    "normalize_number",
    "prompt_sound",
]


class MenuError(SettingsError, ValueError):
    """A menu file is wrong. ``problems`` holds one line per problem.

    A :class:`~hotline.settings.SettingsError`: the menus are configuration, so the
    ``hotline`` command ends with one ``hotline: error: ...`` line when they are wrong.
    """

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more problem(s): see 'hotline ivr check')" if len(problems) > 1 else ""
        super().__init__(f"menu {problems[0]}{more}")
        self.problems = problems


def check_file(path: Path, sounds_dir: Optional[Path] = SOUNDS_DIR) -> list[str]:
    """Every problem of one menu file, one line each; empty when the file is good."""
    plan, problems = read_menu(Path(path))
    if plan is not None:
        problems += check_plan(plan, sounds_dir)
    return problems


def load_line(path: Path, sounds_dir: Optional[Path] = SOUNDS_DIR) -> LinePlan:
    """The plan of one menu file; :class:`MenuError` listing every problem if it has any."""
    plan, problems = read_menu(Path(path))
    if plan is not None:
        problems += check_plan(plan, sounds_dir)
    if problems or plan is None:
        raise MenuError(problems or [f"{path}: no plan"])
    return plan


def load_lines(directory: Path = MENUS_DIR, sounds_dir: Optional[Path] = SOUNDS_DIR) -> dict[str, LinePlan]:
    """Every ``*.yaml`` menu of ``directory``, by line name; all problems of all files at once."""
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise MenuError([f"{directory}: no menu files (*.yaml)"])
    lines: dict[str, LinePlan] = {}
    problems: list[str] = []
    for path in files:
        try:
            plan = load_line(path, sounds_dir)
        except MenuError as exc:
            problems += exc.problems
            continue
        if plan.name in lines:
            problems.append(f"{path}: line '{plan.name}' is also defined in {lines[plan.name].source}")
            continue
        lines[plan.name] = plan
    if problems:
        raise MenuError(problems)
    return lines
