"""Checking an AWS Signature Version 4 as the service does, with botocore's own signer (no Django here).

The simulator's Bedrock accounts are its IAM: an access key id names an account, whose secret signs.
The canonical request is rebuilt from what arrived: the headers the signature names, the body, the
path, and the query decoded and encoded again as AWS canonicalizes it (RFC 3986), so that a client
that signs one encoding and sends another fails here as it would at AWS.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

# botocore is imported when a signature is checked (see dashboard/providers/bedrock.py).

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]{16,128})/(?P<date>[0-9]{8})/(?P<region>[a-z0-9-]{1,30})/"
    r"(?P<service>[a-z0-9-]{1,30})/aws4_request, ?SignedHeaders=(?P<headers>[a-z0-9-]+(?:;[a-z0-9-]+)*), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
MAX_SKEW = timedelta(minutes=15)  # AWS refuses a signature made more than 15 minutes from its clock


class Refusal(Exception):
    """Why a request's signature is refused: AWS's error code and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def mismatch() -> Refusal:
    return Refusal(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.",
    )


def access_key_id(authorization: str) -> str:
    """The access key id an Authorization header names, or ""."""
    found = AUTHORIZATION.fullmatch(authorization.strip())
    return found.group("key") if found else ""


def verify(
    *,
    method: str,
    scheme: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    secret: str | None,
    service: str,
    region: str | None = None,
    now: datetime,
) -> None:
    """Nothing if `headers`' Authorization is a valid signature by `secret` (None: an unknown key), else Refusal."""
    authorization = headers.get("authorization", "")
    if not authorization:
        raise Refusal("MissingAuthenticationTokenException", "Missing Authentication Token")
    found = AUTHORIZATION.fullmatch(authorization.strip())
    if found is None:
        raise Refusal("IncompleteSignatureException", "The Authorization header is not an AWS4-HMAC-SHA256 signature.")
    if secret is None:
        raise Refusal("UnrecognizedClientException", "The security token included in the request is invalid.")
    from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.utils import percent_encode_sequence

    stamp = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise Refusal("IncompleteSignatureException", "The request has no valid X-Amz-Date header.") from None
    if abs(now - signed_at) > MAX_SKEW:
        raise Refusal("InvalidSignatureException", "Signature expired: the request was signed too long ago.")
    scope = (found.group("service"), found.group("date"), found.group("region"))
    if scope != (service, stamp[:8], region or found.group("region")):
        raise mismatch()
    names = found.group("headers").split(";")
    if "host" not in names or any(name not in headers for name in names):
        raise mismatch()
    canonical_query = percent_encode_sequence(sorted(parse_qsl(query, keep_blank_values=True)))
    request = AWSRequest(
        method=method,
        url=f"{scheme}://{headers['host']}{path}" + (f"?{canonical_query}" if canonical_query else ""),
        data=body,
        headers={name: headers[name] for name in names},
    )
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(found.group("key"), secret), service, found.group("region"))
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, found.group("signature")):
        raise mismatch()
