"""AES-256-GCM wrapper: parameters are fixed, failures are generic (perf_security §B2.5)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.domain.errors import BarrierError
from control_plane.vault import aead

KEY = bytes(range(32))
AAD = b"row-1|field"
CANARY = b"CANARY-aead-3f1c9e"


def test_round_trip_and_layout() -> None:
    blob = aead.seal(KEY, CANARY, AAD)
    assert len(blob) == aead.NONCE_SIZE + len(CANARY) + aead.TAG_SIZE
    assert CANARY not in blob
    assert aead.open_(KEY, blob, AAD) == CANARY
    nonce, rest = blob[: aead.NONCE_SIZE], blob[aead.NONCE_SIZE :]
    assert aead.decrypt(KEY, nonce, rest, AAD) == CANARY
    assert aead.encrypt(KEY, nonce, CANARY, AAD) == rest


def test_empty_plaintext_is_still_authenticated() -> None:
    blob = aead.seal(KEY, b"", AAD)
    assert aead.open_(KEY, blob, AAD) == b""
    with pytest.raises(BarrierError):
        aead.open_(KEY, blob, AAD + b"x")


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33, 64])
def test_only_256_bit_keys(size: int) -> None:
    key = os.urandom(size)
    with pytest.raises(BarrierError):
        aead.seal(key, b"x", AAD)
    with pytest.raises(BarrierError):
        aead.open_(key, aead.seal(KEY, b"x", AAD), AAD)
    with pytest.raises(BarrierError):
        aead.encrypt(key, os.urandom(12), b"x", AAD)


@pytest.mark.parametrize("size", [0, 8, 11, 13, 16, 64])
def test_only_96_bit_nonces(size: int) -> None:
    with pytest.raises(BarrierError):
        aead.encrypt(KEY, os.urandom(size), b"x", AAD)
    with pytest.raises(BarrierError):
        aead.decrypt(KEY, os.urandom(size), os.urandom(32), AAD)


@pytest.mark.parametrize("length", range(aead.OVERHEAD))
def test_short_blobs_refused(length: int) -> None:
    with pytest.raises(BarrierError):
        aead.open_(KEY, os.urandom(length), AAD)


def test_truncated_tag_refused() -> None:
    blob = aead.seal(KEY, CANARY, AAD)
    for cut in (1, 4, 8, aead.TAG_SIZE):
        with pytest.raises(BarrierError):
            aead.open_(KEY, blob[:-cut], AAD)


def test_wrong_key_and_aad_refused() -> None:
    blob = aead.seal(KEY, CANARY, AAD)
    with pytest.raises(BarrierError):
        aead.open_(os.urandom(32), blob, AAD)
    with pytest.raises(BarrierError):
        aead.open_(KEY, blob, b"row-2|field")


def test_errors_carry_no_detail() -> None:
    blob = bytearray(aead.seal(KEY, CANARY, AAD))
    blob[-1] ^= 1
    with pytest.raises(BarrierError) as info:
        aead.open_(KEY, bytes(blob), AAD)
    err = info.value
    text = f"{err} {err!r} {err.debug}"
    assert CANARY.decode() not in text
    assert KEY.hex() not in text
    assert err.__cause__ is None and err.__suppress_context__


def test_fresh_nonce_per_seal() -> None:
    nonces = {aead.seal(KEY, CANARY, AAD)[: aead.NONCE_SIZE] for _ in range(1000)}
    assert len(nonces) == 1000


@given(st.binary(max_size=64), st.binary(max_size=32), st.data())
def test_any_single_bit_flip_fails(plaintext: bytes, aad: bytes, data: st.DataObject) -> None:
    blob = bytearray(aead.seal(KEY, plaintext, aad))
    bit = data.draw(st.integers(min_value=0, max_value=len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BarrierError):
        aead.open_(KEY, bytes(blob), aad)
