"""Helpers shared by the sandbox tests: fetch JSON, peek into a JWS."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, str, Any]:
    """GET ``url``: (status, exact Content-Type header, parsed body)."""
    async with http.get(url) as resp:
        return resp.status, resp.headers["Content-Type"], json.loads(await resp.read())


def segment(token: str, index: int) -> dict[str, Any]:
    """Decode header (0) or payload (1) of a compact JWS without verifying it."""
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded
