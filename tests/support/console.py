"""A console user's browser without a browser: an aiohttp client session that signs in as a
person would (sign-in form, its CSRF cookie and field) and posts the console's forms."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from yarl import URL

from gateway.passwords import hash_password

PASSWORDS = {"olga": "olga-operator-pass", "vera": "vera-viewer-pass"}
TOKENS = {
    "ops-script": "operator-token-0123456789abcdefghijklmnop",
    "nagios": "viewer-token-0123456789abcdefghijklmnopqr",
}
_HASHES: dict[str, str] = {}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console_section(**extra: Any) -> dict[str, Any]:
    """`console` on a free loopback port: operator olga, viewer vera, a token of each role."""
    for name, password in PASSWORDS.items():
        if name not in _HASHES:
            _HASHES[name] = hash_password(password)
    return {
        "listen": "127.0.0.1:0",
        "users": [
            {"username": "olga", "password_hash": _HASHES["olga"], "role": "operator"},
            {"username": "vera", "password_hash": _HASHES["vera"], "role": "viewer"},
        ],
        "api_tokens": [
            {"name": "ops-script", "token": TOKENS["ops-script"], "role": "operator"},
            {"name": "nagios", "token": TOKENS["nagios"], "role": "viewer"},
        ],
        **extra,
    }


def csrf_of(page: str) -> str:
    """The CSRF token in a page's forms."""
    match = _CSRF.search(page)
    assert match, "no CSRF field on the page"
    return match.group(1)


class Browser:
    """One cookie jar against one console."""

    def __init__(self, base: str, **session: Any) -> None:
        self.base = base.rstrip("/")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), **session)
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.base + path, allow_redirects=False, **kwargs) as response:
            return response.status, await response.text(errors="replace"), response

    async def post(
        self, path: str, data: Any = None, **kwargs: Any
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.post(
            self.base + path, data=data, allow_redirects=False, **kwargs
        ) as response:
            return response.status, await response.text(errors="replace"), response

    async def sign_in(self, username: str, password: str | None = None) -> int:
        """Fill the sign-in form; the status of its answer (303 when signed in)."""
        status, page, _ = await self.get("/signin")
        assert status == 200
        form = {
            "csrf": csrf_of(page),
            "next": "/",
            "username": username,
            "password": PASSWORDS.get(username, "") if password is None else password,
        }
        status, _, _ = await self.post("/signin", form)
        if status == 303:
            _, page, _ = await self.get("/")
            self.csrf = csrf_of(page)
        return status

    def cookie(self, name: str) -> str | None:
        """The cookie this browser sends to the console."""
        found = self.http.cookie_jar.filter_cookies(URL(self.base)).get(name)
        return found.value if found is not None else None

    def plant(self, name: str, value: str) -> None:
        """Set a cookie for the console's host, as another tab or an attacker might."""
        self.http.cookie_jar.update_cookies({name: value}, response_url=URL(self.base))
