"""A stand-in for an institution's OAuth2 identity provider (authorization-code grant, RFC 6749 4.1).

Clients and users come from a 0600 JSON file (`IdpConfig.load`); codes and tokens live in memory.
- `GET /authorize`: the login form. An unknown client or unregistered redirect_uri (exact match):
  400, never a redirect; a response_type other than `code`: `error=unsupported_response_type`.
- `POST /authorize`: bad credentials, 401 and the form again; good ones, a one-time code (60 s,
  bound to client, redirect_uri and user) sent to `redirect_uri?code=&state=`.
- `POST /token`: the client by HTTP Basic (id and secret URL-decoded, RFC 6749 2.3.1) or by form
  fields, else 401 `invalid_client`; the code is used up whether it fits or not (`invalid_grant`).
- `GET /userinfo`: `sub`, `preferred_username` and `name`, all the username; 401 `invalid_token`.
- `GET /.well-known/openid-configuration`: the issuer and the three endpoints.
Not implemented: refresh tokens, PKCE (its parameters are ignored), id tokens, consent, sessions.
Secrets, passwords, codes and tokens are never logged.
"""
from __future__ import annotations

import base64
import dataclasses
import hmac
import html
import json
import logging
import secrets
import time
from pathlib import Path
from urllib.parse import unquote_plus, urlencode, urlsplit

from aiohttp import web

from lab.apps.serving import serve_until_stopped

log = logging.getLogger(__name__)

CODE_SECONDS, TOKEN_SECONDS = 60, 3600
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = """<!DOCTYPE html>
<html><head><title>Lab identity provider</title></head><body>
<h1>Sign in</h1>{error}
<form method="post" action="/authorize">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
{hidden}<button type="submit">Sign in</button>
</form></body></html>
"""


@dataclasses.dataclass(frozen=True)
class Client:
    secret: str = dataclasses.field(repr=False)
    redirect_uris: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class IdpConfig:
    """The registered clients (by client_id) and the users' passwords (by username)."""

    clients: dict[str, Client]
    users: dict[str, str] = dataclasses.field(repr=False)

    @classmethod
    def load(cls, path: Path) -> IdpConfig:
        """The config in `path`, a 0600 JSON file: {"clients": {id: {"secret", "redirect_uris"}}, "users"}."""
        try:
            mode, text = path.stat().st_mode, path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
        if mode & 0o077:
            raise ValueError(f"{path} holds secrets but is open to group/other (mode {mode & 0o777:o}): "
                             f"chmod 600 {path}")
        try:
            data = json.loads(text)
            clients = {cid: Client(c["secret"], tuple(c["redirect_uris"])) for cid, c in data["clients"].items()}
            users = dict(data["users"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path} is not an IdP config ({type(exc).__name__}: {exc}); expected "
                             '{"clients": {ID: {"secret": ..., "redirect_uris": [...]}}, "users": {NAME: PASSWORD}}'
                             ) from exc
        if not all(isinstance(s, str) and s for s in [*users, *users.values(), *(c.secret for c in clients.values())]):
            raise ValueError(f"{path}: client secrets, usernames and passwords must be non-empty strings")
        uris = [uri for c in clients.values() for uri in c.redirect_uris]
        if not all(isinstance(u, str) and u.startswith(("http://", "https://")) and "#" not in u for u in uris):
            raise ValueError(f"{path}: redirect_uris must be lists of http(s) URLs without a fragment")
        return cls(clients, users)


@dataclasses.dataclass(frozen=True)
class Grant:
    client_id: str
    redirect_uri: str
    user: str
    scope: str
    expires: float


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _redirect(uri: str, **params: str) -> web.HTTPFound:
    query = urlencode({k: v for k, v in params.items() if v})
    return web.HTTPFound(uri + ("&" if urlsplit(uri).query else "?") + query)


def _error(status: int, error: str, **headers: str) -> web.Response:
    return web.json_response({"error": error}, status=status, headers={**NO_STORE, **headers})


class Idp:
    """The handlers, over the config and the codes and tokens issued so far."""

    def __init__(self, config: IdpConfig):
        self.config = config
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # access token -> (username, expiry)

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/authorize", self.authorize_form)
        app.router.add_post("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/userinfo", self.userinfo)
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        return app

    def _checked_client(self, params) -> tuple[str, str]:
        """(client_id, redirect_uri) when the client is known and the URI registered for it, else 400."""
        client = self.config.clients.get(params.get("client_id", ""))
        if client is None or params.get("redirect_uri") not in client.redirect_uris:
            raise web.HTTPBadRequest(text="Unknown client_id, or a redirect_uri not registered for it.\n")
        return params["client_id"], params["redirect_uri"]

    def _form(self, params, status: int = 200, error: str = "") -> web.Response:
        hidden = "".join(f'<input type="hidden" name="{name}" value="{html.escape(params.get(name, ""))}">\n'
                         for name in ("client_id", "redirect_uri", "state", "scope"))
        error = f'<p role="alert">{html.escape(error)}</p>' if error else ""
        return web.Response(text=FORM.format(error=error, hidden=hidden), status=status, content_type="text/html")

    async def authorize_form(self, request: web.Request) -> web.Response:
        params = request.query
        _, redirect_uri = self._checked_client(params)
        if params.get("response_type") != "code":
            raise _redirect(redirect_uri, error="unsupported_response_type", state=params.get("state", ""))
        return self._form(params)

    async def authorize(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, redirect_uri = self._checked_client(form)
        user, password = form.get("username", ""), form.get("password", "")
        expected = self.config.users.get(user)
        if not _same(password, expected or secrets.token_hex(16)) or expected is None:
            log.warning("failed login as %r for client %s", user, client_id)
            return self._form(form, 401, "Invalid username or password")
        now = time.monotonic()
        self.codes = {code: grant for code, grant in self.codes.items() if grant.expires > now}
        code = secrets.token_urlsafe(32)
        self.codes[code] = Grant(client_id, redirect_uri, user, form.get("scope", ""), now + CODE_SECONDS)
        log.info("%s logged in for client %s", user, client_id)
        raise _redirect(redirect_uri, code=code, state=form.get("state", ""))

    def _token_client(self, request: web.Request, form) -> str | None:
        """The client_id the request authenticates as (RFC 6749 2.3.1), or None."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(credentials.strip(), validate=True).decode()
            except ValueError:  # binascii.Error and UnicodeDecodeError alike
                return None
            client_id, _, secret = (unquote_plus(part) for part in pair.partition(":"))
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.config.clients.get(client_id)
        return client_id if client and _same(secret, client.secret) else None

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id = self._token_client(request, form)
        if client_id is None:
            return _error(401, "invalid_client", **{"WWW-Authenticate": 'Basic realm="lab-idp"'})
        if form.get("grant_type") != "authorization_code":
            return _error(400, "unsupported_grant_type")
        grant = self.codes.pop(form.get("code", ""), None)  # used up, whether it fits or not
        now = time.monotonic()
        if (grant is None or grant.expires <= now or grant.client_id != client_id
                or grant.redirect_uri != form.get("redirect_uri")):
            log.warning("client %s presented an unknown, expired, used or mismatched code", client_id)
            return _error(400, "invalid_grant")
        self.tokens = {token: entry for token, entry in self.tokens.items() if entry[1] > now}
        token = secrets.token_urlsafe(32)
        self.tokens[token] = (grant.user, now + TOKEN_SECONDS)
        log.info("access token for %s issued to client %s", grant.user, client_id)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                                  "scope": grant.scope}, headers=NO_STORE)

    async def userinfo(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user, expires = self.tokens.get(token.strip(), ("", 0.0)) if scheme.lower() == "bearer" else ("", 0.0)
        if not user or expires <= time.monotonic():
            return _error(401, "invalid_token", **{"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return web.json_response({"sub": user, "preferred_username": user, "name": user})

    async def discovery(self, request: web.Request) -> web.Response:
        issuer = f"{request.scheme}://{request.host}"
        return web.json_response({
            "issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token", "userinfo_endpoint": f"{issuer}/userinfo",
            "response_types_supported": ["code"], "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]})


async def serve(config: IdpConfig, address: str, port: int) -> None:
    """Serve the IdP on address:port until SIGTERM or SIGINT."""
    await serve_until_stopped(Idp(config).application(), address, port, lambda: log.info(
        "identity provider at http://%s:%d (%d clients, %d users)", address, port, len(config.clients),
        len(config.users)))
