"""Wycheproof AES-GCM vectors run through our wrapper, one test per vector.

Source: C2SP/wycheproof ``testvectors_v1/aes_gcm_test.json`` (kept byte for
byte under ``tests/vectors/wycheproof/``, see its README). This is perf_security.md
§B2.5 E3: our wrapper, not just the library, must accept every valid vector
and reject every invalid one (modified tags and friends) with BarrierError.

Applicable vectors are those matching the only parameters we use: 256-bit
keys, 96-bit nonces, 128-bit tags. The other groups exercise AES-128/192 and
non-96-bit IVs, which :mod:`control_plane.vault.aead` refuses outright
(tested below), so they cannot apply.

Wycheproof's ``aes_wrap_test.json`` (RFC 3394) and ``aes_kwp_test.json``
(RFC 5649) do not apply either, so they are not vendored: we wrap DEKs with AES-256-GCM
under an AAD that binds each DEK to its scope and version, not with AES key
wrap, which has no associated data.
"""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.domain.errors import BarrierError
from control_plane.vault import aead
from tests.wycheproof import load_vectors

VECTORS_FILE = "aes_gcm_test.json"


DOC: dict[str, Any] = load_vectors(VECTORS_FILE)


def _applies(group: dict[str, Any]) -> bool:
    return (group["keySize"], group["ivSize"], group["tagSize"]) == (256, 96, 128)


APPLICABLE = [t for g in DOC["testGroups"] if _applies(g) for t in g["tests"]]
NOT_APPLICABLE_GROUPS = [g for g in DOC["testGroups"] if not _applies(g)]


@pytest.mark.parametrize("case", APPLICABLE, ids=[f"tc{t['tcId']}" for t in APPLICABLE])
def test_vector(case: dict[str, Any]) -> None:
    key, iv = bytes.fromhex(case["key"]), bytes.fromhex(case["iv"])
    aad, msg = bytes.fromhex(case["aad"]), bytes.fromhex(case["msg"])
    ct_and_tag = bytes.fromhex(case["ct"]) + bytes.fromhex(case["tag"])
    if case["result"] == "valid":
        assert aead.encrypt(key, iv, msg, aad) == ct_and_tag
        assert aead.decrypt(key, iv, ct_and_tag, aad) == msg
        assert aead.open_(key, iv + ct_and_tag, aad) == msg
    else:
        assert case["result"] == "invalid", "acceptable vectors need a decision"
        with pytest.raises(BarrierError):
            aead.decrypt(key, iv, ct_and_tag, aad)
        with pytest.raises(BarrierError):
            aead.open_(key, iv + ct_and_tag, aad)


def test_applicable_vectors_present() -> None:
    """We use AES-256 with 96-bit nonces only; only those groups apply."""
    assert len(APPLICABLE) > 0
    assert {t["result"] for t in APPLICABLE} == {"valid", "invalid"}
    for group in NOT_APPLICABLE_GROUPS:
        assert group["keySize"] != 256 or group["ivSize"] != 96 or group["tagSize"] != 128


@pytest.mark.parametrize(
    "group",
    NOT_APPLICABLE_GROUPS,
    ids=[f"key{g['keySize']}-iv{g['ivSize']}-tag{g['tagSize']}" for g in NOT_APPLICABLE_GROUPS],
)
def test_non_applicable_parameters_are_refused(group: dict[str, Any]) -> None:
    """Why the other groups do not apply: our wrapper refuses their key or IV size."""
    case = group["tests"][0]
    key, iv = bytes.fromhex(case["key"]), bytes.fromhex(case["iv"])
    aad, msg = bytes.fromhex(case["aad"]), bytes.fromhex(case["msg"])
    ct_and_tag = bytes.fromhex(case["ct"]) + bytes.fromhex(case["tag"])
    with pytest.raises(BarrierError):
        aead.encrypt(key, iv, msg, aad)
    with pytest.raises(BarrierError):
        aead.decrypt(key, iv, ct_and_tag, aad)
