"""Exceptions raised by the AMI client and the AMI framing code.

Every exception derives from :class:`AMIError`, so ``except AMIError`` catches them all.
The timeout and connection errors also derive from the matching built-in exceptions
(``TimeoutError`` and ``ConnectionError``, both ``OSError``), so code that already
handles network errors generically keeps working.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover - import only for type hints
    from .protocol import Message

__all__ = [
    "AMIError",
    "AMIProtocolError",
    "AMIAuthError",
    "AMITimeout",
    "AMIConnectionLost",
    "AMIActionError",
]


class AMIError(Exception):
    """Base class of every AMI error."""


class AMIProtocolError(AMIError, ValueError):
    """Something cannot be put on (or read from) the wire, e.g. a bad header name."""


class AMIActionError(AMIError):
    """Asterisk answered an action with ``Response: Error``.

    ``message`` is Asterisk's ``Message:`` header (empty if absent), ``response`` the
    whole reply.
    """

    def __init__(self, message: str, response: Optional["Message"] = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class AMIAuthError(AMIError):
    """Login was refused (bad username or secret, or not allowed from this address)."""

    def __init__(self, message: str, response: Optional["Message"] = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class AMITimeout(AMIError, TimeoutError):
    """No answer within the allotted time (action, ping or connection set-up)."""


class AMIConnectionLost(AMIError, ConnectionError):
    """The connection closed (or was never open) before the answer arrived.

    An action that fails this way is never re-sent by the client: the caller decides
    whether repeating it is safe (an Originate, for one, is not).
    """
