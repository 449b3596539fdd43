"""The project's AMI (Asterisk Manager Interface) client: safe framing, fast events.

``protocol`` frames and parses messages, ``errors`` holds the exceptions, ``client`` the
asyncio client with timeouts, reconnect with backoff and half-open detection.
"""
from .client import AMIClient, ConnectedCallback, EventCallback
from .errors import (
    AMIActionError,
    AMIAuthError,
    AMIConnectionLost,
    AMIError,
    AMIProtocolError,
    AMITimeout,
)
from .protocol import AMIParser, HeadersInput, Message, encode_action, encode_message

__all__ = [
    "AMIClient",
    "ConnectedCallback",
    "EventCallback",
    "AMIError",
    "AMIProtocolError",
    "AMIAuthError",
    "AMITimeout",
    "AMIConnectionLost",
    "AMIActionError",
    "AMIParser",
    "HeadersInput",
    "Message",
    "encode_action",
    "encode_message",
]
