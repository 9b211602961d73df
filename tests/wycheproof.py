"""Loading the Wycheproof vectors kept in ``shared/vectors`` beside the repository.

CI clones the repository with ``shared/`` next to it; ``AGENTAUTH_VECTORS_DIR`` can
point elsewhere. Outside CI a missing folder skips the vector module with a reason;
in CI (``CI=true``) it fails, so vectors can never silently stop running.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def vectors_dir() -> Path | None:
    configured = os.environ.get("AGENTAUTH_VECTORS_DIR")
    for candidate in (configured, REPO.parent / "shared" / "vectors"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def load_vectors(filename: str) -> dict[str, Any]:
    """The parsed vector file; call at module level (it may skip the module)."""
    directory = vectors_dir()
    if directory is None:
        reason = (
            "Wycheproof vectors not found: expected shared/vectors/ beside the repository "
            "or AGENTAUTH_VECTORS_DIR"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    # A present folder without the file is a broken checkout: fail, don't skip.
    doc: dict[str, Any] = json.loads((directory / filename).read_text())
    return doc
