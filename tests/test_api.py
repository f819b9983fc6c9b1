"""The HTTP API on each storage (SQLite, PostgreSQL) and state (in-process, Redis) combination."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from codeservice.identity.residents import list_residents
from sdk import TrustList, Verifier, load_anchor
from tests.conftest import as_verifier, with_cluster


def demo_pid(app) -> str:
    with app.extensions["citycode"].db.session() as s:
        return list_residents(s)[0].pid


def sign_in(client, pid: str) -> None:
    page = client.get("/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = client.post("/signin/dev", data={"csrf": csrf, "resident": pid})
    assert response.status_code == 302 and response.headers["Location"].endswith("/code")


def post_verify(client, body, anonymous: bool = False, **kwargs):
    """POST /api/v1/verify with a verifier's key (the whole result), or *anonymous* (accepted and reason only)."""
    headers = {} if anonymous else as_verifier(client.application)
    return client.post("/api/v1/verify", data=json.dumps(body), content_type="application/json",
                       headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


def test_verify_accepts_a_fresh_code_and_refuses_its_second_bus_scan(app, client):
    code = app.extensions["citycode"].issue_identity_code(demo_pid(app))
    first = post_verify(client, {"code": code, "scene": "bus"})
    assert first.status_code == 200 and first.json["accepted"] and first.json["subject"] == demo_pid(app)
    second = post_verify(client, {"code": code, "scene": "bus"})
    assert second.status_code == 200 and second.json["reason"] == "replayed"
    window = post_verify(client, {"code": code, "scene": "service-window"})
    assert window.json["accepted"]


def test_verify_answers_a_refusal_with_its_reason(client):
    response = post_verify(client, {"code": "https://example.com"})
    assert response.status_code == 200
    assert response.json["accepted"] is False and response.json["reason"] == "not_a_citycode"


@pytest.mark.parametrize(
    ("data", "content_type", "status", "error"),
    [
        ("not json", "application/json", 400, "invalid_json"),
        ("[1, 2]", "application/json", 400, "invalid_body"),
        ("{}", "application/json", 400, "invalid_body"),
        ('{"code": 42}', "application/json", 400, "invalid_body"),
        ('{"code": "x", "scene": 7}', "application/json", 400, "invalid_body"),
        ('{"code": "x", "extra": 1}', "application/json", 400, "invalid_body"),
        ('{"code": "x", "scene": "moon-gate"}', "application/json", 422, "unknown_scene"),
        ('{"code": "x"}', "text/plain", 415, "unsupported_media_type"),
        (b"\xff\xfe\x00", "application/json", 400, "invalid_json"),
        ("x" * 70_000, "application/json", 413, "body_too_large"),
    ],
)
def test_malformed_verify_body_gets_a_4xx_with_a_reason(client, data, content_type, status, error):
    response = client.post("/api/v1/verify", data=data, content_type=content_type)
    assert response.status_code == status
    assert response.json["error"] == error and response.json["message"]


def _chunked(client, path: str, body: bytes, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
    """A body sent as gunicorn hands on a chunked request: no Content-Length, the input terminated."""
    import io

    return client.post(path, input_stream=io.BytesIO(body), content_type=content_type,
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


def test_a_2mb_chunked_body_is_answered_413_like_the_same_body_with_a_length(client):
    body = b'{"code": "' + b"x" * 2_000_000 + b'"}'
    with_length = client.post("/api/v1/verify", data=body, content_type="application/json")
    chunked = _chunked(client, "/api/v1/verify", body)
    assert with_length.status_code == chunked.status_code == 413
    assert chunked.json["error"] == "body_too_large"
    form = _chunked(client, "/signin/dev", b"resident=" + b"x" * 2_000_000, "application/x-www-form-urlencoded")
    assert form.status_code == 413


def test_a_small_chunked_body_is_read_whole(client):
    response = _chunked(client, "/api/v1/verify", b'{"code": "CC1:NOTACODE"}')
    assert response.status_code == 200 and response.json["accepted"] is False


def test_unknown_route_and_wrong_method_answer_json(client):
    assert client.get("/api/v1/nothing").json["error"] == "not_found"
    response = client.get("/api/v1/verify")
    assert response.status_code == 405 and response.json["error"] == "method_not_allowed"


def test_trust_list_endpoint_serves_a_list_that_the_sdk_loads_with_the_anchor(app, client):
    token = client.get("/api/v1/trust-list").get_data(as_text=True)
    anchor = load_anchor(client.get("/api/v1/trust-anchor").data)
    trust = TrustList.load(token, anchor)
    code = app.extensions["citycode"].issue_identity_code(demo_pid(app))
    assert Verifier(trust).verify(code).accepted


def test_my_code_needs_a_signed_in_resident(client):
    response = client.get("/api/v1/me/code")
    assert response.status_code == 401 and response.json["error"] == "unauthorised"
    assert client.get("/code").headers["Location"].endswith("/signin")


def test_signed_in_resident_gets_a_fresh_code_with_an_svg_and_no_caching(app, client):
    pid = demo_pid(app)
    sign_in(client, pid)
    response = client.get("/api/v1/me/code")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["svg"].startswith("data:image/svg+xml;base64,")
    assert body["expires_at"] - body["issued_at"] == 60 and 0 < body["refresh_in"] < 60
    result = post_verify(client, {"code": body["code"]}).json
    assert result["accepted"] and result["subject"] == pid
    assert client.get("/code").status_code == 200


def test_frozen_identity_is_refused_online(app, client):
    pid = demo_pid(app)
    services = app.extensions["citycode"]
    code = services.issue_identity_code(pid)
    with services.db.session() as s:
        from codeservice.identity.residents import get_resident

        get_resident(s, pid).frozen = True
    result = post_verify(client, {"code": code, "scene": "service-window"}).json
    assert result["accepted"] is False and result["reason"] == "suspended" and result["detail"] == "identity frozen"


def test_a_frozen_identity_refused_on_a_bus_does_not_spend_its_code(app, client):
    from codeservice.identity.residents import get_resident

    pid = demo_pid(app)
    services = app.extensions["citycode"]
    code = services.issue_identity_code(pid)
    with services.db.session() as s:
        get_resident(s, pid).frozen = True
    assert post_verify(client, {"code": code, "scene": "bus"}).json["reason"] == "suspended"
    with services.db.session() as s:
        get_resident(s, pid).frozen = False
    assert post_verify(client, {"code": code, "scene": "bus"}).json["accepted"] is True
    assert post_verify(client, {"code": code, "scene": "bus"}).json["reason"] == "replayed"


def test_deeply_nested_json_gets_400_not_500(client):
    for body in ("[" * 5000 + "]" * 5000, '{"code": ' + "[" * 5000 + "]" * 5000 + "}"):
        response = client.post("/api/v1/verify", data=body, content_type="application/json")
        assert response.status_code == 400 and response.json["error"] == "invalid_json"


def test_frozen_resident_gets_no_code(app, client):
    pid = demo_pid(app)
    sign_in(client, pid)
    services = app.extensions["citycode"]
    with services.db.session() as s:
        from codeservice.identity.residents import get_resident

        get_resident(s, pid).frozen = True
    response = client.get("/api/v1/me/code")
    assert response.status_code == 403 and response.json["error"] == "frozen"


def test_dev_sign_in_without_the_form_token_is_refused(app, client):
    response = client.post("/signin/dev", data={"resident": demo_pid(app)})
    assert response.status_code == 400
    assert client.get("/api/v1/me/code").status_code == 401


def test_dev_sign_in_with_an_unknown_resident_shows_an_error(client):
    page = client.get("/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = client.post("/signin/dev", data={"csrf": csrf, "resident": "nobody"}, follow_redirects=True)
    assert "没有这个编号的居民" in response.get_data(as_text=True)  # the pages speak Chinese first


@with_cluster
def test_health_reports_database_and_state(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200 and response.json == {"status": "ok", "database": True, "state": True}


def test_health_reports_an_unreachable_redis_cluster_as_state_false_with_503(tmp_path):
    from codeservice.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path / "home", None, "redis+cluster://127.0.0.1:1,127.0.0.1:2"))
    response = app.test_client().get("/api/v1/health")
    assert response.status_code == 503 and response.json["state"] is False and response.json["database"] is True


def test_pages_carry_security_headers(client):
    response = client.get("/signin")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


# -- several worker processes share one replay guard through Redis ------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_replay_guard_is_shared_by_every_gunicorn_worker(tmp_path, redis_url):
    port = _free_port()
    env = {**os.environ, "CITYCODE_HOME": str(tmp_path / "home"), "CITYCODE_REDIS_URL": redis_url,
           "CITYCODE_REDIS_PREFIX": f"citycode-test:{uuid.uuid4().hex}:"}
    citycode = str(Path(sys.executable).with_name("citycode"))
    subprocess.run([citycode, "init"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([citycode, "serve", "--port", str(port), "--workers", "3", "--threads", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/api/v1/health", timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        pid = json.loads(subprocess.run([citycode, "resident", "add"], env=env, check=True,
                                        capture_output=True, text=True).stdout)["id"]
        codes = subprocess.run([citycode, "code", "issue", pid, "--count", "5"], env=env, check=True,
                               capture_output=True, text=True).stdout.splitlines()

        def scan(code: str) -> bool:
            request = urllib.request.Request(base + "/api/v1/verify", method="POST",
                                             data=json.dumps({"code": code, "scene": "bus"}).encode(),
                                             headers={"Content-Type": "application/json", "Connection": "close"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return bool(json.loads(response.read())["accepted"])

        with ThreadPoolExecutor(max_workers=12) as pool:
            for code in codes:
                accepted = list(pool.map(scan, [code] * 12))
                assert accepted.count(True) == 1, accepted
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
