"""Random, non-sequential identifiers (UUIDv4, 122 random bits), rendered as 32 hex chars."""

from __future__ import annotations

import re
import uuid

ID_RE = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    return bool(ID_RE.fullmatch(value))
