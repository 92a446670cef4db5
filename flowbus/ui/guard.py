"""Who may use the page: the token (when the server is reachable beyond this machine), CSRF
on every state change, and headers that keep the browser from running anything not ours."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from urllib.parse import urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "flowbus_ui_token"
CSRF_COOKIE = "flowbus_csrf"
CSRF_FIELD = "csrf"
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def _same(a: str | None, b: str) -> bool:
    return a is not None and secrets.compare_digest(a.encode(), b.encode())


class Guard:
    """ASGI middleware: token check, CSRF cookie, security headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return _same(request.cookies.get(TOKEN_COOKIE), self.token) or _same(bearer, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not self._authorized(request):
            await self._refuse_or_login(request)(scope, receive, send)
            return
        known = request.cookies.get(CSRF_COOKIE)
        csrf = known or secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = csrf
        scope["state"]["csrf_known"] = known is not None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
                if known is None:
                    headers.append(
                        "set-cookie",
                        f"{CSRF_COOKIE}={csrf}; Path=/; HttpOnly; SameSite=Strict",
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refuse_or_login(self, request: Request) -> ASGIApp:
        """``?token=…`` right: remember it in a cookie and drop it from the address."""
        assert self.token is not None
        if _same(request.query_params.get("token"), self.token):
            rest = {k: v for k, v in request.query_params.items() if k != "token"}
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return response
        return PlainTextResponse(
            "flowbus ui: open the address printed at start (it carries the token), "
            "or send Authorization: Bearer $FLOWBUS_UI_TOKEN",
            status_code=401,
        )


def csrf_ok(request: Request, form: Mapping[str, str]) -> bool:
    """The form (or header) carries the CSRF cookie this browser was given."""
    if not request.scope["state"].get("csrf_known"):
        return False
    sent = form.get(CSRF_FIELD) or request.headers.get("x-csrf-token")
    return _same(sent, request.scope["state"]["csrf"])
