"""One send of one delivery: its channel's message, to a Slack or webhook URL or by email.

**HTTP.** httpcore, a fresh connection pool per send, through `destinations.GuardedBackend`: the
destination policy checked on the very address connected to (no loopback, private, link-local or
metadata address unless NOTIFY_ALLOWED_HOSTS allows it), and every connect, read, write and TLS
handshake bounded by what is left of NOTIFY_TIMEOUT_SECONDS, so the whole send is, drip or not. No
redirect is followed (a 3xx is a failure: the URL is what an operator configured, a redirect is not),
no proxy is used (the policy could not see where it connects). Anything but a 2xx is a failure; of
the answer only its status is kept (`HTTP 500`): its body is never read, so it can never be read
back from `last_error` or the log.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpcore
import httpx
from django.conf import settings
from django.core.mail import send_mail

from ..models import Delivery, NotificationChannel
from .channels import all_secrets, env_value
from .destinations import DestinationRefused, GuardedBackend
from .messages import email_message, slack_body, webhook_body
from .signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    MIN_SIGNING_SECRET_LENGTH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)

Kind = NotificationChannel.Kind

USER_AGENT = "batch-dashboard-notifications/1"


class SendFailed(Exception):
    """Why a send did not succeed, in words that may be stored and logged once redacted."""


def _post(url: str, body: bytes, headers: dict[str, str], seconds: float) -> None:
    """POST `body` to a destination the policy allows: returns on a 2xx, else raises SendFailed.
    Connect to last byte within `seconds`; no redirect followed; the answer's body never read."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    timeouts = dict.fromkeys(("connect", "read", "write", "pool"), seconds)
    try:
        request = httpx.Request("POST", url, content=body, headers=headers)  # the URL parsed, Host set
        target = httpcore.URL(
            scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port, target=request.url.raw_path
        )
        backend = GuardedBackend(deadline=time.monotonic() + seconds)
        with (
            httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=backend) as pool,
            pool.stream(
                "POST", target, headers=request.headers.raw, content=body, extensions={"timeout": timeouts}
            ) as response,
        ):
            status = response.status
    except DestinationRefused as refusal:
        raise SendFailed(f"refused: {refusal}") from None
    except httpcore.TimeoutException:
        raise SendFailed(f"no answer within {seconds:g} s") from None
    except (httpcore.NetworkError, httpcore.UnsupportedProtocol, httpx.InvalidURL) as error:
        raise SendFailed(f"{type(error).__name__}: {error}") from None  # our side's words, no byte of the answer
    except Exception as error:  # a protocol error quotes what the receiver sent: not kept
        raise SendFailed(f"{type(error).__name__}: not an HTTP answer") from None
    if 300 <= status < 400:
        raise SendFailed(f"HTTP {status}: a redirect, not followed (configure the final URL)")
    if not 200 <= status < 300:
        raise SendFailed(f"HTTP {status}")


@dataclass
class Prepared:
    """A delivery ready to go: everything read from the database and the environment beforehand, so
    the send's thread touches neither."""

    delivery: Delivery
    send: Callable[[], None] | None
    secrets: list[str]
    error: str = ""  # why it cannot be sent at all (a variable not set)


def prepare(delivery: Delivery, now: datetime, *, secrets: list[str] | None = None) -> Prepared:
    """The send of one delivery at `now`; `secrets`: what its error is redacted of (all_secrets())."""
    channel = delivery.channel
    seconds = settings.NOTIFY_TIMEOUT_SECONDS
    target = channel.target.strip() or env_value(channel.target_env)
    secrets = all_secrets() if secrets is None else secrets
    if not target:
        return Prepared(delivery, None, secrets, f"{channel.target_env or 'the target'} is not set")
    if channel.kind == Kind.SLACK:
        body = json.dumps(slack_body(delivery.payload), ensure_ascii=False).encode()
        return Prepared(delivery, lambda: _post(target, body, {}, seconds), secrets)
    if channel.kind == Kind.WEBHOOK:
        secret = env_value(channel.secret_env)
        if len(secret) < MIN_SIGNING_SECRET_LENGTH:
            problem = (
                f"{channel.secret_env or 'the signing secret'} is not set or shorter than {MIN_SIGNING_SECRET_LENGTH}"
            )
            return Prepared(delivery, None, secrets, problem)
        body = webhook_body(delivery.payload, now)
        timestamp = str(int(now.timestamp()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(secret, timestamp, str(delivery.key), delivery.event, body),
            DELIVERY_HEADER: str(delivery.key),
            EVENT_HEADER: delivery.event,
        }
        return Prepared(delivery, lambda: _post(target, body, headers, seconds), secrets)
    if channel.kind == Kind.EMAIL:
        subject, text = email_message(delivery.payload)
        addresses = [address.strip() for address in target.split(",") if address.strip()]
        return Prepared(delivery, lambda: _mail(subject, text, addresses), secrets)
    return Prepared(delivery, None, secrets, f"unknown kind of channel {channel.kind!r}")


def _mail(subject: str, text: str, addresses: list[str]) -> None:
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, addresses, fail_silently=False)
    except Exception as error:
        raise SendFailed(f"{type(error).__name__}: {error}") from None


class SendThread(threading.Thread):
    """One send on a thread of its own. An HTTP send ends itself at the deadline; its caller stops
    waiting then anyway (an SMTP conversation, a name resolution, may outlast it a little)."""

    def __init__(self, work: Callable[[], None]):
        super().__init__(name="notify-send", daemon=True)  # never holds the process
        self.work = work
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.work()
        except SendFailed as failure:
            self.error = str(failure)
        except Exception as error:  # a bug, or a backend's surprise: a failure like any other
            self.error = f"{type(error).__name__}: {error}"
