"""Named request builders for what connector data cannot express.

A tool's ``http.strategy`` names one of these; it turns validated tool arguments
into the provider's request body. Kept deliberately few and small.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

Strategy = Callable[[Mapping[str, Any]], dict[str, Any]]


def gmail_rfc822(args: Mapping[str, Any]) -> dict[str, Any]:
    """Gmail ``users.messages.send`` wants the whole RFC 5322 message, base64url, in ``raw``."""
    msg = EmailMessage(policy=SMTP)
    msg["To"] = ", ".join(args["to"]) if isinstance(args["to"], list) else str(args["to"])
    if args.get("cc"):
        msg["Cc"] = ", ".join(args["cc"])
    msg["Subject"] = str(args["subject"])
    msg.set_content(str(args["body"]))
    body: dict[str, Any] = {"raw": base64.urlsafe_b64encode(msg.as_bytes()).decode().rstrip("=")}
    if args.get("thread_id"):
        body["threadId"] = args["thread_id"]
    return body


STRATEGIES: Mapping[str, Strategy] = {"gmail_rfc822": gmail_rfc822}
