"""Sign-in through an OpenID Connect identity platform (a real provider served on localhost)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

from codeservice.app import create_app
from tests.conftest import as_verifier, make_settings


class Provider:
    """A small but real OIDC provider: discovery, authorisation with PKCE, token endpoint, JWKS."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = "k1"
        self.codes: dict[str, dict] = {}
        self.subject = "resident-123"
        self.tamper_nonce = False
        self.sign_with: ec.EllipticCurvePrivateKey | None = None
        self.app = Flask("provider")
        self.server = make_server("127.0.0.1", 0, self.app)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        app = self.app

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(issuer=self.issuer, authorization_endpoint=self.issuer + "/authorize",
                           token_endpoint=self.issuer + "/token", jwks_uri=self.issuer + "/jwks")

        @app.get("/jwks")
        def jwks():
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return jsonify(keys=[{**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}])

        @app.get("/authorize")
        def authorize():
            args = request.args
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"challenge": args["code_challenge"], "nonce": args["nonce"],
                                "client_id": args["client_id"], "redirect_uri": args["redirect_uri"]}
            query = urllib.parse.urlencode({"code": code, "state": args["state"]})
            return redirect(f"{args['redirect_uri']}?{query}")

        @app.post("/token")
        def token():
            form = request.form
            grant = self.codes.pop(form["code"], None)
            if grant is None:
                return jsonify(error="invalid_grant"), 400
            challenge = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).rstrip(b"=")
            if challenge.decode() != grant["challenge"] or form["redirect_uri"] != grant["redirect_uri"]:
                return jsonify(error="invalid_grant"), 400
            now = int(time.time())
            claims = {"iss": self.issuer, "sub": self.subject, "aud": grant["client_id"], "iat": now,
                      "exp": now + 300, "nonce": "other" if self.tamper_nonce else grant["nonce"]}
            id_token = jwt.encode(claims, self.sign_with or self.key, algorithm="ES256", headers={"kid": self.kid})
            return jsonify(access_token="x", token_type="Bearer", id_token=id_token)

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    p.start()
    yield p
    p.stop()


@pytest.fixture
def client(tmp_path, provider):
    settings = make_settings(tmp_path, oidc_issuer=provider.issuer, oidc_client_id="citycode-test",
                             oidc_client_secret="s3cret")
    assert settings.dev_signin is False  # production path: no development sign-in
    return create_app(settings).test_client()


def _sign_in(client) -> object:
    start = client.get("/signin/oidc")
    assert start.status_code == 302
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(start.headers["Location"])
        raise AssertionError("the provider should redirect back")
    except urllib.error.HTTPError as answer:  # the 302 back to our callback
        callback = answer.headers["Location"]
    parsed = urllib.parse.urlparse(callback)
    return client.get(parsed.path + "?" + parsed.query)


def _csrf(client) -> str:
    with client.session_transaction() as session:
        return str(session["csrf"])


def test_resident_signs_in_through_the_identity_platform_and_gets_a_code(client):
    assert "用城市身份认证平台登录" in client.get("/signin").get_data(as_text=True)  # Chinese first
    done = _sign_in(client)
    assert done.status_code == 302 and done.headers["Location"].endswith("/code")
    code = client.get("/api/v1/me/code")
    assert code.status_code == 200 and code.json["code"].startswith("CC1:")


def test_the_same_platform_subject_maps_to_the_same_resident(client, tmp_path):
    _sign_in(client)
    first = client.post("/api/v1/verify", json={"code": client.get("/api/v1/me/code").json["code"]},
                        headers=as_verifier(client.application)).json["subject"]
    client.post("/signout", data={"csrf": _csrf(client)})
    assert client.get("/api/v1/me/code").status_code == 401
    _sign_in(client)
    second = client.post("/api/v1/verify", json={"code": client.get("/api/v1/me/code").json["code"]},
                         headers=as_verifier(client.application)).json["subject"]
    assert first == second


def test_id_token_with_a_wrong_nonce_is_refused(client, provider):
    provider.tamper_nonce = True
    done = _sign_in(client)
    assert "error=" in done.headers["Location"]
    assert client.get("/api/v1/me/code").status_code == 401


def test_id_token_signed_by_another_key_is_refused(client, provider):
    provider.sign_with = ec.generate_private_key(ec.SECP256R1())
    done = _sign_in(client)
    assert "error=" in done.headers["Location"]
    assert client.get("/api/v1/me/code").status_code == 401


def test_callback_with_a_forged_state_is_refused(client):
    client.get("/signin/oidc")
    done = client.get("/oidc/callback?code=abc&state=forged")
    assert "error=" in done.headers["Location"]


def test_development_sign_in_is_off_when_the_platform_is_configured(client):
    assert client.post("/signin/dev", data={"resident": "x"}).status_code == 404


def test_unreachable_platform_is_a_clear_error_not_a_500(tmp_path):
    settings = make_settings(tmp_path, oidc_issuer="http://127.0.0.1:1", oidc_client_id="x")
    client = create_app(settings).test_client()
    response = client.get("/signin/oidc")
    assert response.status_code == 302 and "error=" in response.headers["Location"]
