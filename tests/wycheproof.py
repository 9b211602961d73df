"""Loading the Wycheproof vectors vendored in ``tests/vectors/wycheproof/``.

The files are byte-for-byte copies from the Wycheproof project (their README says
which commit). Each is pinned here by its SHA-256: a missing, truncated or edited
file fails the module that reads it, so the vectors can never silently stop running.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

VECTORS_DIR = Path(__file__).resolve().parent / "vectors" / "wycheproof"

# SHA-256 of each vendored file (the same digests as the folder's README).
VENDORED: dict[str, str] = {
    "aes_gcm_test.json": "985e5ecc172e181eaf49e89508b9470dcf478002eb7e8559c707eb42dc97dfe7",
    "ecdsa_secp256r1_sha256_p1363_test.json": (
        "c60de693930e386c3a5472d08081623ef8504decc54b38ac01ec6b2a2575c986"
    ),
    "ed25519_test.json": "752d2ea7d7c6cf4736381b6cbacb61f8182b126ab7cd9b058f00c50084975536",
    "json_web_key_test.json": "be983255bce26406f97020ec5458b33930a90d5f868e604fcd569c300aba2862",
    "json_web_signature_test.json": (
        "8e687a06fe8359f4ec51480f1a9f73c8faebd6f4c01b818b843b44eee54fd5d9"
    ),
}


def load_vectors(filename: str) -> dict[str, Any]:
    """The parsed vector file; call at module level (a problem fails collection)."""
    if filename not in VENDORED:
        pytest.fail(f"{filename} is not a vendored Wycheproof file", pytrace=False)
    path = VECTORS_DIR / filename
    try:
        raw = path.read_bytes()
    except OSError as err:
        pytest.fail(f"Wycheproof vector file unreadable: {path}: {err}", pytrace=False)
    if hashlib.sha256(raw).hexdigest() != VENDORED[filename]:
        pytest.fail(f"{path} differs from the vendored copy (SHA-256)", pytrace=False)
    doc: dict[str, Any] = json.loads(raw)
    return doc
