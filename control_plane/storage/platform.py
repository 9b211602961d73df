"""Platform admin keys (deployment-wide; no org)."""

from __future__ import annotations

from control_plane.storage import models as m
from control_plane.storage.repositories import PlatformRepo


class PlatformApiKeys(PlatformRepo[m.PlatformApiKey]):
    model = m.PlatformApiKey
