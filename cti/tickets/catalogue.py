"""The ticket catalogue: the categories an agent chooses from (code, Chinese and English names,
default urgency), and the category the caller's path through the IVR implies.

Read from ``catalogue.yaml`` beside this module (or the setting ``tickets_catalogue_file``); a
file with a problem is refused with one line. :meth:`Catalogue.category_for_ivr` is pure.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from hotline.yamlfile import YAMLFileError, read_yaml

from .deadlines import Urgency

__all__ = ["CATALOGUE_FILE", "Catalogue", "CatalogueError", "Category", "load_catalogue", "parse_catalogue"]

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")
CODE = re.compile(r"[a-z][a-z0-9-]{0,39}")
NODE = re.compile(r"[A-Za-z0-9_-]{1,64}(:[0-9*#]{1,20})?")
QUEUE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class CatalogueError(ValueError):
    """The catalogue file is wrong; the message is one line."""


@dataclass(frozen=True)
class Category:
    code: str
    zh: str
    en: str
    urgency: Urgency

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "zh": self.zh, "en": self.en, "urgency": self.urgency.value}


@dataclass(frozen=True)
class Catalogue:
    categories: tuple[Category, ...]
    by_node: Mapping[str, str] = field(default_factory=dict)     # "node" or "node:digits" -> code
    by_queue: Mapping[str, str] = field(default_factory=dict)    # queue name -> code

    def get(self, code: str) -> Optional[Category]:
        return next((c for c in self.categories if c.code == code), None)

    def category_for_ivr(self, ivr_path: Optional[Mapping[str, Any]]) -> Optional[str]:
        """The category the caller's IVR path implies: the last choice the map knows (node and key,
        or node), else the queue the IVR chose; None when nothing matches (or no path)."""
        if not ivr_path:
            return None
        steps = ivr_path.get("steps")
        for step in reversed(steps if isinstance(steps, list) else []):
            if not isinstance(step, Mapping) or not isinstance(step.get("node"), str):
                continue
            node, digits = step["node"], step.get("digits")
            if isinstance(digits, str) and digits and f"{node}:{digits}" in self.by_node:
                return self.by_node[f"{node}:{digits}"]
            if node in self.by_node:
                return self.by_node[node]
        queue = ivr_path.get("queue")
        return self.by_queue.get(queue) if isinstance(queue, str) else None


def parse_catalogue(data: Any, source: str = "ticket catalogue") -> Catalogue:
    if not isinstance(data, dict):
        raise CatalogueError(f"{source}: must be a mapping with categories and ivr")
    unknown = set(data) - {"categories", "ivr"}
    if unknown:
        raise CatalogueError(f"{source}: unknown key {sorted(map(str, unknown))[0]!r} (categories, ivr)")
    entries = data.get("categories")
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"{source}: categories must be a non-empty list")
    categories: list[Category] = []
    for n, entry in enumerate(entries, 1):
        where = f"{source}: category {n}"
        if not isinstance(entry, dict) or set(entry) != {"code", "zh", "en", "urgency"}:
            raise CatalogueError(f"{where}: must have exactly code, zh, en, urgency")
        code = entry["code"]
        if not isinstance(code, str) or not CODE.fullmatch(code):
            raise CatalogueError(f"{where}: code {code!r} must be lower-case letters, digits, '-'")
        if any(c.code == code for c in categories):
            raise CatalogueError(f"{where}: code {code!r} given twice")
        for name in ("zh", "en"):
            if not isinstance(entry[name], str) or not entry[name].strip() or len(entry[name]) > 60:
                raise CatalogueError(f"{where} ({code}): {name} must be a name of 1 to 60 characters")
        try:
            urgency = Urgency(entry["urgency"])
        except ValueError:
            raise CatalogueError(f"{where} ({code}): urgency must be one of "
                                 f"{', '.join(u.value for u in Urgency)}") from None
        categories.append(Category(code, entry["zh"].strip(), entry["en"].strip(), urgency))
    codes = {c.code for c in categories}
    ivr = data.get("ivr") or {}
    if not isinstance(ivr, dict) or set(ivr) - {"nodes", "queues"}:
        raise CatalogueError(f"{source}: ivr must be a mapping with nodes and queues")
    maps: list[dict[str, str]] = []
    for label, pattern in (("nodes", NODE), ("queues", QUEUE)):
        mapping = ivr.get(label) or {}
        if not isinstance(mapping, dict):
            raise CatalogueError(f"{source}: ivr {label} must be a mapping of name: category")
        for key, code in mapping.items():
            if not isinstance(key, str) or not pattern.fullmatch(key):
                raise CatalogueError(f"{source}: ivr {label}: {key!r} is not a "
                                     + ("node id or node:digits" if label == "nodes" else "queue name"))
            if code not in codes:
                raise CatalogueError(f"{source}: ivr {label}: {key}: unknown category {code!r}")
        maps.append({str(k): str(v) for k, v in mapping.items()})
    return Catalogue(tuple(categories), maps[0], maps[1])


def load_catalogue(path: Optional[Path] = None) -> Catalogue:
    path = path or CATALOGUE_FILE
    try:
        data = read_yaml(path)
    except YAMLFileError as exc:
        raise CatalogueError(f"ticket catalogue {path}: {exc}") from None
    return parse_catalogue(data, f"ticket catalogue {path}")
