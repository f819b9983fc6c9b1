"""Two cities side by side on loopback: a resident of city A rides, shows a certificate and passes a check in
city B; ending the federation refuses them once the lists refresh.

Each city is a real service (werkzeug's threaded HTTP server on 127.0.0.1, a port of its own) with its own
home, keys, trust anchor and database: one pair on SQLite, one pair on PostgreSQL. The cities are joined with
the ``citycode federation`` commands, as an operator would; city B's gate is the SDK alone (sdk.sync over HTTP,
sdk.gate with its own SQLite store), reading real QR images.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.serving import make_server

from codeservice.cli.main import main
from codeservice.transit.clearing import run_clearing
from codeservice.transit.models import Operator, TransitAccount, Trip
from issuers import render
from sdk import Reason, Scene, TrustList, Verifier, load_anchor
from sdk.citytime import service_day
from sdk.federation import Federation, FederationStatement
from sdk.gate import Gate, GateConfig, GateStore
from sdk.keys import b64u_encode, key_id
from sdk.sync import GateSync, http_get
from sdk.upload import Uploader
from tests.conftest import as_verifier, make_settings, throwaway_postgres_database
from verifiers.scenes import SCENES

BUS = SCENES["bus"]
#: A yes/no check at a counter of city B: "is this person 60 or older?", answered by an elderly card (LNYD)
#: that discloses only ``age_over_60``.
OVER_60 = Scene("elder-counter", frozenset({"cert"}), single_use=False, cert_rules={"LNYD": frozenset({"age_over_60"})})


@dataclass
class City:
    name: str
    url: str
    home: Path
    database_url: str
    app: Any

    @property
    def services(self) -> Any:
        return self.app.extensions["citycode"]

    def env(self) -> dict[str, str]:
        return {"CITYCODE_HOME": str(self.home), "CITYCODE_DATABASE_URL": self.database_url,
                "CITYCODE_CITY": self.name, "CITYCODE_PUBLIC_URL": self.url}

    def cli(self, *args: str) -> str:
        """Run ``citycode ARGS`` as this city's operator; its standard output (exit 0 required)."""
        outcome = CliRunner().invoke(main, list(args), env=self.env(), catch_exceptions=False)
        assert outcome.exit_code == 0, (args, outcome.output, outcome.stderr)
        return outcome.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args))

    def get(self, path: str) -> bytes:
        return http_get(f"{self.url}{path}")


@contextlib.contextmanager
def running_city(name: str, home: Path, database_url: str) -> Iterator[City]:
    """A city's service on its own loopback port (the app is made once the port, its public URL, is known)."""
    from codeservice.app import create_app
    from tests.conftest import clear_database

    server = make_server("127.0.0.1", 0, lambda environ, start: [], threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app = create_app(make_settings(home, database_url, city=name, public_url=url))
    server.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield City(name, url, home, database_url, app)
    finally:
        server.shutdown()
        thread.join(10)
        services = app.extensions["citycode"]
        clear_database(services.db.engine)
        services.db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def two_cities(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[City, City]]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            urls = [f"sqlite:///{tmp_path / 'a.sqlite3'}", f"sqlite:///{tmp_path / 'b.sqlite3'}"]
        else:
            urls = [stack.enter_context(throwaway_postgres_database(f"citycode_fed_{c}")) for c in "ab"]
        a = stack.enter_context(running_city("city-a", tmp_path / "a", urls[0]))
        b = stack.enter_context(running_city("city-b", tmp_path / "b", urls[1]))
        yield a, b


def federate(host: City, visitor: City, tmp_path: Path, kinds: str = "id,cert,ride") -> dict[str, Any]:
    """*host* trusts *visitor*: its anchor, received out of band and compared by key id."""
    pem = visitor.get("/api/v1/trust-anchor")
    anchor_file = tmp_path / f"{visitor.name}-anchor.pem"
    anchor_file.write_bytes(pem)
    kid = b64u_encode(key_id(load_anchor(pem)))
    return host.cli_json("federation", "add", "--city", visitor.name, "--name", visitor.name.upper(),
                         "--url", visitor.url, "--anchor", str(anchor_file), "--anchor-kid", kid,
                         "--kinds", kinds, "--valid-until", "2099-12-31")


def clear(city: City, day: str) -> None:
    """The day's clearing of every operator of *city* (``citycode clearing run`` waits for the day's end; a
    test cannot)."""
    with city.services.db.session() as session:
        for operator in session.scalars(select(Operator.id)).all():
            run_clearing(session, operator, dt.date.fromisoformat(day))


def gate_verifier(city: City) -> tuple[Verifier, GateSync]:
    """What a gate of *city* installs: the pinned anchor, the trust list, and its sync (with federation)."""
    anchor = load_anchor(city.get("/api/v1/trust-anchor"))
    verifier = Verifier(TrustList.load(city.get("/api/v1/trust-list"), anchor), federation=Federation())
    return verifier, GateSync(verifier, city.url, anchor)


def test_a_resident_of_city_a_rides_shows_a_certificate_and_passes_a_check_in_city_b_until_the_federation_ends(
        two_cities: tuple[City, City], tmp_path: Path) -> None:
    a, b = two_cities
    added = federate(b, a, tmp_path)
    federate(a, b, tmp_path, kinds="ride")  # A knows B too: to settle with it
    assert added["active"] and added["kinds"] == ["cert", "id", "ride"]
    assert [c["city"] for c in b.cli_json("federation", "list")] == ["city-a"]

    # B's statement, as served and as published, is signed by B's anchor and names A's anchor
    anchor_b = load_anchor(b.get("/api/v1/trust-anchor"))
    statement = FederationStatement.load(b.get("/api/v1/federation"), anchor_b, city="city-b")
    assert statement.cities["city-a"].anchor_kid == key_id(load_anchor(a.get("/api/v1/trust-anchor")))
    published = tmp_path / "federation.jwt"
    assert b.cli_json("federation", "publish", "-o", str(published))["cities"] == 1
    assert FederationStatement.load(published.read_text(), anchor_b).cities.keys() == {"city-a"}

    # a gate of B syncs B's lists, then A's, over HTTP
    verifier, sync = gate_verifier(b)
    report = sync.refresh(force=True)
    assert report.errors == [] and report.federation == "updated"
    assert report.cities["city-a"]["trust_list"] == "updated"
    assert report.cities["city-a"]["status_lists"]["city-transit"] == "updated"  # type: ignore[index]

    # the resident of A: a ride code of A's phone, as a QR image at B's bus reader
    with a.services.db.session() as session:  # a resident of A with an adult card: the fare is charged in full
        pid = session.scalars(select(TransitAccount.resident).where(TransitAccount.card_type == "adult")).first()
    assert pid is not None
    ride_code = a.cli("ride", "codes", pid).strip()
    gate = Gate(GateConfig(gate_id="b-bus-1", operator="qd-bus", kind="bus", scene=BUS, line="1"), verifier,
                GateStore(tmp_path / "gate.sqlite3"))
    decision = gate.scan(render.png(ride_code), image=True)
    assert decision.opened and decision.result.reason is Reason.OK
    assert decision.result.home_city == "city-a" and decision.result.kind == "ride"

    # the gate uploads its record to B, whose service checks the visitor's code against A's keys
    device_key = b.cli_json("client", "add", "--role", "device", "--name", "bus 1", "--operator", "qd-bus")["key"]
    uploaded = Uploader(gate.store, b.url, device_key).upload()
    assert (uploaded.stored, uploaded.rejected, uploaded.errors) == (1, 0, [])
    day = service_day(decision.record["at"])

    # a certificate of A shown at a counter in B: the yes/no check "60 or older?" passes, offline
    elder_card = next(c for c in a.cli_json("cert", "list") if c["type"] == "LNYD")
    shown = a.cli("cert", "show", elder_card["id"], "--fields", "age_over_60").strip()
    counter = Verifier(verifier.trust, federation=verifier.federation, status=verifier.status)
    checked = counter.verify_image(render.png(shown), OVER_60)
    assert checked.accepted and checked.home_city == "city-a" and checked.fields == {"age_over_60": True}

    # B's online verification accepts A's identity code too, naming A
    identity = a.cli("code", "issue", elder_card["holder"]).strip()
    online = b.app.test_client().post("/api/v1/verify", json={"code": identity, "scene": "service-window"},
                                      headers=as_verifier(b.app))  # a stranger is told only yes or no
    assert online.status_code == 200 and online.json["accepted"], online.json
    assert online.json["home_city"] == "city-a"

    # the day is settled between the cities: B clears it, finds the visitor's trip and writes A's visits file;
    # A proves each trip with its own keys and imports it; A's (empty) file goes the other way; the statement,
    # its CSV and SHA-256 are the same on both sides, by CLI and by HTTP
    for city in (a, b):
        clear(city, day)
    visits_for_a, visits_for_b = tmp_path / "visits-for-a.jwt", tmp_path / "visits-for-b.jwt"
    assert b.cli_json("federation", "visits", "--city", "city-a", "--day", day, "-o", str(visits_for_a))[
        "visitor_trips"] == 1
    assert a.cli_json("federation", "visits", "--city", "city-b", "--day", day, "-o", str(visits_for_b))[
        "visitor_trips"] == 0
    assert a.cli_json("federation", "import", str(visits_for_a)) == {
        "host_city": "city-b", "service_day": day, "imported": 1, "refused": []}
    assert b.cli_json("federation", "import", str(visits_for_b))["imported"] == 0
    csv_a, csv_b = tmp_path / "a.csv", tmp_path / "b.csv"
    on_a = a.cli_json("federation", "statement", "--city", "city-b", "--day", day, "--csv", str(csv_a))
    on_b = b.cli_json("federation", "statement", "--city", "city-a", "--day", day, "--csv", str(csv_b))
    assert on_a == on_b and csv_a.read_bytes() == csv_b.read_bytes()
    assert on_a["digest"] == hashlib.sha256(csv_a.read_bytes()).hexdigest()
    with b.services.db.session() as session:
        fare = session.scalars(select(Trip.charged).where(Trip.operator_id == "qd-bus")).one()
    assert fare > 0
    assert on_a["directions"]["city-a_residents_on_city-b"]["charged_cents"] == fare
    assert on_a["directions"]["city-b_residents_on_city-a"]["trips"] == 0
    assert on_a["net"] == {"payer": "city-a", "payee": "city-b", "cents": fare}
    admin = b.cli_json("apikey", "add", "--role", "admin", "--name", "settlement desk")["key"]
    served = b.app.test_client().get(f"/api/v1/federation/settlements/city-a/{day}",
                                     headers={"Authorization": f"Bearer {admin}"})
    assert served.status_code == 200 and served.json["digest"] == on_a["digest"]
    assert served.json["csv"] == csv_b.read_text()

    # B ends the federation; once the gate's lists refresh, A's codes are this city's codes no more
    ended = b.cli_json("federation", "end", "city-a")
    assert not ended["active"] and ended["ended_at"] is not None
    assert sync.refresh(force=True).federation == "updated"
    refused = gate.scan(a.cli("ride", "codes", pid).strip())
    assert not refused.opened and refused.result.reason is Reason.CITY_NOT_ACCEPTED
    assert refused.result.home_city == "city-a"
    assert counter.verify(a.cli("cert", "show", elder_card["id"], "--fields", "age_over_60").strip(),
                          OVER_60).reason is Reason.CITY_NOT_ACCEPTED
    b.services.federated.refresh(force=True)  # the service's own hold refreshes on its own every few seconds
    online = b.app.test_client().post("/api/v1/verify", json={"code": a.cli("code", "issue", elder_card["holder"])
                                                              .strip(), "scene": "service-window"})
    assert online.json["reason"] == "city_not_accepted"
    # and B's own residents are as welcome as ever
    with b.services.db.session() as session:
        own = session.scalars(select(TransitAccount.resident)).first()
    assert own is not None
    assert gate.scan(b.cli("ride", "codes", own).strip()).opened


@pytest.fixture
def sqlite_cities(tmp_path: Path) -> Iterator[tuple[City, City]]:
    with running_city("city-a", tmp_path / "a", f"sqlite:///{tmp_path / 'a.sqlite3'}") as a, \
            running_city("city-b", tmp_path / "b", f"sqlite:///{tmp_path / 'b.sqlite3'}") as b:
        yield a, b


def _account_of(code: str) -> tuple[str, str]:
    """The transit account and card type a ride code names (read without checking: the test builds files)."""
    from sdk import base45
    from sdk.claims import parse_claims, subject_to_text
    from sdk.cose import parse
    from sdk.ride import parse_credential, parse_ride_code

    ride = parse_ride_code(parse(base45.b45decode(code[4:])).payload)
    credential = parse_credential(parse_claims(parse(ride.credential).payload))
    return subject_to_text(credential.account), credential.card_type


def test_a_home_city_imports_only_the_visits_its_own_ride_codes_prove(
        sqlite_cities: tuple[City, City], tmp_path: Path) -> None:
    import jwt as pyjwt

    a, b = sqlite_cities
    federate(a, b, tmp_path, kinds="ride")
    federate(b, a, tmp_path, kinds="ride")
    with a.services.db.session() as session:
        resident_a = session.scalars(select(TransitAccount.resident)).first()
    with b.services.db.session() as session:
        resident_b = session.scalars(select(TransitAccount.resident)).first()
    assert resident_a is not None and resident_b is not None
    code_a, code_b = a.cli("ride", "codes", resident_a).strip(), b.cli("ride", "codes", resident_b).strip()
    account_a, card_a = _account_of(code_a)
    account_b, card_b = _account_of(code_b)
    now = int(time.time())
    day = service_day(now)

    def trip(key: str, account: str, card: str, evidence: list[str]) -> dict[str, Any]:
        return {"trip_key": key, "operator_id": "qd-bus", "status": "ride", "account": account, "card_type": card,
                "origin": None, "destination": None, "line": "1", "started_at": now, "ended_at": None,
                "fare_cents": 200, "charged_cents": 200, "evidence": evidence}

    trips = [trip("1" * 32, account_a, card_a, [code_a]),            # proven: A's own code, its account
             trip("2" * 32, account_b, card_b, [code_b]),            # a code of B's resident, not A's
             trip("3" * 32, account_a[::-1], card_a, [code_a]),      # another account than the code's
             trip("4" * 32, account_a, card_a, [code_a[:-3] + "AAA"])]  # a damaged code
    signer = b.services.keyring.signer("city-transit")

    def signed(claims: dict[str, Any], key: Any = signer.private_key, kid: bytes = signer.kid) -> Path:
        path = tmp_path / f"visits-{uuid.uuid4().hex}.jwt"
        path.write_text(pyjwt.encode(claims, key, algorithm="ES256",
                                     headers={"typ": "visits+jwt", "kid": b64u_encode(kid)}))
        return path

    claims = {"iss": "city-b", "aud": "city-a", "day": day, "iat": now, "exp": now + 3600, "trips": trips}
    imported = a.cli_json("federation", "import", str(signed(claims)))
    assert imported["imported"] == 1
    assert [(r["trip_key"][0], r["error"].split(" (")[0]) for r in imported["refused"]] == [
        ("2", "ride code 1 is not of this city's account " + account_b),
        ("3", "ride code 1 is not of this city's account " + account_a[::-1]),
        ("4", "ride code 1 does not verify here")]
    on_a = a.cli_json("federation", "statement", "--city", "city-b", "--day", day)
    assert on_a["directions"]["city-a_residents_on_city-b"] == {
        "home_city": "city-a", "host_city": "city-b", "trips": 1, "fare_cents": 200, "charged_cents": 200,
        "by_operator": {"qd-bus": {"trips": 1, "charged_cents": 200}}}

    # files that are not the host's, as it signed them for this city, are refused whole (exit 2)
    def refused(path: Path) -> str:
        outcome = CliRunner().invoke(main, ["federation", "import", str(path)], env=a.env())
        assert outcome.exit_code == 2, outcome.output
        return str(json.loads(outcome.stderr)["message"])

    good = signed(claims).read_text()
    head, body, signature = good.split(".")
    altered = tmp_path / "altered.jwt"
    altered.write_text(".".join((head, pyjwt.utils.base64url_encode(  # type: ignore[attr-defined]
        pyjwt.utils.base64url_decode(body).replace(b'"charged_cents":200', b'"charged_cents":900')).decode(),  # type: ignore[attr-defined]
        signature)))
    assert "does not verify" in refused(altered)
    other_key = a.services.keyring.signer("city-transit")
    assert "not signed by the transit platform of city-b" in refused(
        signed(claims, other_key.private_key, other_key.kid))
    assert "does not verify" in refused(signed({**claims, "aud": "city-c"}))
    assert "a city this city does not know" in refused(signed({**claims, "iss": "city-x"}))
