"""The registries the simulated PBX's modules fill when they are imported, as Asterisk's do.

Asterisk's ``app_*.c`` register dialplan applications (``ast_register_application``) and
``func_*.c`` dialplan functions (``ast_custom_function_register``); res_agi keeps its
commands in one table by their words, and manager.c's actions are registered with
``ast_manager_register_xml``. Here each handler module decorates its functions::

    @application("Answer")                        pbxsim/apps.py, pbxsim/app_dial.py
    @agi_command("GET", "DATA", min_args=1)       pbxsim/agi_commands.py
    @ami_action("Originate")                      pbxsim/ami_actions.py
    @dialplan_function("CALLERID")                pbxsim/functions.py

Every handler gets the PBX as its first argument. This module imports none of the
handler modules and nothing of the PBX at run time: the core (``pbxsim/pbx.py``) loads
the handler modules and looks their handlers up here, so imports point one way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Optional

if TYPE_CHECKING:
    from .ami_server import Message, Reply
    from .channel import Channel
    from .pbx import PBX

__all__ = ["AGI_COMMANDS", "AMI_ACTIONS", "APPLICATIONS", "FUNCTIONS", "JUMPED", "NEXT", "STOP", "AGICommand",
           "AMIAction", "AppResult", "Application", "DialplanFunction", "agi_command", "ami_action",
           "application", "dialplan_function", "find_application"]


# ---- dialplan applications ---------------------------------------------------------------
# What an application returns to the channel loop: go on with the next priority, carry on
# where it jumped to (Goto), or end the channel's dialplan.
AppResult = Optional[str]
NEXT: AppResult = None
JUMPED: AppResult = "jumped"
STOP: AppResult = "stop"

AppHandler = Callable[["PBX", "Channel", str], Awaitable[AppResult]]


@dataclass(frozen=True)
class Application:
    name: str
    execute: AppHandler
    # Also run in the h extension, on the hung-up channel; the simulator only announces the
    # others there (Newexten) without running them.
    after_hangup: bool = False


# By lower-case name: the dialplan may spell an application in any case.
APPLICATIONS: dict[str, Application] = {}


def application(name: str, *, after_hangup: bool = False) -> Callable[[AppHandler], AppHandler]:
    """Register a dialplan application; the handler gets (pbx, channel, substituted data)."""
    def register(execute: AppHandler) -> AppHandler:
        APPLICATIONS[name.lower()] = Application(name, execute, after_hangup)
        return execute
    return register


def find_application(name: str) -> Optional[Application]:
    return APPLICATIONS.get(name.lower())


# ---- AGI commands ------------------------------------------------------------------------
AGIHandler = Callable[["PBX", "Channel", list[str]], Awaitable[str]]


@dataclass(frozen=True)
class AGICommand:
    words: tuple[str, ...]
    handler: AGIHandler             # (pbx, channel, the arguments after the words) -> the reply line
    # Fewer arguments than this after the words: 520 and the usage.
    min_args: int = 0
    # Allowed on a dead channel: the "Dead: Yes" rows of `agi show commands`
    # (shared/asterisk/reference/agi-commands.txt). The others answer 511 there.
    dead: bool = False
    # The handler returns RESULT_FAILURE when its result is -1: AGIExecEnd then says
    # "ResultCode: -1" / "Result: Failure" although the wire says "200 result=-1" (03b).
    fails_on_minus_one: bool = False
    # The lines of the 520 reply; ("Usage: <command>",) when empty.
    usage: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return " ".join(self.words)


# By the command's words, upper case ("GET VARIABLE").
AGI_COMMANDS: dict[str, AGICommand] = {}


def agi_command(*words: str, min_args: int = 0, dead: bool = False, fails_on_minus_one: bool = False,
                usage: tuple[str, ...] = ()) -> Callable[[AGIHandler], AGIHandler]:
    """Register an AGI command by its words: ``@agi_command("GET", "VARIABLE", min_args=1, dead=True)``."""
    def register(handler: AGIHandler) -> AGIHandler:
        command = AGICommand(tuple(w.upper() for w in words), handler, min_args, dead, fails_on_minus_one, usage)
        AGI_COMMANDS[command.name] = command
        return handler
    return register


# ---- AMI actions -------------------------------------------------------------------------
AMIHandler = Callable[["PBX", "Reply", "Message"], Awaitable[None]]


@dataclass(frozen=True)
class AMIAction:
    name: str
    handler: AMIHandler       # (pbx, reply: answers the action and holds its session, message)
    # Allowed before Login: manager.c lets only Login, Challenge and Logoff through
    # ("Permission denied" for the rest, known or not).
    before_login: bool = False


# By lower-case name: "Action: coreshowchannels" is CoreShowChannels.
AMI_ACTIONS: dict[str, AMIAction] = {}


def ami_action(name: str, *, before_login: bool = False) -> Callable[[AMIHandler], AMIHandler]:
    """Register an AMI action; the handler gets (pbx, reply, message)."""
    def register(handler: AMIHandler) -> AMIHandler:
        AMI_ACTIONS[name.lower()] = AMIAction(name, handler, before_login)
        return handler
    return register


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
