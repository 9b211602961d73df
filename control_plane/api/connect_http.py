"""The hosted connect pages: start, OAuth callback, BYOK entry, success and failure.

Plain HTML that works without JavaScript. Every page is sent with
``Referrer-Policy: no-referrer`` (the link and the provider's ``code`` never leak
through Referer), ``Cache-Control: no-store``, a Content-Security-Policy that
allows no scripts and no framing, and only posts forms to ourselves (and, for the
OAuth start, redirects to the provider's authorization endpoint). The BYOK form
carries a CSRF token checked against a SameSite=Strict cookie (double submit).
No page shows a token, a code, a key or a secret, and no page redirects to an
address a caller supplied.
"""

from __future__ import annotations

import hmac
import html
import secrets
from urllib.parse import urlsplit

from aiohttp import web

from control_plane.api.http import RENDERERS, http_status, retry_headers
from control_plane.connectors.model import Connector
from control_plane.domain.errors import AgentAuthError, InvalidArgument
from control_plane.logs import get_logger
from control_plane.services.connect_flow import CALLBACK_PATH, ConnectFlow, FlowFailed

BROWSER_COOKIE = "aa_connect"
CSRF_COOKIE = "aa_csrf"
MAX_FORM = 8192
_log = get_logger("agentauth.connect")

_MESSAGES = {
    "LINK_INVALID": "This link is not valid.",
    "LINK_USED": "This link was already used. Ask the application for a new one.",
    "LINK_EXPIRED": "This link has expired. Ask the application for a new one.",
    "STATE_INVALID": "This sign-in attempt is not valid any more. Start again from a new link.",
    "BROWSER_MISMATCH": "This sign-in was started in another browser. Start again from a new link.",
    "ISSUER_MISMATCH": "The answer did not come from the expected provider.",
    "CSRF": "The form expired. Reload the page and try again.",
    "RATE_LIMITED": "Too many requests. Wait a moment and try again.",
}


def _headers(form_targets: tuple[str, ...] = ()) -> dict[str, str]:
    targets = " ".join(("'self'", *form_targets))
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
            f"frame-ancestors 'none'; form-action {targets}"
        ),
    }


def _page(
    title: str, body: str, status: int = 200, form_targets: tuple[str, ...] = ()
) -> web.Response:
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;line-height:1.5}button{font-size:1rem;padding:.5rem 1rem}"
        "input{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}"
        ".error{color:#a00}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=doc, status=status, headers=_headers(form_targets))


def failure_page(code: str, status: int) -> web.Response:
    message = _MESSAGES.get(code)
    if message is None:
        message = "The connection could not be completed."
        if code.startswith("PROVIDER_"):
            message += f" The provider answered: {code[len('PROVIDER_') :].lower()}."
    attrs = f'id=result data-result=failure data-code="{html.escape(code)}"'
    body = f"<p {attrs}>{html.escape(message)}</p>"
    return _page("Connection failed", body, status)


# Where the pipeline refuses a page (bad link or state, rate limit), the page is the
# one the flow itself would show, with the same status.
_REFUSAL_STATUS = {"LINK_INVALID": 404, "LINK_USED": 410, "LINK_EXPIRED": 410, "STATE_INVALID": 400}


def page_refusal(exc: AgentAuthError) -> web.Response:
    status = _REFUSAL_STATUS.get(exc.reason) or http_status(exc)
    page = failure_page(exc.reason, status)
    page.headers.update(retry_headers(exc))
    return page


def callback_refusal(exc: AgentAuthError) -> web.Response:
    page = page_refusal(exc)
    page.del_cookie(BROWSER_COOKIE, path=CALLBACK_PATH)
    return page


def success_page(connector: Connector) -> web.Response:
    name = html.escape(connector.display_name)
    body = (
        f"<p id=result data-result=success>{name} is connected. "
        "You can close this window and go back to the application.</p>"
    )
    return _page("Connected", body)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class ConnectPages:
    def __init__(self, flow: ConnectFlow) -> None:
        self.flow = flow
        self.secure_cookies = flow.base.startswith("https://")

    def routes(self, app: web.Application) -> None:
        app[RENDERERS]["GET /connect/{link}"] = page_refusal
        app[RENDERERS]["POST /connect/{link}"] = page_refusal
        app[RENDERERS]["GET " + CALLBACK_PATH] = callback_refusal
        app.router.add_get("/connect/{link}", self.start_page)
        app.router.add_post("/connect/{link}", self.submit)
        app.router.add_get(CALLBACK_PATH, self.callback)

    def _cookie(
        self, resp: web.StreamResponse, name: str, value: str, path: str, site: str
    ) -> None:
        resp.set_cookie(
            name,
            value,
            path=path,
            httponly=True,
            secure=self.secure_cookies,
            samesite=site,
            max_age=15 * 60,
        )

    async def start_page(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["link"]
        try:
            page = await self.flow.page(token)
        except FlowFailed as exc:
            return failure_page(exc.code, exc.status)
        csrf = secrets.token_urlsafe(32)
        label = f" ({html.escape(page.account_label)})" if page.account_label else ""
        name = html.escape(page.connector.display_name)
        if page.kind == "oauth2":
            body = (
                f"<p>Connect your {name} account{label}. You will sign in at {name} "
                "and choose what to allow.</p>"
                f'<form method=post><input type=hidden name=csrf value="{csrf}">'
                f"<button type=submit id=continue>Continue to {name}</button></form>"
            )
            targets: tuple[str, ...] = (_origin(page.connector.auth.authorize_url),)
        else:
            body = (
                f"<p>Enter your {name} API key{label}. It is stored encrypted and is never "
                "shown again.</p>"
                f'<form method=post><input type=hidden name=csrf value="{csrf}">'
                "<label for=api_key>API key</label>"
                "<input type=password id=api_key name=api_key autocomplete=off required "
                "maxlength=4096>"
                "<p><button type=submit id=save>Save key</button></p></form>"
            )
            targets = ()
        resp = _page(f"Connect {page.connector.display_name}", body, form_targets=targets)
        self._cookie(resp, CSRF_COOKIE, csrf, f"/connect/{token}", "Strict")
        return resp

    async def submit(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["link"]
        if (request.content_length or 0) > MAX_FORM:
            return failure_page("CSRF", 413)
        try:
            form = await request.post()
        except ValueError:
            return failure_page("CSRF", 400)
        sent = form.get("csrf")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not isinstance(sent, str) or not cookie or not hmac.compare_digest(sent, cookie):
            return failure_page("CSRF", 403)
        try:
            page = await self.flow.page(token)
            if page.kind == "oauth2":
                started = await self.flow.start(token)
                moved = web.Response(
                    status=303, headers={**_headers(), "Location": started.authorize_url}
                )
                self._cookie(moved, BROWSER_COOKIE, started.browser_nonce, CALLBACK_PATH, "Lax")
                return moved
            key = form.get("api_key")
            if not isinstance(key, str):
                key = ""
            try:
                done = await self.flow.submit_api_key(token, key)
            except InvalidArgument as exc:
                # The message names the problem, never the value.
                problem = html.escape(exc.message.split(": ", 1)[-1])
                csrf = secrets.token_urlsafe(32)
                body = (
                    f"<p class=error id=problem>The key {problem}.</p>"
                    f'<form method=post><input type=hidden name=csrf value="{csrf}">'
                    "<label for=api_key>API key</label>"
                    "<input type=password id=api_key name=api_key autocomplete=off required "
                    "maxlength=4096><p><button type=submit id=save>Save key</button></p></form>"
                )
                resp = _page(f"Connect {page.connector.display_name}", body, status=400)
                self._cookie(resp, CSRF_COOKIE, csrf, f"/connect/{token}", "Strict")
                return resp
            return success_page(done.connector)
        except FlowFailed as exc:
            return failure_page(exc.code, exc.status)

    async def callback(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            done = await self.flow.callback(
                state=q.get("state", ""),
                code=q.get("code", ""),
                iss=q.get("iss"),
                error=q.get("error"),
                browser_nonce=request.cookies.get(BROWSER_COOKIE),
            )
        except FlowFailed as exc:
            _log.info("connect callback refused", code=exc.code)
            resp = failure_page(exc.code, exc.status)
        except AgentAuthError as exc:
            resp = failure_page(exc.reason, 400)
        else:
            resp = success_page(done.connector)
        resp.del_cookie(BROWSER_COOKIE, path=CALLBACK_PATH)
        return resp
