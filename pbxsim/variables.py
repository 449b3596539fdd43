"""Channel and global variables, as Asterisk's pbx_variables.c: reading a name (built-in
variables, dialplan functions, the channel's, the globals), ``${...}`` substitution, and
setting one (VarSet, and the inheritance of ``_NAME`` by the channels Dial creates).

The expression and ``${...}`` syntax itself is ``pbxsim/substitution.py``; the dialplan
functions are ``pbxsim/functions.py``.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Optional

from .registry import FUNCTIONS
from .substitution import ExpressionError
from .substitution import substitute as _substitute

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

__all__ = ["BUILTIN_VARIABLES", "exists", "lookup", "set_variable", "substitute"]

log = logging.getLogger(__name__)

# Variables Asterisk computes from the channel rather than stores.
BUILTIN_VARIABLES = frozenset({"CHANNEL", "UNIQUEID", "EXTEN", "CONTEXT", "PRIORITY", "EPOCH"})


def lookup(pbx: "PBX", channel: Optional["Channel"], name: str) -> str:
    """The value of a variable or ``FUNCTION(arg)``; "" for one that is not set."""
    if "(" in name and name.endswith(")"):
        func, _, arg = name[:-1].partition("(")
        function = FUNCTIONS.get(func.upper())
        return function.read(pbx, channel, arg) if function is not None else ""
    if channel is not None and name in channel.variables:
        return channel.variables[name]
    if name in BUILTIN_VARIABLES:
        if name == "EPOCH":
            return str(int(time.time()))
        if channel is not None:
            return {"CHANNEL": channel.name, "UNIQUEID": channel.uniqueid, "EXTEN": channel.exten,
                    "CONTEXT": channel.context, "PRIORITY": str(channel.priority)}[name]
    return pbx.globals.get(name, "")


def exists(pbx: "PBX", channel: "Channel", name: str) -> bool:
    """Whether AGI GET VARIABLE finds the name (a function always counts)."""
    return name in channel.variables or name in pbx.globals or "(" in name or name in BUILTIN_VARIABLES


def substitute(pbx: "PBX", channel: Optional["Channel"], text: str) -> str:
    try:
        return _substitute(text, lambda name: lookup(pbx, channel, name))
    except ExpressionError as exc:
        log.warning("expression error in %r: %s", text, exc)
        return ""


def set_variable(pbx: "PBX", channel: Optional["Channel"], name: str, value: str) -> None:
    """Set a channel variable (a global one without a channel), with its VarSet event."""
    bare = name.lstrip("_")
    if channel is None:
        pbx.globals[bare] = value
        pbx.emit("VarSet", "dialplan,all",
                 [("Channel", "none"), ("Uniqueid", "none"), ("Variable", name), ("Value", value)])
        return
    channel.variables[bare] = value
    if name.startswith("_"):
        channel.variables.setdefault("__inherit__", "")
        inherited = set(filter(None, channel.variables["__inherit__"].split(",")))
        inherited.add(bare)
        channel.variables["__inherit__"] = ",".join(sorted(inherited))
    pbx.channel_event(channel, "VarSet", "dialplan,all", [("Variable", name), ("Value", value)])
