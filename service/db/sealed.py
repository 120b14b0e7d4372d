"""Secrets kept for an Idempotency-Key replay, sealed under a key only the client holds.

A create shows its secret once (an agent or guest token, an API key's secret); the database keeps
only their digests. A retry of that create must get the same response, secret included, or the
client that lost the first response has a host, a domain or a key it cannot use. So the secret is
kept with the idempotency record, but never in clear: it is encrypted with AES-256-GCM under a key
derived (HKDF-SHA256, a random salt per record) from the Idempotency-Key itself, which the record
does not store (only its SHA-256 digest, to find it). Whoever reads the database, a backup or a
replica, learns no secret without the key the client sent; the request's identity (actor, method,
path, body digest) is bound in as associated data, so a sealed value moved to another record does
not open. Records are deleted when their window ends (`purge_expired`).

The protection is as strong as the Idempotency-Key: clients should send random ones (a UUID, as
the IETF draft recommends), not guessable ones, when the response holds a secret.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
_INFO = b"numa-balloon idempotency secrets v1"
_SALT_BYTES = 16
_NONCE_BYTES = 12


class Unsealable(Exception):
    """The sealed value does not open with this key and context (never expected: the record is
    found by the key's digest; it means the stored value was altered)."""


def _cipher(key: str, salt: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO)
    return AESGCM(hkdf.derive(key.encode("utf-8", "surrogatepass")))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")  # standard alphabet: no "_", so no "nbk_"


def seal(key: str, context: str, secrets: dict[str, str]) -> str:
    """`secrets` encrypted under `key` (the Idempotency-Key), bound to `context`."""
    salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
    plain = json.dumps(secrets, separators=(",", ":")).encode()
    sealed = _cipher(key, salt).encrypt(nonce, plain, context.encode())
    return ".".join((VERSION, _b64(salt), _b64(nonce), _b64(sealed)))


def unseal(key: str, context: str, value: str) -> dict[str, str]:
    """The secrets `seal` put in `value`; Unsealable when key, context or value differ."""
    try:
        version, salt, nonce, sealed = value.split(".")
        if version != VERSION:
            raise ValueError(version)
        plain = _cipher(key, base64.b64decode(salt)).decrypt(
            base64.b64decode(nonce), base64.b64decode(sealed), context.encode()
        )
        out = json.loads(plain)
    except (ValueError, InvalidTag) as exc:
        raise Unsealable(str(exc)) from None
    if not isinstance(out, dict) or not all(isinstance(v, str) for v in out.values()):
        raise Unsealable("not a map of secrets")
    return out
