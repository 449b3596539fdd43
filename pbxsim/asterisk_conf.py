"""Asterisk ``.conf`` files, read the way Asterisk 22 reads them.

Two layers:

* :func:`parse_conf` / :func:`load_conf` follow ``main/config.c``: ``[section]``,
  ``[name](!)`` templates, ``[name](tmpl1,tmpl2)`` inheritance (the templates' entries come
  first), ``[name](+)`` additions, ``key = value`` / ``key => value`` / ``key += value``,
  ``;`` comments (``\\;`` is a literal semicolon), ``;-- block --;`` comments,
  ``#include`` / ``#tryinclude``. Repeated section names (pjsip.conf's endpoint, aor and
  auth of one name) stay separate sections, in file order; repeated keys (``exten =>``,
  ``member =>``) stay separate entries.
* :func:`pbxsim.extensions_conf.parse_dialplan` follows ``pbx/pbx_config.c`` on top of
  that: ``exten``/``same`` lines with numbered, ``n``, ``s`` and ``hint`` priorities,
  labels, ``include``, ``switch`` and ``ignorepat``.

Where Asterisk only logs a warning and drops the line (no ``=``, a duplicate priority, an
unknown dialplan keyword, ...), this module (and :mod:`pbxsim.extensions_conf` for the
dialplan) raises :class:`ConfError`: such a line is a defect in a file we ship even if
Asterisk would start. ``#exec`` is refused: our configuration never runs programs.

Example::

    >>> conf = parse_conf("[t](!)\\nallow = ulaw\\n[1001](t)\\ntype = endpoint\\n")
    >>> [(s.name, s.is_template) for s in conf.sections]
    [('t', True), ('1001', False)]
    >>> [tuple(e) for e in conf.get("1001").entries]
    [('allow', '=', 'ulaw', 2), ('type', '=', 'endpoint', 4)]
"""
from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "AsteriskConf",
    "ConfError",
    "Entry",
    "Section",
    "load_conf",
    "parse_conf",
]

_GLOB_CHARS = re.compile(r"[*?\[{]")
# ast_strip() trims C isspace() only: a full-width space (U+3000) in a value is kept.
_WS = " \t\n\r\v\f"


class ConfError(ValueError):
    """A configuration file Asterisk would reject (or silently misread); one line: ``file:line: why``."""

    def __init__(self, filename: str, line: Optional[int], message: str) -> None:
        self.filename = filename
        self.line = line
        self.reason = message
        where = f"{filename}:{line}" if line is not None else filename
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Entry:
    """One ``key op value`` line. Unpacks as ``(key, op, value, line)``.

    ``op`` is ``"="`` or ``"=>"`` as written (Asterisk treats them alike). ``inherited`` is
    true for entries copied from a template.
    """

    key: str
    op: str
    value: str
    line: int
    filename: str = "<string>"
    inherited: bool = False

    def __iter__(self) -> Iterator[Union[str, int]]:
        return iter((self.key, self.op, self.value, self.line))

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.line}"


@dataclass
class Section:
    """A ``[name]`` section: its entries in order, inherited ones first."""

    name: str
    filename: str = "<string>"
    line: int = 0
    is_template: bool = False
    bases: tuple[str, ...] = ()
    entries: list[Entry] = field(default_factory=list)

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The last value of ``key`` (case-insensitive): later lines override templates."""
        for entry in reversed(self.entries):
            if entry.key.lower() == key.lower():
                return entry.value
        return default

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` in order (``exten``, ``member``, ``permit``...)."""
        return [e.value for e in self.entries if e.key.lower() == key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(e.key.lower() == key.lower() for e in self.entries)

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.line}"


@dataclass
class AsteriskConf:
    """A parsed file: ``sections`` holds every section in order, templates included.

    Iterating, :meth:`get` and :meth:`get_all` skip templates, as Asterisk's modules do.
    Section names are matched case-insensitively, like ``ast_category_get``.
    """

    filename: str
    sections: list[Section] = field(default_factory=list)

    def __iter__(self) -> Iterator[Section]:
        return (s for s in self.sections if not s.is_template)

    def get(self, name: str) -> Optional[Section]:
        """The first non-template section called ``name``."""
        return next((s for s in self if s.name.lower() == name.lower()), None)

    def get_all(self, name: str) -> list[Section]:
        return [s for s in self if s.name.lower() == name.lower()]

    def names(self) -> list[str]:
        """Distinct non-template section names, in order."""
        return list(dict.fromkeys(s.name for s in self))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None


# --------------------------------------------------------------------------------------
# config.c
# --------------------------------------------------------------------------------------


def parse_conf(
    text: str, *, filename: str = "<string>", config_dir: Optional[Union[str, Path]] = None
) -> AsteriskConf:
    """Parse the text of one configuration file.

    ``#include`` resolves a relative name against ``config_dir`` if given (Asterisk uses its
    ``astetcdir``), else against the directory of ``filename``; text without a real filename
    cannot include anything.
    """
    parser = _Parser(Path(config_dir) if config_dir is not None else None)
    parser.parse_text(text, filename, stack=(_identity(filename),))
    return AsteriskConf(filename, parser.sections)


def _identity(filename: str) -> str:
    """What include-cycle detection compares: the resolved path of a real file."""
    return filename if filename.startswith("<") else str(Path(filename).resolve())


def load_conf(path: Union[str, Path], *, config_dir: Optional[Union[str, Path]] = None) -> AsteriskConf:
    """Read and parse ``path`` (UTF-8), following its ``#include`` lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfError(str(path), None, f"cannot read: {exc}") from None
    return parse_conf(text, filename=str(path), config_dir=config_dir)


class _Parser:
    def __init__(self, config_dir: Optional[Path]) -> None:
        self.config_dir = config_dir
        self.sections: list[Section] = []

    # One file; ``current`` is the section an included file starts in (config.c does the same).
    def parse_text(
        self, text: str, filename: str, *, stack: tuple[str, ...], current: Optional[Section] = None
    ) -> None:
        depth = 0  # nesting of ;-- --; block comments
        opened_at = 0
        # Lines end at LF only (fgets); a CR before it is trailing whitespace.
        for lineno, raw in enumerate(text.split("\n"), start=1):
            before = depth
            content, depth = _uncomment(raw, depth, filename, lineno)
            if depth and not before:
                opened_at = lineno
            if content is None:
                continue
            line = content.strip(_WS)
            if not line:
                continue
            if line.startswith("["):
                current = self._section(line, filename, lineno)
            elif line.startswith("#"):
                self._directive(line, filename, lineno, stack, current)
            else:
                if current is None:
                    raise ConfError(filename, lineno, "entry outside any [section]")
                self._entry(current, line, filename, lineno)
        if depth:
            raise ConfError(filename, opened_at, "block comment ';--' is never closed with '--;'")

    def _section(self, line: str, filename: str, lineno: int) -> Section:
        close = line.find("]")
        if close < 0:
            raise ConfError(filename, lineno, "no closing ']' in section header")
        name = line[1:close]
        if not name.strip():
            raise ConfError(filename, lineno, "empty section name")
        section = Section(name, filename, lineno)
        rest = line[close + 1:]
        if not rest.startswith("("):
            # Asterisk ignores anything after ']' unless '(' follows at once.
            if rest.strip():
                raise ConfError(filename, lineno, f"unexpected text after [{name}]: {rest.strip()!r}")
            self.sections.append(section)
            return section
        end = rest.find(")")
        if end < 0:
            raise ConfError(filename, lineno, "no closing ')' in section options")
        if rest[end + 1:].strip():
            raise ConfError(filename, lineno, f"unexpected text after section options: {rest[end + 1:].strip()!r}")
        bases: list[str] = []
        append_to: Optional[Section] = None
        for option in rest[1:end].split(","):
            if option == "!":
                section.is_template = True
            elif option.startswith("+"):
                if option != "+":
                    raise ConfError(filename, lineno, f"category filters are not supported: ({option})")
                append_to = self._find(name, templates=False)
                if append_to is None:
                    raise ConfError(filename, lineno, f"[{name}](+) adds to a section that does not exist")
            else:
                # Exact name, no trimming: Asterisk looks up " tmpl" literally and fails.
                base = self._find(option, templates=True)
                if base is None:
                    raise ConfError(filename, lineno, f"[{name}] inherits from '{option}', which is not defined above")
                bases.append(option)
                section.entries.extend(
                    Entry(e.key, e.op, e.value, e.line, e.filename, inherited=True) for e in base.entries
                )
        section.bases = tuple(bases)
        if append_to is not None:
            append_to.entries.extend(section.entries)
            append_to.is_template |= section.is_template
            return append_to
        self.sections.append(section)
        return section

    def _find(self, name: str, *, templates: bool) -> Optional[Section]:
        # The first match, as category_get_sep() walks the list from its head.
        for section in self.sections:
            if section.name.lower() == name.lower() and (templates or not section.is_template):
                return section
        return None

    def _entry(self, section: Section, line: str, filename: str, lineno: int) -> None:
        if line.startswith("\\"):
            line = line[1:]
            if not line or ord(line[0]) < 33:
                raise ConfError(filename, lineno, "invalid escape at start of line")
            eq = line.find("=", 1)
        else:
            eq = line.find("=")
        if eq < 0:
            raise ConfError(filename, lineno, f"no '=' in line: {line!r}")
        if eq > 0 and line[eq - 1] == "+":
            key, raw_value = line[:eq - 1].strip(_WS), line[eq + 1:]
            if not key:
                raise ConfError(filename, lineno, "no key before '+='")
            for i in range(len(section.entries) - 1, -1, -1):
                old = section.entries[i]
                if old.key == key:
                    section.entries[i] = Entry(
                        old.key, old.op, (old.value + raw_value).strip(_WS), old.line, old.filename, old.inherited
                    )
                    return
            section.entries.append(Entry(key, "=", raw_value.strip(_WS), lineno, filename))
            return
        key, value, op = line[:eq].strip(_WS), line[eq + 1:], "="
        if value.startswith(">"):
            value, op = value[1:], "=>"
        if not key:
            raise ConfError(filename, lineno, "no key before '='")
        section.entries.append(Entry(key, op, value.strip(_WS), lineno, filename))

    def _directive(
        self, line: str, filename: str, lineno: int, stack: tuple[str, ...], current: Optional[Section]
    ) -> None:
        parts = line[1:].split(None, 1)
        word = parts[0].lower() if parts else ""
        argument = parts[1].strip(_WS) if len(parts) > 1 else ""
        if word in ("exec", "tryexec"):
            raise ConfError(filename, lineno, f"#{word} is not allowed: configuration must not run programs")
        if word not in ("include", "tryinclude"):
            raise ConfError(filename, lineno, f"unknown directive '#{parts[0] if parts else ''}'")
        if not argument:
            raise ConfError(filename, lineno, f"#{word} needs a file name")
        if len(argument) >= 2 and (argument[0], argument[-1]) in (('"', '"'), ("<", ">")):
            argument = argument[1:-1]
        base = self.config_dir
        if base is None:
            if filename.startswith("<"):
                raise ConfError(filename, lineno, f"#{word} needs the file's path: use load_conf()")
            base = Path(filename).parent
        pattern = Path(argument) if Path(argument).is_absolute() else base / argument
        if _GLOB_CHARS.search(argument):
            paths = [Path(p) for p in sorted(glob.glob(str(pattern)))]
        else:
            paths = [pattern] if pattern.is_file() else []
        if not paths:
            if word == "tryinclude":
                return
            raise ConfError(filename, lineno, f"#include '{argument}': no such file ({pattern})")
        for path in paths:
            identity = _identity(str(path))
            if identity in stack:
                chain = " -> ".join(Path(p).name for p in stack + (identity,))
                raise ConfError(filename, lineno, f"#include '{argument}' makes a cycle: {chain}")
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfError(filename, lineno, f"#include '{argument}': cannot read {path}: {exc}") from None
            self.parse_text(text, str(path), stack=stack + (identity,), current=current)


def _uncomment(raw: str, depth: int, filename: str, lineno: int) -> tuple[Optional[str], int]:
    """The part of ``raw`` outside comments (None if all of it is inside a block comment).

    Mirrors config.c: a ``;`` preceded by ``\\`` is literal (the backslash is dropped),
    ``;--`` (not ``;---``) opens a nestable block comment, ``--;`` closes one, any other ``;``
    ends the line.
    """
    buf = raw
    kept: Optional[list[str]] = None if depth else []
    seg_start: Optional[int] = None if depth else 0
    i = 0
    while True:
        j = buf.find(";", i)
        if j < 0:
            break
        if j > i and buf[j - 1] == "\\":
            buf = buf[:j - 1] + buf[j:]
            i = j
        elif buf[j + 1:j + 3] == "--" and buf[j + 3:j + 4] != "-":
            if depth == 0 and kept is not None and seg_start is not None:
                kept.append(buf[seg_start:j])
                seg_start = None
            depth += 1
            i = j + 3
        elif j >= i + 2 and buf[j - 2:j] == "--":
            if depth == 0:
                raise ConfError(filename, lineno, "'--;' closes a block comment that was never opened")
            depth -= 1
            i = j + 1
            if depth == 0:
                kept = kept if kept is not None else []
                seg_start = i
        elif depth == 0:
            if kept is not None and seg_start is not None:
                kept.append(buf[seg_start:j])
            seg_start = None
            break
        else:
            i = j + 1
    if depth == 0 and kept is not None and seg_start is not None:
        kept.append(buf[seg_start:])
    return ("".join(kept) if kept is not None else None), depth
