"""A webhook's signature, and the check a receiver makes (documented in the README, with a receiver's
copy of `verify`).

`X-Dashboard-Signature: v2=<hex HMAC-SHA256(secret, "v2:<timestamp>:<delivery id>:<event>:<raw body>")>`,
the three from the X-Dashboard-Timestamp, -Delivery and -Event headers: none of them can be changed
in a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_VERSION = "v2"
TIMESTAMP_HEADER = "X-Dashboard-Timestamp"
SIGNATURE_HEADER = "X-Dashboard-Signature"
DELIVERY_HEADER = "X-Dashboard-Delivery"
EVENT_HEADER = "X-Dashboard-Event"
# A webhook is never sent with a signing secret shorter than this (32+ random characters advised).
MIN_SIGNING_SECRET_LENGTH = 16


def signature(secret: str, timestamp: int | str, delivery: str, event: str, body: bytes) -> str:
    """The X-Dashboard-Signature value: v2=hex(HMAC-SHA256(secret, "v2:<timestamp>:<delivery>:<event>:" +
    body)): the headers a receiver acts on are signed with the body, so a replay cannot change them."""
    signed = f"{SIGNATURE_VERSION}:{timestamp}:{delivery}:{event}:".encode() + body
    return f"{SIGNATURE_VERSION}={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def verify(secret: str, headers, body: bytes, *, now: float | None = None, tolerance: float = 300) -> bool:
    """What a receiver does (the README's snippet): the signature recomputed from the headers and the
    raw body and compared in constant time, and a timestamp no more than `tolerance` seconds from now
    (a replayed request is refused once that has passed; within it, the delivery id tells a repeat)."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    delivery = headers.get(DELIVERY_HEADER, "")
    event = headers.get(EVENT_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    now = time.time() if now is None else now
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    if ":" in delivery + event:  # neither ever holds one: no part of the signed text can be moved into another
        return False
    return hmac.compare_digest(signature(secret, timestamp, delivery, event, body), given)
