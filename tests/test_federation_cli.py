"""``citycode federation`` refuses bad input with a clear, stable error (exit 2, ``{error, message}``), and
the statement it publishes is what ``GET /api/v1/federation`` serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from codeservice.cli.main import main
from codeservice.config import ConfigError
from sdk import load_anchor
from sdk.federation import FederationStatement
from sdk.keys import b64u_encode, key_id
from tests.conftest import make_settings


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"CITYCODE_HOME": str(tmp_path / "home"), "CITYCODE_CITY": "city-b"}


@pytest.fixture
def anchor_file(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path = tmp_path / "a.pem"
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def run(env: dict[str, str], *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    outcome = CliRunner().invoke(main, ["federation", *args], env=env)
    text = outcome.stdout if outcome.exit_code == 0 else outcome.stderr
    return outcome.exit_code, json.loads(text.strip().splitlines()[-1]) if text.strip() else {}


def add(env: dict[str, str], anchor: Path, **options: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    args = {"city": "city-a", "url": "http://127.0.0.1:9/", "kinds": "id,ride", "valid-until": "2099-01-01",
            **options}
    return run(env, "add", "--anchor", str(anchor), *[x for k, v in args.items() for x in (f"--{k}", v)])


@pytest.mark.parametrize(("options", "message"), [
    ({"city": "City A"}, "city id"),
    ({"city": "city-b"}, "this city itself"),
    ({"url": "ftp://x"}, "http(s) URL"),
    ({"kinds": "id,ridecred"}, "cannot be federated"),
    ({"scenes": "bus stop"}, "scene names"),
    ({"valid-until": "2020-01-01"}, "valid-until must be after valid-from"),
    ({"valid-until": "soon"}, "--valid-until must be a date"),
    ({"kinds": "id,id"}, "given twice"),
])
def test_federation_add_refuses_bad_terms_with_a_message_naming_them(env, anchor_file, options, message):
    code, error = add(env, anchor_file, **options)
    assert code == 2 and message in error["message"] and error["error"] in ("input_error", "usage")
    assert run(env, "list") == (0, [])  # type: ignore[comparison-overlap]


def test_federation_add_refuses_an_anchor_that_is_not_a_public_key_or_not_the_key_id_stated(env, anchor_file,
                                                                                             tmp_path):
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    assert add(env, not_pem)[0] == 2
    code, error = add(env, anchor_file, **{"anchor-kid": "AAAAAAAAAAA"})
    assert code == 2 and "compare it with the other city" in error["message"]
    assert add(env, tmp_path / "missing.pem")[0] == 2


def test_federation_add_refuses_a_key_that_is_no_trust_anchor_and_prints_the_key_id_of_one(env, anchor_file,
                                                                                          tmp_path):
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    path = tmp_path / "ed.pem"
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, error = add(env, path)
    assert code == 2 and "trust anchor" in error["message"]
    anchor = load_anchor(anchor_file.read_bytes())
    code, out = add(env, anchor_file, **{"anchor-kid": b64u_encode(key_id(anchor))})
    assert code == 0 and out["anchor_kid"] == b64u_encode(key_id(anchor)) and out["active"]


def test_federation_end_of_an_unknown_city_is_not_found_and_of_a_known_one_keeps_it_ended(env, anchor_file):
    assert run(env, "end", "city-x")[1]["error"] == "not_found"
    assert add(env, anchor_file)[0] == 0
    code, ended = run(env, "end", "city-a")
    assert code == 0 and not ended["active"] and ended["valid_until"] == ended["ended_at"]
    code, again = run(env, "end", "city-a")
    assert code == 0 and again["ended_at"] == ended["ended_at"]  # ending twice ends once
    code, listed = run(env, "list")
    assert [c["city"] for c in listed] == ["city-a"]  # type: ignore[index]


def test_the_published_statement_is_the_served_one_signed_by_this_citys_anchor(env, anchor_file, tmp_path):
    from codeservice.app import create_app

    assert add(env, anchor_file, scenes="bus,metro-gate")[0] == 0
    assert run(env, "publish", "-o", str(tmp_path / "s.jwt"))[0] == 0
    app = create_app(make_settings(tmp_path / "home", city="city-b"))
    served = app.test_client().get("/api/v1/federation")
    assert served.status_code == 200 and served.mimetype == "application/federation+jwt"
    anchor = load_anchor(app.test_client().get("/api/v1/trust-anchor").data)
    for token in ((tmp_path / "s.jwt").read_text(), served.get_data(as_text=True)):
        statement = FederationStatement.load(token, anchor, city="city-b")
        assert statement.cities["city-a"].scenes == {"bus", "metro-gate"}
        assert statement.cities["city-a"].anchor_kid == key_id(load_anchor(anchor_file.read_bytes()))
    app.extensions["citycode"].db.dispose()


def test_the_settlement_endpoint_needs_an_admin_key_a_known_city_and_a_day(env, anchor_file, tmp_path):
    from codeservice.app import create_app

    assert add(env, anchor_file)[0] == 0
    key = json.loads(CliRunner().invoke(main, ["apikey", "add", "--role", "admin", "--name", "desk"], env=env)
                     .stdout)["key"]
    app = create_app(make_settings(tmp_path / "home", city="city-b"))
    client, auth = app.test_client(), {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/federation/settlements/city-a/2026-12-01").status_code == 401
    unknown = client.get("/api/v1/federation/settlements/city-x/2026-12-01", headers=auth)
    assert unknown.status_code == 404 and unknown.json["error"] == "not_found"
    assert client.get("/api/v1/federation/settlements/city-a/2026-13-01", headers=auth).json["error"] == "invalid_day"
    empty = client.get("/api/v1/federation/settlements/city-a/2026-12-01", headers=auth)
    assert empty.status_code == 200 and empty.json["trips"] == 0 and empty.json["net"] == {
        "payer": None, "payee": None, "cents": 0}
    app.extensions["citycode"].db.dispose()


def test_a_city_id_that_is_not_of_the_form_stops_the_start_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="CITYCODE_CITY"):
        make_settings(tmp_path, city="Xuzhou City")
    assert make_settings(tmp_path).city == "demo-city"


def test_the_services_hold_asks_a_federated_city_that_is_down_once_a_minute_not_at_every_refresh(
        env, anchor_file, tmp_path):
    from codeservice.federation.service import CityLists
    from codeservice.services import Services

    assert add(env, anchor_file)[0] == 0
    services = Services(make_settings(tmp_path / "home", city="city-b"))
    asked: list[str] = []

    def down(url: str) -> bytes:
        asked.append(url)
        raise OSError("connection refused")

    clock = [1_000_000.0]
    lists = CityLists(services.db, city="city-b", validity=3600, fetch=down, every=0, clock=lambda: clock[0])
    report = lists.refresh()
    assert report is not None and asked == ["http://127.0.0.1:9/api/v1/trust-list"] and report.errors
    assert lists.federation.statement is not None and "city-a" in lists.federation.statement.cities
    clock[0] += 30
    assert lists.refresh() is not None and len(asked) == 1
    clock[0] += 31
    lists.refresh()
    assert len(asked) == 2
    lists.refresh(force=True)  # an operator's forced refresh asks at once
    assert len(asked) == 3
    services.db.dispose()
