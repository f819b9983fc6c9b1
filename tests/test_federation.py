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
from tests.conftest import make_settings, throwaway_postgres_database
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
    online = b.app.test_client().post("/api/v1/verify", json={"code": identity, "scene": "service-window"})
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
