"""Sign-in through the city's identity platform: OpenID Connect, authorisation code flow with PKCE.

The platform has already verified the resident's real name; this service keeps only the
platform's subject (``iss|sub``) to find the resident again, and never a national id number.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import jwt

from codeservice.config import OIDCSettings

_TIMEOUT = 5


class OIDCError(RuntimeError):
    """Sign-in could not be completed; the message is safe to show."""


def _check_url(url: str) -> None:
    """Only https, or plain http to this machine (a platform proxy on localhost, or tests)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")):
        return
    raise OIDCError("identity platform URLs must use https")


def _fetch_json(url: str, data: dict[str, str] | None = None, auth: tuple[str, str] | None = None) -> Any:
    _check_url(url)
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked above
    if auth is not None and auth[1]:
        token = base64.b64encode(f"{urllib.parse.quote(auth[0])}:{urllib.parse.quote(auth[1])}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310 - scheme checked above
            return json.loads(response.read(1_000_000))
    except (urllib.error.URLError, ValueError, TimeoutError) as exc:
        raise OIDCError(f"identity platform did not answer properly ({exc.__class__.__name__})") from None


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OIDCClient:
    def __init__(self, settings: OIDCSettings) -> None:
        self.settings = settings
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._jwks: jwt.PyJWKClient | None = None

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.time() - self._metadata_at > 3600:
            meta = _fetch_json(self.settings.issuer + "/.well-known/openid-configuration")
            if not isinstance(meta, dict) or meta.get("issuer", "").rstrip("/") != self.settings.issuer:
                raise OIDCError("identity platform metadata names another issuer")
            for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(field), str):
                    raise OIDCError(f"identity platform metadata lacks {field}")
            for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                _check_url(meta[field])
            self._metadata, self._metadata_at = meta, time.time()
            self._jwks = jwt.PyJWKClient(meta["jwks_uri"], cache_keys=True, timeout=_TIMEOUT)
        return self._metadata

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, code_challenge: str) -> str:
        query = urllib.parse.urlencode({
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.settings.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        })
        return f"{self.metadata()['authorization_endpoint']}?{query}"

    def exchange(self, code: str, code_verifier: str, redirect_uri: str, nonce: str) -> str:
        """Trade the code for an ID token, verify it, and return the platform subject ``iss|sub``."""
        meta = self.metadata()
        tokens = _fetch_json(
            meta["token_endpoint"],
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": self.settings.client_id,
                "code_verifier": code_verifier,
            },
            auth=(self.settings.client_id, self.settings.client_secret),
        )
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(id_token, str):
            raise OIDCError("identity platform returned no ID token")
        assert self._jwks is not None
        try:
            signing_key = self._jwks.get_signing_key_from_jwt(id_token)
            algorithm = signing_key.algorithm_name
            if algorithm not in ("RS256", "PS256", "ES256", "EdDSA"):
                raise OIDCError("ID token key has an unaccepted algorithm")
            claims = jwt.decode(
                id_token,
                signing_key.key,
                algorithms=[algorithm],
                audience=self.settings.client_id,
                issuer=meta["issuer"],
                options={"require": ["iss", "sub", "aud", "exp", "iat", "nonce"]},
                leeway=30,
            )
        except OIDCError:
            raise
        except jwt.PyJWTError as exc:
            raise OIDCError(f"ID token rejected: {exc}") from None
        if not secrets.compare_digest(str(claims["nonce"]), nonce):
            raise OIDCError("ID token nonce does not match this sign-in")
        return f"{claims['iss']}|{claims['sub']}"
