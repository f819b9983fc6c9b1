"""The federation statement (sdk/federation.py) and what a gate's verifier makes of a visitor's code.

Real keys throughout: two cities, each a real keyring with its own anchor, identity office and transit
platform; statements and trust lists signed as the service signs them; codes made as the service and the
phone make them.
"""

from __future__ import annotations

import os
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.rides import issue_credential, make_ride_code
from issuers.statuslist import sign_status_list
from issuers.trustlist import sign_trust_list
from sdk import MemoryReplayGuard, Reason, TrustList, Verifier, load_anchor
from sdk.federation import (
    BAD_SIGNATURE,
    EXPIRED,
    KIND_NOT_ALLOWED,
    MALFORMED,
    WRONG_ANCHOR,
    FederatedCity,
    Federation,
    FederationError,
    FederationStatement,
    sign_statement,
    statement_claims,
)
from sdk.keys import b64u_encode, key_id
from sdk.sync import GateSync
from verifiers.scenes import SCENES

T0 = int(time.time())
IDENTITY = IssuerInfo("city-id", "City Identity Office", ("id",))
TRANSIT = IssuerInfo("city-transit", "City Transit Account Platform", ("ridecred",))
METRO, WINDOW = SCENES["metro-gate"], SCENES["service-window"]
A_URL, B_URL = "http://city-a.example", "http://city-b.example"


def city_ring(path, city: str) -> Keyring:
    ring = Keyring(path, city=city)
    ring.initialise([IDENTITY, TRANSIT], now=T0 - 86400)
    return ring


@pytest.fixture
def ring_a(tmp_path) -> Keyring:
    return city_ring(tmp_path / "a", "city-a")


@pytest.fixture
def ring_b(tmp_path) -> Keyring:
    return city_ring(tmp_path / "b", "city-b")


def anchor_of(ring: Keyring) -> ec.EllipticCurvePublicKey:
    return load_anchor(ring.anchor_public_pem())


def terms(ring: Keyring, *, city="city-a", kinds=("id", "ride"), scenes=(), valid_from=T0 - 3600,
          valid_until=T0 + 86400, url=A_URL) -> FederatedCity:
    anchor = anchor_of(ring)
    return FederatedCity(city=city, name=city.upper(), url=url, anchor=anchor, anchor_kid=key_id(anchor),
                         kinds=frozenset(kinds), scenes=frozenset(scenes), valid_from=valid_from,
                         valid_until=valid_until)


def statement_of(ring_b: Keyring, *cities: FederatedCity, now: float = T0 - 60, validity: int = 86400) -> str:
    """City B's statement, signed by B's anchor."""
    return sign_statement(statement_claims("city-b", cities, now=now, validity=validity), ring_b.anchor_private())


def gate_of_b(ring_a: Keyring, ring_b: Keyring, *cities: FederatedCity, status_a: str | None = None,
              statement_validity: int = 86400) -> Verifier:
    """A gate of city B holding B's trust list, B's statement naming *cities*, and A's trust list."""
    trust_b = TrustList.load(sign_trust_list(ring_b, validity=86400, now=T0 - 60), anchor_of(ring_b), at=T0)
    federation = Federation(FederationStatement.load(statement_of(ring_b, *cities, validity=statement_validity),
                                                     anchor_of(ring_b), at=T0))
    if "city-a" in federation.statement.cities:  # type: ignore[union-attr]
        trust_a = federation.load_trust_list("city-a", sign_trust_list(ring_a, validity=86400, now=T0 - 60), at=T0)
        if status_a is not None:
            federation.status("city-a").load(status_a, trust_a, at=T0)
    return Verifier(trust_b, leeway=30, federation=federation, replay_guard=MemoryReplayGuard(clock=lambda: T0))


def id_code(ring: Keyring, now: float = T0) -> str:
    return issue_code(ring.signer("city-id"), "id", subject=os.urandom(10), lifetime=60, now=now)


def ride_code(ring: Keyring, *, index: int = 7, now: float = T0) -> str:
    device = ec.generate_private_key(ec.SECP256R1())
    credential = issue_credential(ring.signer("city-transit"), account=os.urandom(10), device_key=device.public_key(),
                                  card_type="adult", fare_limit=2000, status_index=index, validity=60,
                                  lifetime=86400, now=now - 600)
    return make_ride_code(device, credential, now=now)


def transit_status(ring: Keyring, statuses: dict[int, int] | None = None) -> str:
    return sign_status_list(ring.signer("city-transit"), statuses or {}, size=1024, uri=f"{A_URL}/status",
                            ttl=300, validity=86400, now=T0 - 10)


# -- the statement itself ------------------------------------------------------------------------------------
def test_a_statement_signed_by_the_citys_anchor_loads_with_each_citys_terms(ring_a, ring_b):
    token = statement_of(ring_b, terms(ring_a, scenes=("metro-gate",)))
    statement = FederationStatement.load(token, anchor_of(ring_b), at=T0, city="city-b")
    entry = statement.cities["city-a"]
    assert statement.city == "city-b" and entry.kinds == {"id", "ride"} and entry.scenes == {"metro-gate"}
    assert entry.anchor_kid == key_id(anchor_of(ring_a)) and entry.url == A_URL
    assert jwt.get_unverified_header(token) == {"typ": "federation+jwt", "alg": "ES256",
                                                "kid": b64u_encode(key_id(anchor_of(ring_b)))}


def test_a_forged_statement_is_refused_as_bad_signature(ring_a, ring_b):
    token = statement_of(ring_b, terms(ring_a, kinds=("id",)))
    head, payload, signature = token.split(".")
    claims = jwt.api_jws.base64url_decode(payload)  # type: ignore[attr-defined]
    forged = claims.replace(b'"kinds":["id"]', b'"kinds":["cert","id","ride"]')
    assert forged != claims
    tampered = ".".join((head, b64u_encode(forged), signature))
    with pytest.raises(FederationError) as refused:
        FederationStatement.load(tampered, anchor_of(ring_b), at=T0)
    assert refused.value.reason == BAD_SIGNATURE


def test_a_statement_signed_by_another_anchor_is_refused_as_wrong_anchor(ring_a, ring_b):
    by_a = sign_statement(statement_claims("city-b", [terms(ring_a)], now=T0, validity=3600), ring_a.anchor_private())
    with pytest.raises(FederationError) as refused:
        FederationStatement.load(by_a, anchor_of(ring_b), at=T0)
    assert refused.value.reason == WRONG_ANCHOR


def test_a_statement_issued_by_another_city_is_refused_as_wrong_anchor(ring_a, ring_b):
    token = sign_statement(statement_claims("city-c", [terms(ring_a)], now=T0, validity=3600), ring_b.anchor_private())
    with pytest.raises(FederationError) as refused:
        FederationStatement.load(token, anchor_of(ring_b), at=T0, city="city-b")
    assert refused.value.reason == WRONG_ANCHOR


def test_an_expired_statement_is_refused_as_expired(ring_a, ring_b):
    token = statement_of(ring_b, terms(ring_a), now=T0 - 7200, validity=3600)
    with pytest.raises(FederationError) as refused:
        FederationStatement.load(token, anchor_of(ring_b), at=T0)
    assert refused.value.reason == EXPIRED


def test_a_statement_federating_a_kind_that_cannot_be_is_refused_as_kind_not_allowed(ring_a, ring_b):
    claims = statement_claims("city-b", [terms(ring_a)], now=T0, validity=3600)
    claims["cities"][0]["kinds"] = ["id", "ridecred"]
    token = sign_statement(claims, ring_b.anchor_private())
    with pytest.raises(FederationError) as refused:
        FederationStatement.load(token, anchor_of(ring_b), at=T0)
    assert refused.value.reason == KIND_NOT_ALLOWED


def test_an_entry_whose_anchor_kid_is_not_its_keys_is_refused_as_malformed(ring_a, ring_b):
    claims = statement_claims("city-b", [terms(ring_a)], now=T0, validity=3600)
    claims["cities"][0]["anchor_kid"] = b64u_encode(key_id(anchor_of(ring_b)))
    with pytest.raises(FederationError) as refused:
        FederationStatement.load(sign_statement(claims, ring_b.anchor_private()), anchor_of(ring_b), at=T0)
    assert refused.value.reason == MALFORMED


def test_a_federated_citys_trust_list_signed_by_another_anchor_than_vouched_for_is_refused(ring_a, ring_b, tmp_path):
    impostor = city_ring(tmp_path / "impostor", "city-a")
    federation = Federation(FederationStatement.load(statement_of(ring_b, terms(ring_a)), anchor_of(ring_b), at=T0))
    with pytest.raises(FederationError) as refused:
        federation.load_trust_list("city-a", sign_trust_list(impostor, validity=3600, now=T0), at=T0)
    assert refused.value.reason == WRONG_ANCHOR
    assert federation.trust_list("city-a") is None


# -- a visitor's code at a gate ----------------------------------------------------------------------------
def test_a_visitors_identity_code_is_accepted_naming_the_home_city(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a))
    result = gate.verify(id_code(ring_a), WINDOW, at=T0)
    assert result.accepted and result.reason is Reason.OK and result.home_city == "city-a"
    own = gate.verify(id_code(ring_b), WINDOW, at=T0)
    assert own.accepted and own.home_city is None


def test_a_visitors_ride_code_is_accepted_against_the_home_citys_status_list(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a), status_a=transit_status(ring_a))
    result = gate.verify(ride_code(ring_a), METRO, at=T0)
    assert result.accepted and result.home_city == "city-a" and result.kind == "ride"


def test_a_visitors_ride_code_revoked_by_the_home_city_is_refused_as_revoked(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a), status_a=transit_status(ring_a, {7: 1}))
    result = gate.verify(ride_code(ring_a, index=7), METRO, at=T0)
    assert result.reason is Reason.REVOKED and result.home_city == "city-a"


def test_a_visitors_ride_code_without_the_home_citys_status_list_is_status_unknown(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a))
    assert gate.verify(ride_code(ring_a), METRO, at=T0).reason is Reason.STATUS_UNKNOWN


def test_a_code_of_a_kind_the_federation_does_not_cover_is_refused_as_city_not_accepted(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a, kinds=("id",)), status_a=transit_status(ring_a))
    result = gate.verify(ride_code(ring_a), METRO, at=T0)
    assert not result.accepted and result.reason is Reason.CITY_NOT_ACCEPTED and result.home_city == "city-a"


def test_a_code_shown_in_a_scene_the_federation_does_not_cover_is_refused_as_city_not_accepted(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a, scenes=("metro-gate",)))
    assert gate.verify(id_code(ring_a), WINDOW, at=T0).reason is Reason.CITY_NOT_ACCEPTED


def test_a_code_after_the_federations_end_is_refused_as_city_not_accepted(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a, valid_until=T0 - 1))
    result = gate.verify(id_code(ring_a), WINDOW, at=T0)
    assert result.reason is Reason.CITY_NOT_ACCEPTED and "ended" in result.detail


def test_a_city_known_for_no_kind_has_its_codes_refused_as_city_not_accepted(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a, kinds=()))
    assert gate.verify(id_code(ring_a), WINDOW, at=T0).reason is Reason.CITY_NOT_ACCEPTED


def test_a_code_of_a_city_no_statement_names_is_refused_as_city_not_accepted_naming_it(ring_a, ring_b, tmp_path):
    stranger = city_ring(tmp_path / "c", "city-c")
    gate = gate_of_b(ring_a, ring_b, terms(ring_a))
    result = gate.verify(id_code(stranger), WINDOW, at=T0)
    assert not result.accepted and result.reason is Reason.CITY_NOT_ACCEPTED
    assert "city-c" in result.detail and result.home_city is None  # a claim, never a verified home city


def test_a_forged_visitors_code_is_refused_as_bad_signature(ring_a, ring_b):
    from sdk import base45, cose

    gate = gate_of_b(ring_a, ring_b, terms(ring_a))
    raw = bytearray(base45.b45decode(id_code(ring_a)[4:]))
    raw[-1] ^= 1
    assert cose.parse(bytes(raw)).kid  # still a well-formed COSE_Sign1
    result = gate.verify("CC1:" + base45.b45encode(bytes(raw)), WINDOW, at=T0)
    assert result.reason is Reason.BAD_SIGNATURE


def test_a_visitors_code_after_the_home_citys_trust_list_expired_is_trust_list_expired(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a, valid_until=T0 + 30 * 86400), statement_validity=30 * 86400)
    later = T0 + 86400 + 60  # A's list (valid a day) has expired; B's own list too, so refresh B's alone
    gate.replace_trust_list(TrustList.load(sign_trust_list(ring_b, validity=86400, now=later - 60),
                                           anchor_of(ring_b), at=later))
    result = gate.verify(id_code(ring_a, now=later), WINDOW, at=later)
    assert result.reason is Reason.TRUST_LIST_EXPIRED and "city-a" in result.detail
    assert gate.verify(id_code(ring_b, now=later), WINDOW, at=later).accepted


def test_a_visitors_code_after_the_statement_expired_is_trust_list_expired(ring_a, ring_b):
    gate = gate_of_b(ring_a, ring_b, terms(ring_a), statement_validity=600)
    result = gate.verify(id_code(ring_a, now=T0 + 900), WINDOW, at=T0 + 900)
    assert result.reason is Reason.TRUST_LIST_EXPIRED and "statement" in result.detail


# -- a gate's sync ---------------------------------------------------------------------------------------------
def test_a_gate_sync_fetches_the_statement_then_the_federated_citys_lists_from_its_url(ring_a, ring_b):
    served = {
        f"{B_URL}/api/v1/trust-list": sign_trust_list(ring_b, validity=86400, now=T0 - 60).encode(),
        f"{B_URL}/api/v1/federation": statement_of(ring_b, terms(ring_a)).encode(),
        f"{A_URL}/api/v1/trust-list": sign_trust_list(ring_a, validity=86400, now=T0 - 60).encode(),
        f"{A_URL}/api/v1/status/city-transit": transit_status(ring_a).encode(),
        f"{B_URL}/api/v1/status/city-transit": transit_status(ring_b).encode(),
    }
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        if url not in served:
            raise OSError(f"no such page {url}")
        return served[url]

    trust_b = TrustList.load(served[f"{B_URL}/api/v1/trust-list"], anchor_of(ring_b), at=T0)
    gate = Verifier(trust_b, federation=Federation())
    report = GateSync(gate, B_URL, anchor_of(ring_b), fetch=fetch, clock=lambda: T0).refresh(force=True)
    assert report.federation == "updated" and report.errors == []
    assert report.cities["city-a"] == {"trust_list": "updated", "status_lists": {"city-transit": "updated"}}
    assert asked.index(f"{B_URL}/api/v1/federation") < asked.index(f"{A_URL}/api/v1/trust-list")
    assert gate.verify(ride_code(ring_a), METRO, at=T0).home_city == "city-a"
    # offline: nothing answers; the gate keeps what it verified and still decides
    served.clear()
    report = GateSync(gate, B_URL, anchor_of(ring_b), fetch=fetch, clock=lambda: T0).refresh(force=True)
    assert report.federation == "kept" and report.cities["city-a"]["trust_list"] == "kept" and report.errors
    assert gate.verify(ride_code(ring_a), METRO, at=T0).accepted


def test_a_gate_sync_refuses_a_statement_not_signed_by_its_pinned_anchor(ring_a, ring_b):
    served = {f"{B_URL}/api/v1/federation": sign_statement(
        statement_claims("city-b", [terms(ring_a)], now=T0, validity=3600), ring_a.anchor_private()).encode()}
    trust_b = TrustList.load(sign_trust_list(ring_b, validity=86400, now=T0 - 60), anchor_of(ring_b), at=T0)
    gate = Verifier(trust_b, federation=Federation())

    def fetch(url: str) -> bytes:
        if url not in served:
            raise OSError(f"no such page {url}")
        return served[url]

    report = GateSync(gate, B_URL, anchor_of(ring_b), fetch=fetch, clock=lambda: T0).refresh()
    assert gate.federation is not None and gate.federation.statement is None
    assert any("federation statement" in e and "anchor" in e for e in report.errors)
    # no statement held: city A is federated with nothing here
    assert gate.verify(id_code(ring_a), WINDOW, at=T0).reason is Reason.CITY_NOT_ACCEPTED


def test_a_statement_issued_a_moment_ahead_of_the_gates_clock_loads_but_not_one_far_ahead(ring_a, ring_b):
    from sdk.federation import NOT_YET_VALID

    soon = statement_of(ring_b, terms(ring_a), now=T0 + 2)
    assert FederationStatement.load(soon, anchor_of(ring_b), at=T0).issued_at == T0 + 2
    with pytest.raises(FederationError) as refused:
        FederationStatement.load(statement_of(ring_b, terms(ring_a), now=T0 + 3600), anchor_of(ring_b), at=T0)
    assert refused.value.reason == NOT_YET_VALID


def test_a_federated_citys_trust_list_signed_a_moment_ahead_loads_but_not_one_far_ahead(ring_a, ring_b):
    federation = Federation(FederationStatement.load(statement_of(ring_b, terms(ring_a)), anchor_of(ring_b), at=T0))
    assert federation.load_trust_list("city-a", sign_trust_list(ring_a, validity=3600, now=T0 + 2), at=T0)
    with pytest.raises(FederationError):
        federation.load_trust_list("city-a", sign_trust_list(ring_a, validity=3600, now=T0 + 3600), at=T0)
