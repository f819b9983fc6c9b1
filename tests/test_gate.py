"""A gate: its own store (records before opening, replay guard, anti-passback, capacity), the operator's
shared guard on the in-process state, on Redis and on a Redis Cluster, and records uploaded to the service exactly
once."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from codeservice.state import MemoryState, RedisState
from issuers.keyring import IssuerInfo, Keyring
from issuers.rides import issue_credential, make_ride_code
from issuers.statuslist import sign_status_list
from issuers.trustlist import sign_trust_list
from sdk import Reason, TrustList, Verifier, load_anchor
from sdk.citytime import service_day
from sdk.gate import Gate, GateConfig, GateConfigError, GateStore
from sdk.statuslist import StatusCache
from sdk.upload import Uploader, UploadError
from verifiers.scenes import SCENES
from verifiers.transit import StateSharedGuard

T0 = int(time.time())
TRANSIT = IssuerInfo("city-transit", "City Transit Account Platform", ("ridecred",))


@pytest.fixture
def ring(tmp_path) -> Keyring:
    keyring = Keyring(tmp_path / "keys")
    keyring.initialise([TRANSIT], now=T0 - 7 * 86400)
    return keyring


@pytest.fixture
def make_verifier(ring):
    anchor = load_anchor(ring.anchor_public_pem())
    trust = TrustList.load(sign_trust_list(ring, validity=7 * 86400, now=T0 - 60), anchor, at=T0)
    token = sign_status_list(ring.signer("city-transit"), {}, size=4096, uri="u", ttl=300, validity=86400, now=T0 - 5)

    def make() -> Verifier:
        cache = StatusCache()
        cache.load(token, trust, at=T0)
        return Verifier(trust, status=cache)

    return make


class Phone:
    def __init__(self, ring: Keyring, card: str = "adult", limit: int = 2000) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.account = os.urandom(10)
        self.credential = issue_credential(ring.signer("city-transit"), account=self.account,
                                           device_key=self.key.public_key(), card_type=card, fare_limit=limit,
                                           status_index=int.from_bytes(os.urandom(2), "big") % 4096, validity=60,
                                           lifetime=86400, now=T0 - 600)

    def code(self, at: float = T0) -> str:
        return make_ride_code(self.key, self.credential, now=at)


def metro(gate_id: str, station: str, direction: str) -> GateConfig:
    return GateConfig(gate_id=gate_id, operator="metro", kind="metro", scene=SCENES["metro-gate"], station=station,
                      direction=direction)


def gate(tmp_path, make_verifier, config, shared=None, at=T0, name=None) -> Gate:
    store = GateStore(tmp_path / f"{name or config.gate_id}.sqlite3")
    return Gate(config, make_verifier(), store, shared=shared, clock=lambda: at)


# -- the store -----------------------------------------------------------------------------------------------
def test_every_scan_accepted_or_refused_is_recorded_with_a_unique_id(tmp_path, ring, make_verifier):
    g = gate(tmp_path, make_verifier, metro("g1", "101", "in"))
    phone = Phone(ring)
    code = phone.code()
    decisions = [g.scan(code), g.scan(code), g.scan("https://example.com/not-ours")]
    assert [d.opened for d in decisions] == [True, False, False]
    assert [d.result.reason for d in decisions] == [Reason.OK, Reason.REPLAYED, Reason.NOT_A_CITYCODE]
    records = g.store.records()
    assert [r["record_id"] for r in records] == [d.record["record_id"] for d in decisions]
    assert len({r["record_id"] for r in records}) == 3
    first = records[0]
    assert (first["operator"], first["gate_id"], first["station"], first["direction"], first["kind"]) == (
        "metro", "g1", "101", "in", "ride")
    assert first["account"] == decisions[0].result.subject and first["card_type"] == "adult"
    assert records[2]["account"] is None and records[2]["reason"] == "not_a_citycode"
    assert g.store.counts() == {"pending": 3, "sent": 0, "rejected": 0}


def test_a_record_that_cannot_be_written_leaves_the_code_unspent_and_the_gate_shut(tmp_path, ring, make_verifier):
    g = gate(tmp_path, make_verifier, metro("g1", "101", "in"))
    code = Phone(ring).code()
    real_add = g.store.add_record

    def disk_full(record):
        raise sqlite3.OperationalError("database or disk is full")

    g.store.add_record = disk_full  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        g.scan(code)
    g.store.add_record = real_add  # type: ignore[method-assign]
    assert g.store.records() == []
    assert g.scan(code).opened  # the failed scan spent nothing and let no one in


def test_replay_guard_and_passback_survive_a_gate_restart(tmp_path, ring, make_verifier):
    phone = Phone(ring)
    code = phone.code()
    assert gate(tmp_path, make_verifier, metro("g1", "101", "in")).scan(code).opened
    restarted = gate(tmp_path, make_verifier, metro("g1", "101", "in"))
    assert restarted.scan(code).result.reason is Reason.REPLAYED
    assert restarted.scan(phone.code(T0 + 1)).result.reason is Reason.PASSBACK
    assert len(restarted.store.records()) == 3


# -- anti-passback, capacity, fare limit -------------------------------------------------------------------------
def test_metro_refuses_a_second_entry_without_an_exit(tmp_path, ring, make_verifier):
    phone = Phone(ring)
    entry = gate(tmp_path, make_verifier, metro("in-1", "101", "in"), name="station")
    assert entry.scan(phone.code(T0)).opened
    second = entry.scan(phone.code(T0 + 1))
    assert second.result.reason is Reason.PASSBACK and not second.opened
    exit_gate = Gate(metro("out-1", "101", "out"), make_verifier(), entry.store, clock=lambda: T0 + 2)
    assert exit_gate.scan(phone.code(T0 + 2)).opened
    assert entry.scan(phone.code(T0 + 3)).opened  # after the exit, in again


def test_online_an_exit_at_another_station_lets_the_rider_in_again_anywhere(tmp_path, ring, make_verifier, shared):
    """Each gate has its own store; the operator's guard sees every entry and exit."""
    phone = Phone(ring)
    a = Gate(metro("a", "101", "in"), make_verifier(), GateStore(tmp_path / "a.sqlite3"), shared=shared,
             clock=lambda: T0)
    b = Gate(metro("b", "206", "out"), make_verifier(), GateStore(tmp_path / "b.sqlite3"), shared=shared,
             clock=lambda: T0 + 600)
    c = Gate(metro("c", "102", "in"), make_verifier(), GateStore(tmp_path / "c.sqlite3"), shared=shared,
             clock=lambda: T0 + 900)
    assert a.scan(phone.code(T0)).opened
    assert c.scan(phone.code(T0 + 900)).result.reason is Reason.PASSBACK  # still inside
    assert b.scan(phone.code(T0 + 600)).opened
    assert c.scan(phone.code(T0 + 900)).opened
    b.clock = lambda: T0 + 1100
    assert b.scan(phone.code(T0 + 1100)).opened
    a.clock = lambda: T0 + 1200
    assert a.scan(phone.code(T0 + 1200)).opened  # back where the day started: its own store does not object


def test_offline_a_gate_refuses_only_a_code_handed_back_over_it(tmp_path, ring, make_verifier):
    """Alone, a gate cannot know of an exit elsewhere: it refuses a second entry only within a short window."""
    phone = Phone(ring)
    now = {"t": T0}
    entry = Gate(metro("a", "101", "in"), make_verifier(), GateStore(tmp_path / "a.sqlite3"), clock=lambda: now["t"])
    assert entry.scan(phone.code(T0)).opened
    now["t"] = T0 + 30
    assert entry.scan(phone.code(T0 + 30)).result.reason is Reason.PASSBACK
    now["t"] = T0 + 121
    assert entry.scan(phone.code(T0 + 121)).opened


def test_a_scenic_ticket_is_not_held_to_the_per_ride_limit(tmp_path, ring, make_verifier):
    config = GateConfig(gate_id="t1", operator="laoshan", kind="scenic", scene=SCENES["scenic-gate"],
                        station="taiqing", fares={"adult": 9000, "student": 4500})
    site = gate(tmp_path, make_verifier, config)
    assert site.scan(Phone(ring, limit=2000).code()).opened


def test_a_visitor_turned_away_when_full_has_not_entered_today(tmp_path, ring, make_verifier, shared):
    def turnstile(capacity: int) -> Gate:
        config = GateConfig(gate_id="t1", operator="laoshan", kind="scenic", scene=SCENES["scenic-gate"],
                            station="jufeng", daily_capacity=capacity)
        return Gate(config, make_verifier(), GateStore(tmp_path / "t1.sqlite3"), shared=shared, clock=lambda: T0)

    first, late = Phone(ring), Phone(ring)
    assert turnstile(1).scan(first.code()).opened
    assert turnstile(1).scan(late.code()).result.reason is Reason.CAPACITY_REACHED
    assert turnstile(3).scan(late.code(T0 + 1)).opened  # more places for the day: let in, not "entered already"


def test_exit_without_an_entry_opens_and_clearing_charges_it(tmp_path, ring, make_verifier):
    out = gate(tmp_path, make_verifier, metro("out-1", "105", "out"))
    assert out.scan(Phone(ring).code()).opened


def test_scenic_site_admits_one_entry_a_day_and_stops_at_its_capacity(tmp_path, ring, make_verifier):
    config = GateConfig(gate_id="t1", operator="laoshan", kind="scenic", scene=SCENES["scenic-gate"],
                        station="taiqing", daily_capacity=2)
    site = gate(tmp_path, make_verifier, config)
    first, second, third = Phone(ring), Phone(ring), Phone(ring)
    assert site.scan(first.code()).opened
    assert site.scan(first.code(T0 + 1)).result.reason is Reason.PASSBACK
    assert site.scan(second.code()).opened
    full = site.scan(third.code())
    assert full.result.reason is Reason.CAPACITY_REACHED and service_day(T0) in full.result.detail


def test_fare_above_the_credential_limit_is_refused_and_the_code_stays_unspent(tmp_path, ring, make_verifier):
    config = GateConfig(gate_id="b1", operator="bus", kind="bus", scene=SCENES["bus"], line="301",
                        fares={"adult": 300, "student": 150})
    bus = gate(tmp_path, make_verifier, config)
    low = Phone(ring, limit=200)
    code = low.code()
    refused = bus.scan(code)
    assert refused.result.reason is Reason.FARE_LIMIT_EXCEEDED and "300" in refused.result.detail
    cheaper = GateConfig(gate_id="b1", operator="bus", kind="bus", scene=SCENES["bus"], line="11",
                         fares={"adult": 100})
    assert Gate(cheaper, make_verifier(), bus.store, clock=lambda: T0).scan(code).opened


@pytest.mark.parametrize("bad", [
    dict(kind="metro", station="101"), dict(kind="bus", line=None), dict(kind="ferry", station="x"),
    dict(kind="bus", line="1", fares={"adult": -1}), dict(kind="scenic", station=None),
])
def test_impossible_gate_configurations_are_refused(bad):
    values = {"gate_id": "g", "operator": "op", "scene": SCENES["bus"], **bad}
    with pytest.raises(GateConfigError):
        GateConfig(**values)


# -- the operator's shared guard -------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "redis", "cluster"])
def shared(request):
    if request.param == "memory":
        return StateSharedGuard(MemoryState())
    url = request.getfixturevalue("redis_cluster_url" if request.param == "cluster" else "redis_url")
    return StateSharedGuard(RedisState(url, f"citycode-test:{uuid.uuid4().hex}:"))


def test_same_code_at_a_second_gate_of_the_operator_is_refused_when_online(tmp_path, ring, make_verifier, shared):
    a = gate(tmp_path, make_verifier, metro("a", "101", "in"), shared=shared)
    b = gate(tmp_path, make_verifier, metro("b", "102", "in"), shared=shared)
    code = Phone(ring).code()
    assert a.scan(code).opened
    second = b.scan(code)
    assert second.result.reason is Reason.REPLAYED
    assert second.record["online"] is True


def test_passback_is_shared_by_the_stations_gates_when_online(tmp_path, ring, make_verifier, shared):
    phone = Phone(ring)
    a = gate(tmp_path, make_verifier, metro("a", "101", "in"), shared=shared)
    b = gate(tmp_path, make_verifier, metro("b", "101", "in"), shared=shared)
    assert a.scan(phone.code(T0)).opened
    assert b.scan(phone.code(T0 + 1)).result.reason is Reason.PASSBACK


def test_capacity_is_counted_across_turnstiles_when_online(tmp_path, ring, make_verifier, shared):
    def turnstile(name):
        return gate(tmp_path, make_verifier, GateConfig(gate_id=name, operator="laoshan", kind="scenic",
                                                        scene=SCENES["scenic-gate"], station="jufeng",
                                                        daily_capacity=3), shared=shared)

    east, west = turnstile("east"), turnstile("west")
    opened = [g.scan(Phone(ring).code()).opened for g in (east, west, east, west)]
    assert opened == [True, True, True, False]


def test_without_the_shared_guard_a_gate_decides_alone_and_says_so(tmp_path, ring, make_verifier):
    class Unreachable:
        def __getattr__(self, name):
            def fail(*args):
                raise ConnectionError("no network")
            return fail

    a = gate(tmp_path, make_verifier, metro("a", "101", "in"), shared=Unreachable())
    b = gate(tmp_path, make_verifier, metro("b", "102", "in"), shared=Unreachable())
    code = Phone(ring).code()
    first = a.scan(code)
    assert first.opened and first.record["online"] is False
    assert b.scan(code).opened  # offline, a second gate cannot know: the operator sees both records
    assert a.scan(code).result.reason is Reason.REPLAYED  # its own guard still holds


# -- upload --------------------------------------------------------------------------------------------------
class FakeService:
    """A service that stores by record id, as codeservice does, and can lose its answers."""

    def __init__(self) -> None:
        self.held: dict[str, dict] = {}
        self.lose_answers = 0
        self.posts = 0

    def post(self, url, body, key):
        assert url.endswith("/api/v1/gate/records") and key == "k"
        self.posts += 1
        stored, duplicates = [], []
        for record in body["records"]:
            (duplicates if record["record_id"] in self.held else stored).append(record["record_id"])
            self.held.setdefault(record["record_id"], record)
        if self.lose_answers:
            self.lose_answers -= 1
            raise UploadError("connection reset after the service stored the batch")
        return 200, {"stored": stored, "duplicates": duplicates, "rejected": []}


def test_upload_marks_records_sent_only_on_acknowledgement_and_resends_the_rest(tmp_path, ring, make_verifier):
    g = gate(tmp_path, make_verifier, metro("g1", "101", "in"))
    for i in range(7):
        g.scan(Phone(ring).code(T0 + i))
    service = FakeService()
    service.lose_answers = 1
    uploader = Uploader(g.store, "http://service", "k", batch_size=3, post=service.post)
    lost = uploader.upload()
    assert lost.errors and g.store.counts()["pending"] == 7  # stored there, but the gate never heard
    report = uploader.upload()
    assert report.to_dict() == {"sent": 7, "stored": 4, "duplicates": 3, "rejected": 0, "errors": []}
    assert g.store.counts() == {"pending": 0, "sent": 7, "rejected": 0}
    assert sorted(service.held) == sorted(r["record_id"] for r in g.store.records())
    assert uploader.upload().sent == 0


def test_upload_refuses_an_answer_that_acknowledges_what_was_not_sent(tmp_path, ring, make_verifier):
    g = gate(tmp_path, make_verifier, metro("g1", "101", "in"))
    g.scan(Phone(ring).code())

    def liar(url, body, key):
        return 200, {"stored": ["f" * 32], "duplicates": [], "rejected": []}

    report = Uploader(g.store, "http://service", "k", post=liar).upload()
    assert report.errors and g.store.counts()["pending"] == 1


def test_rejected_records_are_kept_aside_with_the_reason(tmp_path, ring, make_verifier):
    g = gate(tmp_path, make_verifier, metro("g1", "101", "in"))
    g.scan(Phone(ring).code())
    (record,) = g.store.pending()

    def refuse(url, body, key):
        return 200, {"stored": [], "duplicates": [], "rejected": [{"record_id": record["record_id"],
                                                                 "error": "wrong_operator: ..."}]}

    assert Uploader(g.store, "http://service", "k", post=refuse).upload().rejected == 1
    assert g.store.counts() == {"pending": 0, "sent": 0, "rejected": 1}
    assert json.dumps(g.store.records()[0]["upload_state"]) == '"rejected"'
