"""Stripe API v1 as the API-key emulator answers it, with a restricted key (BYOK).

Sources: https://docs.stripe.com/api (list objects ``{"object": "list", "data",
"has_more", "url"}``, customers, payment intents, refunds);
https://docs.stripe.com/error-handling and /error-codes (the envelope
``{"error": {"type", "code", "message", "param", "doc_url"}}``);
https://docs.stripe.com/rate-limits (429 with ``Stripe-Rate-Limited-Reason`` and no
``Retry-After``; ``lock_timeout`` is a 429 too); a key is quoted masked, as Stripe
does, never whole. Restricted-key permission wording is partially verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from control_plane.connectors.model import Tool
from control_plane.sandbox._key_profile import KeyProfile, Query, alnum
from control_plane.sandbox._resource_api import Reply

STRIPE_VERSION = "2025-12-15.clover"
_STRIPE_PERMISSIONS = {
    "stripe.list_customers": "rak_customer_read",
    "stripe.get_customer": "rak_customer_read",
    "stripe.list_payment_intents": "rak_payment_intent_read",
    "stripe.create_refund": "rak_refund_write",
}


def stripe_mask(key: str) -> str:
    """``rk_test_abcdef...wxyz`` -> ``rk_test_***...wxyz``: how Stripe quotes a key."""
    head = key[:8] if key[:3] in ("rk_", "sk_", "pk_") and key[7:8] == "_" else ""
    tail = key[-4:] if len(key) > len(head) + 8 else ""
    return head + "*" * max(len(key) - len(head) - len(tail), 4) + tail


class StripeProfile(KeyProfile):
    errors = (
        "invalid_key",
        "expired_key",
        "permission",
        "rate_limit",
        "lock_timeout",
        "api_error",
        "idempotency_key_in_use",
        "resource_missing",
    )

    def __init__(self) -> None:
        self.account = "acct_1" + alnum(15)
        #: Ids that answer 404 ``resource_missing`` (deleted objects); any other
        #: well-formed id exists.
        self.missing_ids: set[str] = set()
        #: Refunds created, oldest first.
        self.refunds: list[dict[str, Any]] = []
        self.customers = [
            self._customer("cus_" + alnum(14), "Jenny Rosen", "jenny.rosen@example.com", 3),
            self._customer("cus_" + alnum(14), "Rahul Nair", "rahul@example.com", 2),
            self._customer("cus_" + alnum(14), "Ana Lima", "ana.lima@example.com", 1),
        ]
        self.payment_intents = [
            self._intent("pi_" + alnum(24), c["id"], 2000 * (i + 1))
            for i, c in enumerate(self.customers)
        ]

    def new_key(self) -> str:
        return "rk_test_" + alnum(24)

    @staticmethod
    def _customer(cid: str, name: str, email: str, age_days: int) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": 1767225600 - age_days * 86400,
            "currency": "usd",
            "default_source": None,
            "delinquent": False,
            "description": None,
            "email": email,
            "invoice_prefix": hashlib.sha256(cid.encode()).hexdigest()[:8].upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {},
            "name": name,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    @staticmethod
    def _intent(pid: str, customer: str, amount: int) -> dict[str, Any]:
        return {
            "id": pid,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "capture_method": "automatic",
            "client_secret": None,  # only the publishable-key flow sees it
            "created": 1767225600,
            "currency": "usd",
            "customer": customer,
            "description": None,
            "latest_charge": "ch_" + pid[3:],
            "livemode": False,
            "metadata": {},
            "payment_method_types": ["card"],
            "status": "succeeded",
        }

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "Request-Id": "req_" + alnum(14),
            "Stripe-Version": STRIPE_VERSION,
            **(extra or {}),
        }

    def _error(
        self,
        status: int,
        kind: str,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        error: dict[str, Any] = {"message": message, "type": kind}
        if code is not None:
            error["code"] = code
            error["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
        if param is not None:
            error["param"] = param
        return status, {"error": error}, self._headers(headers)

    def missing_key(self, now: float) -> Reply:
        return self._error(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
            "or we can help at https://support.stripe.com/.",
        )

    def invalid_key(self, key: str, now: float) -> Reply:
        return self._error(
            401, "invalid_request_error", f"Invalid API Key provided: {stripe_mask(key)}"
        )

    def rate_limited(self, retry_after: int, now: float) -> Reply:
        # No Retry-After: Stripe documents none; clients back off exponentially.
        return self._error(
            429,
            "rate_limit_error",
            "Too many requests hit the API too quickly. We recommend an exponential "
            "backoff of your requests.",
            headers={"Stripe-Rate-Limited-Reason": "global-rate"},
        )

    def error(self, name: str, key: str, retry_after: int, now: float) -> Reply:
        if name == "invalid_key":
            return self.invalid_key(key, now)
        if name == "expired_key":
            return self._error(
                401,
                "invalid_request_error",
                f"Expired API Key provided: {stripe_mask(key)}",
                code="api_key_expired",
            )
        if name == "permission":
            return self.permission(key, "stripe.list_customers", now)
        if name == "rate_limit":
            return self.rate_limited(retry_after, now)
        if name == "lock_timeout":
            return self._error(
                429,
                "invalid_request_error",
                "This object cannot be accessed right now because another API request or "
                "Stripe process is currently accessing it. If you see this error "
                "intermittently, retry the request.",
                code="lock_timeout",
            )
        if name == "api_error":
            return self._error(500, "api_error", "An unknown error occurred")
        if name == "idempotency_key_in_use":
            return self._error(
                409,
                "idempotency_error",
                "There is currently another in-progress request using this idempotency key.",
                code="idempotency_key_in_use",
                headers={"Stripe-Should-Retry": "true"},
            )
        if name == "resource_missing":
            return self._missing("customer", "cus_" + alnum(14), "id")
        raise ValueError(f"unknown Stripe error {name!r}; one of {self.errors}")

    def permission(self, key: str, tool: str, now: float) -> Reply:
        """A restricted key without the permission ``tool`` needs (403)."""
        needed = _STRIPE_PERMISSIONS.get(tool, "rak_read")
        return self._error(
            403,
            "invalid_request_error",
            f"The provided key '{stripe_mask(key)}' does not have the required permissions "
            f"for this endpoint on account '{self.account}'. Having the '{needed}' "
            "permission would allow this request to continue.",
        )

    def status_error(self, status: int, retry_after: int, now: float) -> Reply:
        if status == 429:
            return self.rate_limited(retry_after, now)
        if status >= 500:
            return self._error(status, "api_error", "An unknown error occurred")
        return self._error(status, "invalid_request_error", f"Request failed ({status}).")

    def _missing(self, what: str, oid: str, param: str) -> Reply:
        return self._error(
            404 if param == "id" else 400,
            "invalid_request_error",
            f"No such {what}: '{oid}'",
            code="resource_missing",
            param=param,
        )

    def answer(self, tool: Tool, path: Query, query: Query, body: Any, now: float) -> Reply:
        name = tool.name
        if name == "stripe.list_customers":
            rows = [
                c for c in self.customers if "email" not in query or c["email"] == query["email"]
            ]
            return self._list("/v1/customers", rows, query)
        if name == "stripe.list_payment_intents":
            rows = [
                p
                for p in self.payment_intents
                if "customer" not in query or p["customer"] == query["customer"]
            ]
            return self._list("/v1/payment_intents", rows, query)
        if name == "stripe.get_customer":
            cid = path.get("customer", "")
            if cid in self.missing_ids:
                return self._missing("customer", cid, "id")
            found = next((c for c in self.customers if c["id"] == cid), None)
            return 200, found or self._customer(cid, "Sandbox Customer", "", 0), self._headers()
        if name == "stripe.create_refund":
            return self._refund(body if isinstance(body, dict) else {}, now)
        raise ValueError(f"no Stripe answer for {name}")

    def _list(self, url: str, rows: list[dict[str, Any]], query: Query) -> Reply:
        rows = sorted(rows, key=lambda r: (-r["created"], r["id"]))  # newest first
        ids = [r["id"] for r in rows]
        if query.get("starting_after") in ids:
            rows = rows[ids.index(query["starting_after"]) + 1 :]
        elif query.get("ending_before") in ids:
            rows = rows[: ids.index(query["ending_before"])]
        limit = int(query.get("limit", "10"))
        page = rows[:limit]
        doc = {"object": "list", "data": page, "has_more": len(rows) > limit, "url": url}
        return 200, doc, self._headers()

    def _refund(self, form: Mapping[str, str], now: float) -> Reply:
        intent_id, charge = form.get("payment_intent"), form.get("charge")
        if not intent_id and not charge:
            return self._error(
                400,
                "invalid_request_error",
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        oid = intent_id or charge or ""
        if oid in self.missing_ids:
            what = "payment_intent" if intent_id else "charge"
            return self._missing(what, oid, what)
        intent = next((p for p in self.payment_intents if p["id"] == intent_id), None)
        amount = int(form["amount"]) if form.get("amount") else (intent or {}).get("amount", 2000)
        refund: dict[str, Any] = {
            "id": "re_" + alnum(24),
            "object": "refund",
            "amount": amount,
            "balance_transaction": "txn_" + alnum(24),
            "charge": charge or (intent or {}).get("latest_charge") or "ch_" + oid[3:],
            "created": int(now),
            "currency": "usd",
            "metadata": {},
            "payment_intent": intent_id,
            "reason": form.get("reason"),
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.refunds.append(refund)
        return 200, refund, self._headers()
