"""The only part of the ACD that sends AMI actions to Asterisk: ring an agent for a caller
(``Redirect``), call a caller back (``Originate``), read a channel variable (``Getvar``) and list
the live channels (``CoreShowChannels``); for the desktop's call control, hang up the agent's leg
(``Hangup``), set the caller's queue variables (``Setvar``) and transfer it (``BlindTransfer``).

Errors come back as :class:`ActionFailed` (the action was refused, or Asterisk is out of reach);
the AMI client never sends an action twice, so a failed Redirect or Originate did not happen twice.
"""
from __future__ import annotations

import asyncio
from typing import Any, Mapping

from hotline.ami import AMIActionError, AMIError

__all__ = ["ActionFailed", "Connector"]

_FAILURES = (AMIActionError, AMIError, OSError, asyncio.TimeoutError)


class ActionFailed(Exception):
    pass


class Connector:
    def __init__(self, ami: Any, *, connect_context: str = "hotline-connect",
                 callback_context: str = "hotline-callback") -> None:
        self.ami = ami
        self.connect_context = connect_context
        self.callback_context = callback_context

    async def ring_agent(self, channel: str, agent_id: str) -> None:
        """Send the caller's channel to the dialplan that rings the agent (``hotline-connect``)."""
        try:
            await self.ami.send_action({"Action": "Redirect", "Channel": channel,
                                        "Context": self.connect_context, "Exten": agent_id, "Priority": "1"})
        except _FAILURES as exc:
            raise ActionFailed(str(exc)) from exc

    async def call_back(self, number: str, *, leg_id: str, agent_id: str, of: str, queue: str, skills: str,
                        priority: int, ring_s: float) -> None:
        """Call a caller on virtual hold back over the trunk; answered, the dialplan
        (``hotline-callback``) rings the reserved agent. The leg's uniqueid is ours (``ChannelId``),
        so that a restarted ACD finds it in Asterisk. It carries the queue variables: if the agent
        does not answer, it waits in ``hotline-wait`` like any caller."""
        try:
            await self.ami.send_action([
                ("Action", "Originate"), ("Channel", f"PJSIP/{number}@trunk"), ("ChannelId", leg_id),
                ("Context", self.callback_context), ("Exten", agent_id), ("Priority", "1"),
                ("Timeout", str(int(ring_s * 1000))), ("CallerID", "12345 <12345>"),
                ("Variable", f"HOTLINE_CALLBACK_OF={of}"), ("Variable", f"HOTLINE_QUEUE={queue}"),
                ("Variable", f"HOTLINE_SKILLS={skills}"), ("Variable", f"HOTLINE_PRIORITY={priority}")],
                timeout=ring_s + 10)
        except _FAILURES as exc:
            raise ActionFailed(str(exc)) from exc

    # ---- call control from the desktop (acd/call_control.py) -----------------------------
    async def hangup(self, channel: str) -> None:
        """Hang up one channel (the agent's leg: the caller goes on to the survey)."""
        await self._act({"Action": "Hangup", "Channel": channel, "Cause": "16"})

    async def setvar(self, channel: str, name: str, value: str) -> None:
        await self._act({"Action": "Setvar", "Channel": channel, "Variable": name, "Value": value})

    async def blind_transfer(self, transferer: str, context: str, exten: str) -> None:
        """Send whoever is bridged with ``transferer`` (the caller) to context/exten; Asterisk hangs
        the transferer's leg up."""
        await self._act({"Action": "BlindTransfer", "Channel": transferer, "Context": context, "Exten": exten})

    async def _act(self, action: dict[str, str]) -> None:
        try:
            await self.ami.send_action(action)
        except _FAILURES as exc:
            raise ActionFailed(str(exc)) from exc

    async def getvar(self, channel: str, name: str) -> str:
        """A channel variable, "" when unset or unreadable (the channel is gone)."""
        try:
            reply = await self.ami.send_action({"Action": "Getvar", "Channel": channel, "Variable": name})
        except _FAILURES:
            return ""
        return reply.get("Value") or ""

    async def channels(self) -> dict[str, Mapping[str, str]]:
        """Asterisk's live channels by uniqueid (``CoreShowChannels``)."""
        try:
            _, events = await self.ami.send_list_action({"Action": "CoreShowChannels"})
        except _FAILURES as exc:
            raise ActionFailed(str(exc)) from exc
        return {e.get("Uniqueid", ""): e for e in events if e.get("Event") == "CoreShowChannel"}
