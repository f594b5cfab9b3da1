"""Standard Webhooks verification, as OpenAI signs: HMAC-SHA256 over `{id}.{timestamp}.{body}`.

Written here rather than taken from the `standardwebhooks` package (1.1.0), which the tests
use as a reference: on the inputs a receiver on the internet gets, that package
- signs the timestamp it re-formats (`floor(float(header))`), not the header's text, so
  `1700000000.0` or `1.7e9` verify against a signature made over `1700000000`;
- raises ValueError or binascii.Error (not its verification error) for a signature value
  without exactly one comma or with bad base64, and stops there: `garbage v1,<valid>` fails
  although a later value matches;
- decodes the body as UTF-8 before signing it, so a non-UTF-8 body raises UnicodeDecodeError;
- decodes the secret leniently (characters outside base64 are dropped).
Here every header is checked first, the body is signed as the bytes received, and every
`v1,` value is tried.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# Bounds on what is read before any HMAC work: OpenAI sends one or two signatures.
MAX_ID_CHARS = 256
MAX_SIGNATURE_CHARS = 4096
MAX_SIGNATURES = 16
_ID = re.compile(rf"[!-~]{{1,{MAX_ID_CHARS}}}")  # printable ASCII, no spaces
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class Verdict(Enum):
    VALID = "valid"
    MISSING = "missing_headers"
    MALFORMED = "malformed_headers"
    STALE = "stale_timestamp"
    MISMATCH = "bad_signature"


class WebhookKey:
    """The HMAC key: the base64 decoding of the secret after `whsec_`. Its repr shows nothing."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_secret(cls, secret: str) -> WebhookKey:
        """ValueError (naming no part of the secret) unless `secret` is `whsec_<base64>`."""
        if not secret.startswith(SECRET_PREFIX):
            raise ValueError("a webhook secret starts with 'whsec_'")
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            raise ValueError("a webhook secret is 'whsec_' and base64") from None
        if not key:
            raise ValueError("the webhook secret is empty")
        return cls(key)

    def sign(self, content: bytes) -> bytes:
        return hmac.new(self._key, content, hashlib.sha256).digest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebhookKey) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._key).digest())

    def __repr__(self) -> str:
        return "WebhookKey(<hidden>)"


@dataclass(frozen=True)
class SignatureHeaders:
    webhook_id: str
    timestamp: str
    signatures: tuple[bytes, ...]  # the decoded `v1,` values; others are no match

    def signed_content(self, body: bytes) -> bytes:
        return f"{self.webhook_id}.{self.timestamp}.".encode("ascii") + body


def read_headers(headers: Mapping[str, str]) -> SignatureHeaders | Verdict:
    """The three headers (lower-case names) checked for shape, or MISSING / MALFORMED."""
    webhook_id, timestamp, signature = (headers.get(name, "") for name in HEADERS)
    if not (webhook_id and timestamp and signature):
        return Verdict.MISSING
    if not _ID.fullmatch(webhook_id) or not _TIMESTAMP.fullmatch(timestamp):
        return Verdict.MALFORMED
    values = signature.split(" ")
    if len(signature) > MAX_SIGNATURE_CHARS or len(values) > MAX_SIGNATURES:
        return Verdict.MALFORMED
    return SignatureHeaders(webhook_id, timestamp, tuple(_v1_signatures(values)))


def _v1_signatures(values: Iterable[str]) -> Iterable[bytes]:
    for value in values:
        version, comma, encoded = value.partition(",")
        if version != "v1" or not comma:
            continue  # another scheme's signature, or not one: it matches nothing
        try:
            yield base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error, and the ValueError non-ASCII text raises
            continue


def timely(headers: SignatureHeaders, now: float) -> bool:
    """Within TOLERANCE_SECONDS of now, either way (checked before any HMAC work)."""
    return abs(now - int(headers.timestamp)) <= TOLERANCE_SECONDS


def matches(headers: SignatureHeaders, body: bytes, keys: Iterable[WebhookKey]) -> bool:
    """True if any `v1` signature is the HMAC of the content under any key (constant time)."""
    content = headers.signed_content(body)
    found = False
    for key in keys:
        expected = key.sign(content)
        for candidate in headers.signatures:
            # No early exit: the time taken does not say which value or key matched.
            found |= hmac.compare_digest(expected, candidate)
    return found


def verify(
    headers: Mapping[str, str], body: bytes, keys: Iterable[WebhookKey], now: float
) -> Verdict:
    """The whole check in one call (tests and scripts; the receiver runs its steps itself)."""
    read = read_headers(headers)
    if isinstance(read, Verdict):
        return read
    if not timely(read, now):
        return Verdict.STALE
    return Verdict.VALID if matches(read, body, keys) else Verdict.MISMATCH


def sign(key: WebhookKey, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value OpenAI would send (the emulator and tests sign with it)."""
    content = f"{webhook_id}.{timestamp}.".encode("ascii") + body
    return "v1," + base64.b64encode(key.sign(content)).decode("ascii")
