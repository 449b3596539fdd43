"""Dialplan variable substitution, ``$[...]`` expressions and argument splitting, as Asterisk does them.

Asterisk substitutes ``${...}`` and ``$[...]`` in an application's data *before* the
application splits it into arguments on commas: a variable holding a comma therefore
becomes two arguments. We keep that behaviour so the shipped dialplan is tested as
Asterisk will run it.
"""
from __future__ import annotations

import re
from typing import Callable

__all__ = ["substitute", "split_args", "evaluate_expression", "ExpressionError"]

Lookup = Callable[[str], str]


class ExpressionError(ValueError):
    pass


def _find_close(text: str, start: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket closing the one opened just before ``start`` (nesting aware)."""
    depth = 1
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _apply_offset(value: str, spec: str) -> str:
    # ${VAR:offset:length}, offsets may be negative, as in Asterisk.
    parts = spec.split(":")
    try:
        offset = int(parts[0] or 0)
        length = int(parts[1]) if len(parts) > 1 and parts[1] != "" else None
    except ValueError:
        return value
    if offset < 0:
        offset = max(0, len(value) + offset)
    piece = value[offset:]
    if length is not None:
        piece = piece[:length] if length >= 0 else piece[:length]
    return piece


def substitute(text: str, lookup: Lookup) -> str:
    """Replace ``${...}`` and ``$[...]`` in ``text``; ``lookup`` resolves a name or FUNC(args)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "$\\":
            out.append(text[i + 1])
            i += 2
            continue
        if ch == "$" and i + 1 < len(text) and text[i + 1] in "{[":
            open_ch = text[i + 1]
            close_ch = "}" if open_ch == "{" else "]"
            end = _find_close(text, i + 2, open_ch, close_ch)
            if end < 0:
                out.append(text[i:])
                break
            inner = substitute(text[i + 2:end], lookup)
            if open_ch == "{":
                name, spec = inner, None
                # ${VAR:1:2} but not ${FUNC(a:b)}
                paren = inner.find("(")
                colon = inner.find(":", inner.rfind(")") + 1 if paren >= 0 else 0)
                if colon > 0:
                    name, spec = inner[:colon], inner[colon + 1:]
                value = lookup(name)
                out.append(_apply_offset(value, spec) if spec is not None else value)
            else:
                out.append(evaluate_expression(inner))
            i = end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def split_args(data: str) -> list[str]:
    """Split application data on commas, respecting quotes, brackets and backslashes.

    Quotes are removed and backslash escapes resolved, like ``ast_app_separate_args``.
    """
    args: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "\\" and i + 1 < len(data):
            current.append(data[i + 1])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([{":
            depth += 1
            current.append(ch)
        elif not quoted and ch in ")]}":
            depth = max(0, depth - 1)
            current.append(ch)
        elif ch == "," and not quoted and depth == 0:
            args.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    args.append("".join(current))
    return args


_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|!=|<=|>=|=~|[()=<>&|!+\-*/%?:]|[^\s()=<>&|!+\-*/%?:"]+)')


def _tokens(text: str) -> list[str]:
    pos, tokens = 0, []
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ExpressionError(f"cannot parse expression near {text[pos:]!r}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def _as_number(value: str):
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return None


def _compare(left: str, op: str, right: str) -> str:
    a, b = _as_number(left), _as_number(right)
    if a is None or b is None:
        a, b = left, right
    result = {
        "=": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b,
    }[op]
    return "1" if result else "0"


def _truthy(value: str) -> bool:
    return value not in ("", "0")


def evaluate_expression(text: str) -> str:
    """Evaluate Asterisk's ``$[...]`` subset: | & comparisons + - * / % ! and parentheses."""
    if not text.strip():
        return ""
    tokens = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary() -> str:
        token = peek()
        if token is None:
            return ""
        if token == "(":
            take()
            value = or_expr()
            if peek() == ")":
                take()
            return value
        if token == "!":
            take()
            return "0" if _truthy(primary()) else "1"
        if token == "-" and pos + 1 < len(tokens):
            take()
            number = _as_number(primary())
            return str(-number) if number is not None else "0"
        take()
        if token.startswith('"') and token.endswith('"') and len(token) >= 2:
            return token[1:-1]
        # Adjacent bare words join with spaces, as Asterisk's lexer does for unquoted text.
        words = [token]
        while (following := peek()) is not None \
                and following not in {"(", ")", "=", "!=", "<", ">", "<=", ">=", "&", "|",
                                      "+", "-", "*", "/", "%", "?", ":", "=~", "!"} \
                and not following.startswith('"'):
            words.append(take())
        return " ".join(words)

    def arith() -> str:
        value = primary()
        while peek() in {"+", "-", "*", "/", "%"}:
            op = take()
            right = primary()
            a, b = _as_number(value), _as_number(right)
            if a is None or b is None:
                value = "0"
                continue
            if op in "/%" and b == 0:
                value = "0"
            elif op == "+":
                value = str(a + b)
            elif op == "-":
                value = str(a - b)
            elif op == "*":
                value = str(a * b)
            elif op == "/":
                value = str(int(a / b) if isinstance(a, int) and isinstance(b, int) else a / b)
            else:
                value = str(a % b)
        return value

    def comparison() -> str:
        value = arith()
        while peek() in {"=", "!=", "<", ">", "<=", ">="}:
            op = take()
            value = _compare(value, op, arith())
        return value

    def and_expr() -> str:
        value = comparison()
        while peek() == "&":
            take()
            right = comparison()
            value = value if _truthy(value) and _truthy(right) else "0"
        return value

    def or_expr() -> str:
        value = and_expr()
        while peek() == "|":
            take()
            right = and_expr()
            value = value if _truthy(value) else (right if _truthy(right) else "0")
        return value

    result = or_expr()
    if pos != len(tokens):
        raise ExpressionError(f"unexpected {tokens[pos]!r} in expression {text!r}")
    return result
