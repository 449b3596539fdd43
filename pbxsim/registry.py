"""The registries the simulated PBX's modules fill when they are imported, as Asterisk's do.

Asterisk's ``func_*.c`` register dialplan functions (``ast_custom_function_register``).
Here each handler module decorates its functions::

    @dialplan_function("CALLERID")                pbxsim/functions.py

Every handler gets the PBX as its first argument. This module imports none of the
handler modules and nothing of the PBX at run time: the core (``pbxsim/pbx.py``) loads
the handler modules and looks their handlers up here, so imports point one way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

__all__ = ["FUNCTIONS", "DialplanFunction", "dialplan_function"]


# ---- dialplan functions (${NAME(arg)}) ---------------------------------------------------
FunctionHandler = Callable[["PBX", Optional["Channel"], str], str]


@dataclass(frozen=True)
class DialplanFunction:
    name: str
    read: FunctionHandler


# By upper-case name, as the dialplan spells them.
FUNCTIONS: dict[str, DialplanFunction] = {}


def dialplan_function(name: str) -> Callable[[FunctionHandler], FunctionHandler]:
    """Register the reading of ``${NAME(arg)}``; the handler gets (pbx, channel or None, arg)."""
    def register(read: FunctionHandler) -> FunctionHandler:
        FUNCTIONS[name.upper()] = DialplanFunction(name.upper(), read)
        return read
    return register
