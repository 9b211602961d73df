"""AES-256-GCM: the only authenticated-encryption code in agentauth.

Everything that encrypts (secret sealing, DEK wrapping by local KEK providers)
goes through this module, so the parameters are decided once:

* AES-256 only. Shorter keys are refused rather than silently accepted, so a
  truncated key can never downgrade the barrier.
* 96-bit nonces only. NIST SP 800-38D §8.2 recommends 96-bit IVs; other lengths
  are GHASHed into the counter block, which is where implementations go wrong
  (Wycheproof ``LongIv`` / ``CounterWrap``) and what makes 0-length IVs leak the
  authentication key (CVE-2017-7822).
* A fresh random nonce per :func:`seal` call, from ``os.urandom``. With random
  nonces SP 800-38D §8.3 caps one key at 2**32 invocations; the barrier keeps
  per-org keys and supports DEK rotation well before that.
* 128-bit tags (the full tag; truncated tags weaken forgery resistance).

Every failure raises :class:`BarrierError` with a fixed, generic message: no
key, nonce, plaintext or library detail reaches exception text, and the
original exception is suppressed (``from None``) so that it does not surface
in tracebacks either.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control_plane.domain.errors import BarrierError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
#: Bytes a sealed blob adds to its plaintext: nonce + tag.
OVERHEAD = NONCE_SIZE + TAG_SIZE

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "OVERHEAD",
    "TAG_SIZE",
    "decrypt",
    "encrypt",
    "open_",
    "seal",
]


def _cipher(key: bytes) -> AESGCM:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise BarrierError("encryption key is not a 256-bit key")
    return AESGCM(bytes(key))


def _check_nonce(nonce: bytes) -> None:
    if not isinstance(nonce, bytes | bytearray) or len(nonce) != NONCE_SIZE:
        raise BarrierError("nonce is not 96 bits")


def encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt with a caller-chosen nonce; returns ``ciphertext || tag``.

    Low level: it exists for known-answer tests. Production code calls
    :func:`seal`, which never lets a caller pick (and so reuse) a nonce.
    """
    cipher = _cipher(key)
    _check_nonce(nonce)
    try:
        return cipher.encrypt(bytes(nonce), plaintext, aad)
    except (ValueError, TypeError, OverflowError):
        raise BarrierError("encryption failed") from None


def decrypt(key: bytes, nonce: bytes, ciphertext_with_tag: bytes, aad: bytes) -> bytes:
    """Verify the tag and decrypt ``ciphertext || tag``; any mismatch is a BarrierError.

    No plaintext is released unless the whole tag verifies (the library checks
    the tag before returning anything), so there is no partial output to leak.
    """
    cipher = _cipher(key)
    _check_nonce(nonce)
    if len(ciphertext_with_tag) < TAG_SIZE:
        raise BarrierError()
    try:
        return cipher.decrypt(bytes(nonce), ciphertext_with_tag, aad)
    except (InvalidTag, ValueError, TypeError, OverflowError):
        raise BarrierError() from None


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt under a fresh random nonce; returns ``nonce || ciphertext || tag``."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + encrypt(key, nonce, plaintext, aad)


def open_(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`seal`. Short, truncated or tampered blobs raise BarrierError."""
    if not isinstance(blob, bytes | bytearray) or len(blob) < OVERHEAD:
        raise BarrierError()
    blob = bytes(blob)
    return decrypt(key, blob[:NONCE_SIZE], blob[NONCE_SIZE:], aad)
