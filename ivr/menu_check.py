"""Checks of a whole menu plan, once its file is read (``hotline ivr check``, and before the IVR
starts): targets and hours that exist, nodes reachable from the start, no loop without an exit,
audio for every prompt in every language of the line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .menu_model import SOUNDS_DIR, LinePlan, Node

__all__ = ["check_plan"]


def check_plan(plan: LinePlan, sounds_dir: Optional[Path] = SOUNDS_DIR) -> list[str]:
    """Problems of a parsed plan: unknown targets, unreachable nodes, loops without exit, missing audio."""
    problems: list[str] = []
    src = plan.source

    def edges(node: Node) -> list[str]:
        return [t.node for _, t in node.targets() if t.kind == "goto" and t.node is not None and t.node in plan.nodes]

    for node in plan.nodes.values():
        for where, target in node.targets():
            label = f"{src}: node '{node.name}' {where}"
            if target.kind == "goto" and target.node not in plan.nodes:
                problems.append(f"{label}: unknown node '{target.node}'")
            if target.kind == "transfer" and target.transfer not in plan.transfers:
                problems.append(f"{label}: unknown transfer '{target.transfer}'")
        if node.kind == "caller-list" and node.caller_list not in plan.caller_lists:
            problems.append(f"{src}: node '{node.name}': unknown caller list '{node.caller_list}'")
        if node.kind == "hours" and node.hours not in plan.hours:
            problems.append(f"{src}: node '{node.name}': unknown hours '{node.hours}'")
    for transfer in plan.transfers.values():
        if transfer.hours is not None and transfer.hours not in plan.hours:
            problems.append(f"{src}: transfer '{transfer.name}': unknown hours '{transfer.hours}'")

    # Reachable from the start.
    reachable: set[str] = set()
    todo = [plan.start] if plan.start in plan.nodes else []
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        reachable.add(name)
        todo.extend(edges(plan.nodes[name]))
    for name in plan.nodes if reachable else ():  # an unknown start node is reported already
        if name not in reachable:
            problems.append(f"{src}: node '{name}': unreachable from the start node '{plan.start}'")

    # Nodes from which the caller can get out (a queue, transfer, service or hang-up). A menu
    # always has an exit: after its tries it goes to its default, or to the fallback queue.
    exits: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node in plan.nodes.values():
            if node.name in exits:
                continue
            targets = [t for _, t in node.targets()]
            if node.kind == "menu" and node.default is None:
                targets.append(plan.fallback)
            if any(t.kind != "goto" or t.node in exits for t in targets):
                exits.add(node.name)
                changed = True
    for name in sorted(set(plan.nodes) - exits):
        problems.append(f"{src}: node '{name}': a loop with no exit (never reaches a queue, transfer, "
                        f"service or hang-up)")

    if sounds_dir is not None:
        for prompt in sorted(plan.prompts()):
            for lang in plan.languages:
                path = sounds_dir / lang / "hotline" / f"{prompt}.wav"
                if not path.is_file():
                    problems.append(f"{src}: prompt '{prompt}': no audio for {lang} ({path})")
    return problems
