"""One HTTP connection pool to one cluster manager, with its credentials: the client's httpx seam.

``Connection.call`` sends one request and returns the answer when it is a success; every other
answer is raised as its ``TashiError`` category and every httpx failure as ``Unavailable``
(``errors.py`` says which): no httpx exception leaves this module. It logs in lazily
(``POST /v1/auth/token``) when it holds a user name and password but no token, and logs in again
once when a request is refused as unauthenticated and it can log in (a token given to it without
a password is not renewed). The bearer token is a header of the ``httpx.AsyncClient`` itself, so
whoever is handed that client (a scheduler hook, through ``http``) sends it too, and sees it
renewed. ``client.py`` builds the API's methods on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypedDict, Unpack

import httpx
from pydantic import BaseModel

from tashi.api import paths
from tashi.api.schemas import LoginIn, TokenOut
from tashi.apiclient.errors import decode, error_from, unreachable
from tashi.domain.errors import NotAuthenticated

_AUTHORIZATION = "Authorization"

Params = Mapping[str, str | int | float]


class Options(TypedDict, total=False):
    """How to reach a cluster manager (every key may be left out).

    ``token``, or ``username`` and ``password``: the credentials. ``timeout``: seconds to wait
    for an answer (default 30). ``connect_timeout``: seconds to open a connection (default
    ``timeout``). ``transport`` replaces the network (tests: ``httpx.MockTransport``,
    ``httpx.ASGITransport``). ``http``, instead of the base URL, timeouts and transport: an
    ``httpx.AsyncClient`` someone else opened and closes (its base URL and token already set).
    """

    token: str | None
    username: str | None
    password: str | None
    timeout: float
    connect_timeout: float | None
    transport: httpx.AsyncBaseTransport | None
    http: httpx.AsyncClient | None


class Connection:
    """The cluster manager at ``base_url``, reached as ``options`` say."""

    def __init__(self, base_url: str = "", **options: Unpack[Options]) -> None:
        username, password = options.get("username"), options.get("password")
        self._login = (username, password) if username and password is not None else None
        self.timeout = options.get("timeout", 30.0)
        connect = options.get("connect_timeout")
        self._connect = self.timeout if connect is None else connect
        http = options.get("http")
        self._owned = http is None
        if http is None:
            transport = options.get("transport")
            http = httpx.AsyncClient(
                base_url=base_url.rstrip("/"), timeout=self._limits(None), transport=transport
            )
        self.http = http
        self.base_url = str(http.base_url).rstrip("/")
        token = options.get("token")
        if token:  # never None here: a shared client keeps the token it has
            self.token = token
        self.session: TokenOut | None = None  # set when this connection logged in itself
        # One login at a time: calls made at once before the first token (or after it expired)
        # wait for one login instead of each logging in (the login throttle, ADR 0013, counts
        # logins under way, and refused the sixth of ten made at once).
        self._logging_in = asyncio.Lock()

    @property
    def token(self) -> str | None:
        """The bearer token sent with every request, if any."""
        value = self.http.headers.get(_AUTHORIZATION)
        return value.removeprefix("Bearer ") if value else None

    @token.setter
    def token(self, value: str | None) -> None:
        if value:
            self.http.headers[_AUTHORIZATION] = f"Bearer {value}"
        else:
            self.http.headers.pop(_AUTHORIZATION, None)

    @property
    def can_log_in(self) -> bool:
        return self._login is not None

    async def close(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def login(self) -> TokenOut:
        """Exchange the user name and password for a bearer token (and who we are)."""
        if self._login is None:
            raise NotAuthenticated("no user name and password to log in with")
        username, password = self._login
        body = LoginIn(username=username, password=password)
        self.session = decode(TokenOut, await self.call("POST", paths.TOKEN, body=body, auth=False))
        self.token = self.session.token
        return self.session

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        params: Params | None = None,
        auth: bool = True,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; its answer, a success. ``timeout`` replaces the connection's wait
        for this request (a long poll, a call that starts many VMs)."""
        if auth and self.token is None:
            await self._log_in_unless_done(None)
        sent = self.token
        response = await self._send(method, path, body, params, auth, timeout)
        if response.status_code == 401 and auth and self._login is not None:
            await self._log_in_unless_done(sent)  # the token expired: log in again, once
            response = await self._send(method, path, body, params, auth, timeout)
        if not response.is_success:
            raise error_from(response)
        return response

    async def _log_in_unless_done(self, stale: str | None) -> None:
        """Log in, unless another call did while this one waited its turn (the token is no
        longer ``stale``, the one this call had)."""
        async with self._logging_in:
            if self.token is None or self.token == stale:
                await self.login()

    async def _send(
        self,
        method: str,
        path: str,
        body: BaseModel | None,
        params: Params | None,
        auth: bool,
        timeout: float | None,
    ) -> httpx.Response:
        content = body.model_dump_json().encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        request = self.http.build_request(
            method,
            path,
            content=content,
            params=params,
            headers=headers,
            timeout=self._limits(timeout),
        )
        if not auth:
            request.headers.pop(_AUTHORIZATION, None)
        try:
            return await self.http.send(request)
        except httpx.HTTPError as exc:
            raise unreachable(exc, self.base_url, timeout or self.timeout) from exc

    def _limits(self, timeout: float | None) -> httpx.Timeout:
        return httpx.Timeout(timeout or self.timeout, connect=self._connect)
