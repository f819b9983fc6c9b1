"""Daily clearing: thousands of generated trips across a metro, a bus company and a scenic site, every card
type, unpaired taps, fare-limit caps, refused scans and taps of other days; the statements equal a
recomputation written here from the generated journeys (not from the records), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import itertools
import json
import random
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from codeservice.clients.models import ApiClient
from codeservice.clients.service import add_api_client
from codeservice.demo import DEMO_OPERATORS
from codeservice.transit.clearing import csv_rows, run_clearing, trips_of_day
from codeservice.transit.fares import FareError, load_rules
from codeservice.transit.service import ingest_records
from issuers.rides import issue_credential, make_ride_code
from sdk.citytime import service_day
from sdk.claims import CARD_TYPE_IDS, subject_from_text

CST = dt.timezone(dt.timedelta(hours=8))
DISCOUNTS = {"adult": 100, "student": 50, "elderly": 0, "disabled": 0}
METRO = next(o for o in DEMO_OPERATORS if o["id"] == "qd-metro")["fares"]
BUS = next(o for o in DEMO_OPERATORS if o["id"] == "qd-bus")["fares"]
SITES = next(o for o in DEMO_OPERATORS if o["id"] == "laoshan")["fares"]["sites"]


# -- an independent fare model: Floyd-Warshall over the lines, bands read as the brief states them -----------------
def metro_distances() -> dict[tuple[str, str], int]:
    stations = sorted({s for line in METRO["lines"].values() for s, _ in line})
    inf = 10**9
    d = {(a, b): (0 if a == b else inf) for a in stations for b in stations}
    for line in METRO["lines"].values():
        for (a, pa), (b, pb) in itertools.pairwise(line):
            d[a, b] = d[b, a] = min(d[a, b], pb - pa)
    for k in stations:
        for i in stations:
            for j in stations:
                if d[i, k] + d[k, j] < d[i, j]:
                    d[i, j] = d[i, k] + d[k, j]
    return d


DIST = metro_distances()
STATIONS = sorted({a for a, _ in DIST})


def metro_fare(a: str, b: str) -> int:
    for limit, cents in METRO["bands"]:
        if DIST[a, b] <= limit:
            return cents
    return METRO["max_fare"]


def charged(fare: int, card: str, limit: int) -> tuple[int, int]:
    """(payable after the card discount, charged after the fare limit)."""
    payable = fare * DISCOUNTS[card] // 100
    return payable, min(payable, limit)


class Generator:
    """Journeys of one operating day and the records gates would upload for them."""

    def __init__(self, day: dt.date, seed: int, services) -> None:
        self.rng = random.Random(seed)
        self.day = day
        self.services = services
        self.phones: dict[str, tuple] = {}
        self.records: dict[str, list[dict]] = defaultdict(list)
        self.expected: dict[str, Counter] = defaultdict(Counter)
        self.per_account: dict[tuple[str, str], int] = Counter()

    def at(self, minutes: float) -> float:
        start = dt.datetime.combine(self.day, dt.time(4, 0), CST)  # the operating day starts at 04:00
        return (start + dt.timedelta(minutes=minutes)).timestamp()

    def record(self, operator: str, at: float, **fields) -> dict:
        rec = {"record_id": uuid.uuid4().hex, "gate_id": f"{operator}-g{self.rng.randint(1, 40)}", "operator": operator,
               "scene": "x", "station": None, "line": None, "direction": None, "at": round(at, 3), "accepted": True,
               "reason": "ok", "kind": "ride", "account": None, "card_type": None, "fare_limit": None,
               "credential_id": None, "code_id": uuid.uuid4().hex, "entitlement": None, "online": False}
        rec.update(fields)
        if rec["accepted"] and rec["kind"] == "ride":
            rec.update(self.prove(rec, at))
        self.records[operator].append(rec)
        return rec

    def prove(self, rec: dict, at: float) -> dict:
        """The ride code the rider's phone showed, as a gate keeps it in its record."""
        account = rec["account"]
        if account not in self.phones:
            key = ec.generate_private_key(ec.SECP256R1())
            start = dt.datetime.combine(self.day, dt.time(3, 0), CST).timestamp()
            self.phones[account] = (key, issue_credential(
                self.services.keyring.signer("city-transit"), account=subject_from_text(account),
                device_key=key.public_key(), card_type=rec["card_type"], fare_limit=rec["fare_limit"],
                status_index=len(self.phones), validity=60, lifetime=2 * 86400, now=start))
        key, credential = self.phones[account]
        code = make_ride_code(key, credential, now=at)
        proof = self.services.evidence_verifier().evidence(code, at=at)
        assert proof.accepted, proof.detail
        return {"credential_id": proof.credential_id, "code_id": proof.code_id, "code": code}

    def expect(self, operator: str, status: str, fare: int, card: str | None, limit: int | None,
               account: str | None, free: bool = False) -> None:
        e = self.expected[operator]
        if operator == "laoshan":  # a scenic ticket is not a ride: no per-ride limit
            limit = 10**9
        payable, charge = (0, 0) if free or account is None else charged(fare, card or "adult", limit or 0)
        e["trips"] += 1
        e[f"status:{status}"] += 1
        e["fare"] += fare
        e["discount"] += fare - payable
        e["capped"] += payable - charge
        e["charged"] += charge
        if account is not None:
            self.per_account[operator, account] += charge

    def account(self) -> tuple[str, str, int]:
        name = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(16))
        card = self.rng.choice(list(CARD_TYPE_IDS))
        limit = self.rng.choice([2000, 2000, 2000, 350, 150, 0])
        return name, card, limit

    def metro_day(self, riders: int) -> None:
        for _ in range(riders):
            account, card, limit = self.account()
            rider = {"account": account, "card_type": card, "fare_limit": limit}
            t = self.rng.uniform(60, 200)
            for _ in range(self.rng.randint(1, 3)):
                if t > 1340:  # every tap of the rider stays inside the operating day
                    break
                a, b = self.rng.choice(STATIONS), self.rng.choice(STATIONS)
                shape = self.rng.random()
                if shape < 0.08:  # entered, never tapped out: the next tap is more than the longest trip later
                    self.record("qd-metro", self.at(t), station=a, direction="in", **rider)
                    self.expect("qd-metro", "unpaired_entry", METRO["max_fare"], card, limit, account)
                    t += 241
                elif shape < 0.12:  # tapped out without an entry
                    self.record("qd-metro", self.at(t), station=b, direction="out", **rider)
                    self.expect("qd-metro", "unpaired_exit", METRO["max_fare"], card, limit, account)
                else:
                    self.record("qd-metro", self.at(t), station=a, direction="in", **rider)
                    self.record("qd-metro", self.at(t + self.rng.uniform(3, 80)), station=b, direction="out", **rider)
                    self.expect("qd-metro", "paired", metro_fare(a, b), card, limit, account)
                if self.rng.random() < 0.05:  # a refused scan at the gate: not a trip
                    self.record("qd-metro", self.at(t + 1), station=a, direction="in", accepted=False,
                                reason="replayed", **rider)
                t += self.rng.uniform(90, 300)

    def bus_day(self, rides: int) -> None:
        lines = [*BUS["lines"], "999"]  # a line not in the table takes the default fare
        for _ in range(rides):
            account, card, limit = self.account()
            line = self.rng.choice(lines)
            self.record("qd-bus", self.at(self.rng.uniform(0, 1439)), line=line, account=account, card_type=card,
                        fare_limit=limit)
            self.expect("qd-bus", "ride", BUS["lines"].get(line, BUS["default"]), card, limit, account)

    def scenic_day(self, entries: int) -> None:
        for _ in range(entries):
            site = self.rng.choice(sorted(SITES))
            at = self.at(self.rng.uniform(120, 700))
            if self.rng.random() < 0.3:  # an elderly card shown by certificate: free, no account
                self.record("laoshan", at, station=site, kind="cert", entitlement="LNYD:age_over_60")
                self.expect("laoshan", "entitlement", SITES[site]["price"], None, None, None, free=True)
            else:
                account, card, limit = self.account()
                self.record("laoshan", at, station=site, account=account, card_type=card, fare_limit=limit)
                self.expect("laoshan", "entry", SITES[site]["price"], card, limit, account)

    def other_days(self) -> None:
        """Taps at 03:59 of the day after (still this operating day) and at 04:01 (the next one)."""
        account, card, limit = self.account()
        late = dt.datetime.combine(self.day + dt.timedelta(days=1), dt.time(3, 59), CST).timestamp()
        self.record("qd-bus", late, line="1", account=account, card_type=card, fare_limit=limit)
        self.expect("qd-bus", "ride", BUS["lines"]["1"], card, limit, account)
        self.record("qd-bus", late + 120, line="1", account=account, card_type=card, fare_limit=limit)


def transit_key_of_old(services) -> None:
    """The transit platform's key as made ten days ago, so that the generated days' credentials are its own."""
    services.keyring.rotate("city-transit", grace=0, now=dt.datetime.now(CST).timestamp() - 10 * 86400)


@pytest.fixture
def services(web_app):
    services = web_app.extensions["citycode"]
    transit_key_of_old(services)
    return services


def _gate_client(services, operator: str) -> ApiClient:
    with services.db.session() as s:
        client, _key = add_api_client(s, f"gate {operator}", "device", operator=operator)
        s.expunge(client)
        return client


def test_clearing_totals_equal_an_independent_recomputation(services):
    day = dt.date.fromisoformat(service_day(dt.datetime.now(CST).timestamp())) - dt.timedelta(days=2)
    gen = Generator(day, seed=20261128, services=services)
    gen.metro_day(riders=1200)
    gen.bus_day(rides=1500)
    gen.scenic_day(entries=400)
    gen.other_days()
    for operator, records in gen.records.items():
        gate = _gate_client(services, operator)
        random.Random(7).shuffle(records)  # gates upload in any order, some batches twice
        for start in range(0, len(records), 400):
            with services.db.session() as s:
                result = ingest_records(s, gate, records[start:start + 400], dt.datetime.now(CST).timestamp(),
                                        services.evidence_verifier())
                assert not result.rejected, result.rejected[:3]
        with services.db.session() as s:
            again = ingest_records(s, gate, records[:250], dt.datetime.now(CST).timestamp(),
                                   services.evidence_verifier())
            assert len(again.duplicates) == 250 and not again.stored
    total_trips = 0
    for operator, expected in gen.expected.items():
        with services.db.session() as s:
            statement = run_clearing(s, operator, day)
            trips = trips_of_day(s, operator, day)
            exported = "".join(csv_rows(operator, day, trips))
        total_trips += statement.trips
        assert statement.by_status == {k.split(":", 1)[1]: v for k, v in expected.items() if k.startswith("status:")}
        assert statement.trips == expected["trips"]
        assert statement.fare_total == expected["fare"]
        assert statement.discount_total == expected["discount"]
        assert statement.capped_total == expected["capped"]
        assert statement.charged_total == expected["charged"]
        assert statement.by_status == {k.split(":", 1)[1]: v for k, v in expected.items() if k.startswith("status:")}
        assert statement.fare_total == statement.discount_total + statement.capped_total + statement.charged_total
        by_account: Counter = Counter()
        for trip in trips:
            if trip.account is not None:
                by_account[trip.account] += trip.charged
        assert by_account == Counter({a: c for (o, a), c in gen.per_account.items() if o == operator and c}) + \
            Counter()  # zero-charged accounts drop out of both
        assert hashlib.sha256(exported.encode()).hexdigest() == statement.digest
        rows = list(csv.DictReader(io.StringIO(exported)))
        assert sum(int(r["charged_cents"]) for r in rows) == statement.charged_total
        assert sum(v["charged"] for v in statement.by_card_type.values()) == statement.charged_total
    assert total_trips > 4000
    assert gen.expected["qd-metro"]["capped"] > 0 and gen.expected["qd-metro"]["status:unpaired_entry"] > 50


def test_running_clearing_again_replaces_the_day_and_takes_late_records(services):
    day = dt.date.fromisoformat(service_day(dt.datetime.now(CST).timestamp())) - dt.timedelta(days=3)
    gen = Generator(day, seed=5, services=services)
    gen.bus_day(rides=30)
    gate = _gate_client(services, "qd-bus")
    records = gen.records["qd-bus"]
    with services.db.session() as s:
        ingest_records(s, gate, records[:20], dt.datetime.now(CST).timestamp(), services.evidence_verifier())
        first = run_clearing(s, "qd-bus", day).trips
    with services.db.session() as s:
        ingest_records(s, gate, records[20:], dt.datetime.now(CST).timestamp(), services.evidence_verifier())
        second = run_clearing(s, "qd-bus", day)
        assert (first, second.trips, len(trips_of_day(s, "qd-bus", day))) == (20, 30, 30)
        assert second.charged_total == gen.expected["qd-bus"]["charged"]


def test_an_unknown_operator_cannot_be_cleared(services):
    from codeservice.transit.service import TransitNotFound

    with pytest.raises(TransitNotFound), services.db.session() as s:
        run_clearing(s, "nobody", dt.date(2026, 11, 1))


# -- fare rules ------------------------------------------------------------------------------------------------
def test_metro_fare_follows_the_shortest_path_through_a_transfer_station():
    rules = load_rules("metro", METRO, DISCOUNTS)
    assert rules.metro_fare("101", "101") == 200
    assert rules.metro_fare("101", "206") == metro_fare("101", "206") == 400  # 4300 + 6200 metres via 104
    assert rules.metro_fare("101", "nowhere") is None
    assert all(rules.metro_fare(a, b) == metro_fare(a, b) for a in STATIONS for b in STATIONS)


def test_discounts_round_down_to_the_cent_and_the_limit_caps_the_charge():
    rules = load_rules("bus", {"lines": {"7": 333}, "default": 100}, {"student": 50, "elderly": 0})
    assert rules.charge(333, "student", 2000) == (167, 0, 166)
    assert rules.charge(333, "elderly", 2000) == (333, 0, 0)
    assert rules.charge(333, "adult", 200) == (0, 133, 200)
    assert rules.charge(333, None, None) == (0, 0, 333)


@pytest.mark.parametrize(("kind", "fares", "fragment"), [
    ("metro", {"lines": {"1": [["a", 0]]}, "bands": [[1, 1]], "max_fare": 1}, "at least two"),
    ("metro", {"lines": {"1": [["a", 0], ["b", 0]]}, "bands": [[1, 1]], "max_fare": 1}, "grow"),
    ("metro", {"lines": {"1": [["a", 0], ["b", 9]]}, "bands": [[5, 300], [9, 200]], "max_fare": 300}, "less"),
    ("metro", {"lines": {"1": [["a", 0], ["b", 9]]}, "bands": [[5, 300]], "max_fare": 100}, "max_fare"),
    ("metro", {"lines": {"1": [["a", 0], ["b", 9]]}, "bands": [[5, 3.5]], "max_fare": 100}, "whole cents"),
    ("bus", {"lines": {"1": -5}, "default": 1}, "whole cents"),
    ("bus", {"lines": {"1": 5}, "default": 1, "surge": 2}, "unknown"),
    ("scenic", {"sites": {"a": {"capacity": 5}}}, "price"),
    ("scenic", {"sites": {"a": {"price": 5, "capacity": 0}}}, "capacity"),
    ("ferry", {"x": 1}, "kind"),
    ("bus", [], "object"),
])
def test_impossible_fare_rules_are_refused_naming_the_problem(kind, fares, fragment):
    with pytest.raises(FareError, match=fragment):
        load_rules(kind, fares, {})


def test_unknown_card_type_in_discounts_is_refused():
    with pytest.raises(FareError, match="unknown card type"):
        load_rules("bus", {"lines": {"1": 5}, "default": 1}, {"vip": 0})


# -- the command line --------------------------------------------------------------------------------------------
def test_clearing_run_prints_statements_and_writes_the_csv(tmp_path):
    env = {"CITYCODE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    citycode = str(Path(sys.executable).with_name("citycode"))
    assert subprocess.run([citycode, "init"], env=env, capture_output=True, timeout=60).returncode == 0
    from codeservice.config import Settings
    from codeservice.services import Services

    svc = Services(Settings.from_env(env))
    transit_key_of_old(svc)
    day = dt.date.fromisoformat(service_day(dt.datetime.now(CST).timestamp())) - dt.timedelta(days=1)
    gen = Generator(day, seed=1, services=svc)
    gen.metro_day(riders=40)
    gate = _gate_client(svc, "qd-metro")
    with svc.db.session() as s:
        ingest_records(s, gate, gen.records["qd-metro"], dt.datetime.now(CST).timestamp(), svc.evidence_verifier())
    svc.db.dispose()
    out = subprocess.run([citycode, "clearing", "run", "--date", day.isoformat(), "--operator", "qd-metro",
                          "--csv", str(tmp_path / "trips.csv")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    statement = json.loads(out.stdout)
    assert statement["charged_total"] == gen.expected["qd-metro"]["charged"]
    assert hashlib.sha256((tmp_path / "trips.csv").read_bytes()).hexdigest() == statement["digest"]
    every = subprocess.run([citycode, "clearing", "run", "--date", day.isoformat()], env=env, capture_output=True,
                           text=True, timeout=60)
    assert [s["operator"] for s in json.loads(every.stdout)] == ["laoshan", "qd-bus", "qd-metro"]
    for text, error in (("yesterday", "usage"), ("2026-W01-1", "usage"), (service_day(dt.datetime.now(CST).timestamp()),
                                                                              "day_not_over")):
        bad = subprocess.run([citycode, "clearing", "run", "--date", text], env=env, capture_output=True, text=True,
                             timeout=60)
        assert bad.returncode == 2 and json.loads(bad.stderr)["error"] == error, text
