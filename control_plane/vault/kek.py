"""Key-encryption-key (KEK) providers: the root of the envelope.

The barrier keeps one random data key (DEK) per organization, plus the
platform's own, in the database, each *wrapped* by a KEK that never enters the
database. Whoever holds the database but not the KEK holds only ciphertext.

Two local providers: a keyring file for development and single-host installs
(:mod:`.kek_file`, re-exported here) and an environment variable for
containers; a cloud KMS fits the same :class:`KekProvider` protocol. Raw KEK
bytes never leave a provider object: there is no accessor for them, ``repr``
shows version labels only, the objects refuse to be pickled or copied, and
nothing here logs.

Errors: every failure raises :class:`KekError`. It subclasses
:class:`~control_plane.domain.errors.BarrierError` on purpose: a missing or
wrong KEK must fail closed exactly like a tampered ciphertext, every caller that
handles barrier failures already handles it, and it goes on the wire with the
same generic ``BARRIER_FAILURE`` reason. Messages name the problem for the
operator (file mode, malformed entry) and never contain key material; paths and
version labels go into ``debug`` only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from control_plane.vault.kek_file import FileKekProvider
from control_plane.vault.keyring import KekError, Keyring, decode_key

__all__ = [
    "ENV_VAR",
    "EnvKekProvider",
    "FileKekProvider",
    "KekError",
    "KekProvider",
]

ENV_VAR = "AGENTAUTH_KEK"
_ENV_LABEL_RE = re.compile(r"^v([1-9][0-9]{0,8})$")


@runtime_checkable
class KekProvider(Protocol):
    """Wraps and unwraps data keys; the only holder of key-encryption keys.

    Contract:

    * ``wrap(dek, aad)`` encrypts with the *active* version and returns
      ``(kek_version, wrapped)``. The barrier stores both next to the DEK and
      hands ``kek_version`` back to ``unwrap``. ``aad`` names what the DEK
      belongs to (scope and DEK version) and must be authenticated: unwrapping
      with different ``aad`` fails, so a wrapped DEK copied to another org's
      row is useless.
    * ``unwrap`` raises :class:`KekError` on any failure (unknown version, bad
      tag, KMS unreachable); it never returns unauthenticated bytes.
    * Old versions keep unwrapping until an operator retires them, which is
      safe once ``Barrier.kek_versions_in_use()`` shows no DEK on them.
    * ``create_version`` adds a version and makes it active (only when
      ``can_create_version()``; otherwise the operator adds it out of band and
      runs ``rotate-kek``, which re-wraps every DEK to the active version).
    * Providers do not cache unwrapped DEKs; the barrier owns that (bounded).

    How a cloud KMS fits (the KEK never leaves the KMS; ``wrap``/``unwrap``
    become network calls, so the barrier's DEK cache keeps them off the hot
    path):

    * **AWS KMS**: ``wrap`` = ``Encrypt(KeyId=<key ARN>, Plaintext=dek,
      EncryptionContext={"agentauth": base64(aad)})``; ``unwrap`` =
      ``Decrypt(CiphertextBlob=wrapped, KeyId=<ARN>, EncryptionContext=<same>)``.
      The encryption context is KMS's AAD: Decrypt fails unless it matches,
      and CloudTrail records it. ``kek_version`` = ``"awskms:<key ARN>"``.
      KMS automatic rotation of the backing material is invisible (the
      ciphertext names it), so ``can_create_version()`` is False; moving to a
      new key is "point the provider at the new ARN, then rotate-kek".
    * **GCP Cloud KMS**: ``wrap`` = ``Encrypt(name=<cryptoKey>, plaintext=dek,
      additional_authenticated_data=aad)``; the response names the
      CryptoKeyVersion used, which becomes ``"gcpkms:<cryptoKeyVersion>"``.
      ``unwrap`` = ``Decrypt(name=<cryptoKey>, ciphertext=wrapped,
      additional_authenticated_data=aad)``. ``create_version`` =
      ``CreateCryptoKeyVersion`` + ``UpdateCryptoKeyPrimaryVersion``.
    * **Azure Key Vault**: ``wrapKey``/``unwrapKey`` with RSA-OAEP-256 take no
      AAD, so the provider binds it itself: generate a one-time 256-bit key
      ``k``, return ``wrapKey(k) || aead.seal(k, dek, aad)`` and reverse that in
      ``unwrap``. (Managed HSM's A256GCM ``encrypt`` accepts ``aad`` directly.)
      ``kek_version`` = ``"azurekv:<key id including its version>"``;
      ``create_version`` = create a new version of the key.
    """

    name: str

    def active_version(self) -> str:
        """The version label new wraps use, e.g. ``"file:2"``."""
        ...

    async def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        """Encrypt ``dek`` under the active version, authenticating ``aad``."""
        ...

    async def unwrap(self, kek_version: str, wrapped: bytes, aad: bytes) -> bytes:
        """Decrypt a DEK wrapped under ``kek_version`` with the same ``aad``."""
        ...

    def can_create_version(self) -> bool:
        """Whether :meth:`create_version` works (False when keys are managed outside)."""
        ...

    async def create_version(self) -> str:
        """Add a new version, make it active, return its label."""
        ...


def _parse_env(value: str) -> Keyring:
    if not isinstance(value, str) or not value.strip():
        raise KekError(f"{ENV_VAR} is empty")
    keys: dict[str, bytes] = {}
    active: str | None = None
    for position, entry in enumerate(value.split(","), start=1):
        label, sep, encoded = entry.strip().partition(":")
        where = f"{ENV_VAR} entry {position}"
        match = _ENV_LABEL_RE.fullmatch(label)
        if not sep or match is None:
            raise KekError(f"{ENV_VAR} entries must look like v2:<base64>", debug=where)
        version = f"env:{match.group(1)}"
        if version in keys:
            raise KekError(f"{ENV_VAR} lists a version twice", debug=where)
        keys[version] = decode_key(encoded, where)
        active = active or version
    assert active is not None
    return Keyring(keys, active)


class EnvKekProvider:
    """Keys from ``AGENTAUTH_KEK=v2:<base64>,v1:<base64>``; the first entry is active.

    Versions are named ``env:<n>``. The process cannot add a version to its own
    environment, so rotation is: the operator prepends ``vN+1:<new key>``,
    restarts, runs ``rotate-kek`` (re-wraps every DEK), and drops the old entry
    once ``kek_versions_in_use()`` shows no DEK on it.
    """

    name = "env"

    def __init__(self, value: str) -> None:
        self._ring = _parse_env(value)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> EnvKekProvider:
        env = os.environ if environ is None else environ
        value = env.get(ENV_VAR)
        if value is None:
            raise KekError(f"{ENV_VAR} is not set")
        return cls(value)

    def active_version(self) -> str:
        return self._ring.active

    def versions(self) -> tuple[str, ...]:
        return self._ring.versions()

    async def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        return self._ring.wrap(dek, aad)

    async def unwrap(self, kek_version: str, wrapped: bytes, aad: bytes) -> bytes:
        return self._ring.unwrap(kek_version, wrapped, aad)

    def can_create_version(self) -> bool:
        return False

    async def create_version(self) -> str:
        raise KekError(f"add a version to {ENV_VAR} and restart, then run rotate-kek")

    def __repr__(self) -> str:
        return (
            f"EnvKekProvider(active={self._ring.active!r}, "
            f"versions={list(self._ring.versions())!r})"
        )
