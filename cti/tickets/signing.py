"""How a hand-off is signed: HMAC-SHA256 over ``<timestamp>.<body>`` with the shared secret,
sent as ``X-Hotline-Signature: sha256=<hex>`` with ``X-Hotline-Timestamp`` (epoch seconds) and
the ``Idempotency-Key``. The receiver refuses a bad signature and a timestamp outside its window
(a replayed request). Pure functions."""
from __future__ import annotations

import hashlib
import hmac
from typing import Optional

__all__ = ["IDEMPOTENCY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WINDOW_S", "sign", "signed_headers",
           "verify"]

SIGNATURE_HEADER = "X-Hotline-Signature"
TIMESTAMP_HEADER = "X-Hotline-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
WINDOW_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, timestamp: int, body: bytes, idempotency_key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", IDEMPOTENCY_HEADER: idempotency_key,
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(secret: str, timestamp: Optional[str], signature: Optional[str], body: bytes, now: float,
           window_s: float = WINDOW_S) -> Optional[str]:
    """None when the request is signed with ``secret`` within the window; else why not."""
    if not timestamp or not signature:
        return f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required"
    if not timestamp.isdigit() or len(timestamp) > 12:
        return f"{TIMESTAMP_HEADER} must be epoch seconds"
    if abs(now - int(timestamp)) > window_s:
        return f"{TIMESTAMP_HEADER} outside the {window_s:g} s window"
    if not hmac.compare_digest(sign(secret, int(timestamp), body), signature):
        return "bad signature"
    return None
