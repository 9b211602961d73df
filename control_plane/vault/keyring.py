"""In-memory versioned AES-256 keys shared by the local KEK providers, and KekError.

Internal to the vault: code outside it talks to a :class:`~.kek.KekProvider`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import NoReturn

from control_plane.domain.errors import BarrierError
from control_plane.vault import aead

__all__ = ["KekError", "Keyring", "decode_key"]


class KekError(BarrierError):
    """The KEK is missing, malformed, stored unsafely, or cannot unwrap a DEK."""

    default_message = "key encryption key unavailable"


class Keyring:
    """Versioned AES-256 keys held in memory; shared by the local providers.

    Slots and the refusal to pickle keep the key bytes from being dumped by
    ``vars()``, ``copy`` or a multiprocessing hand-off by accident.
    """

    __slots__ = ("_active", "_keys")

    def __init__(self, keys: dict[str, bytes], active: str) -> None:
        if active not in keys:
            raise KekError("the active KEK version has no key")
        self._keys = dict(keys)
        self._active = active

    @property
    def active(self) -> str:
        return self._active

    def versions(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __contains__(self, version: object) -> bool:
        return version in self._keys

    def with_new_key(self, version: str) -> Keyring:
        keys = dict(self._keys)
        keys[version] = secrets.token_bytes(aead.KEY_SIZE)
        return Keyring(keys, version)

    def render_file(self, file_format: str) -> bytes:
        """The keyring file's bytes (for :mod:`.kek_file` only: this is key material)."""
        doc = {
            "format": file_format,
            "active": self._active,
            "keys": {v: base64.b64encode(k).decode("ascii") for v, k in self._keys.items()},
        }
        return (json.dumps(doc, indent=2) + "\n").encode("ascii")

    def same_key(self, other: Keyring, version: str) -> bool:
        return secrets.compare_digest(self._keys[version], other._keys[version])

    def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        if not dek:
            raise KekError("nothing to wrap")
        try:
            return self._active, aead.seal(self._keys[self._active], dek, aad)
        except BarrierError:
            raise KekError("data key could not be wrapped") from None

    def unwrap(self, version: str, wrapped: bytes, aad: bytes) -> bytes:
        key = self._keys.get(version)
        if key is None:
            raise KekError("the KEK version of this data key is not configured", debug=version)
        try:
            return aead.open_(key, wrapped, aad)
        except BarrierError:
            raise KekError("data key could not be unwrapped", debug=version) from None

    def __reduce__(self) -> NoReturn:
        raise TypeError("KEK material cannot be pickled or copied")

    def __repr__(self) -> str:
        return f"<keyring active={self._active!r} versions={list(self._keys)!r}>"


def decode_key(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise KekError("KEK entry is not a base64 string", debug=where)
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KekError("KEK entry is not valid base64", debug=where) from None
    if len(key) != aead.KEY_SIZE:
        raise KekError("KEK entry is not a 256-bit key", debug=where)
    return key
