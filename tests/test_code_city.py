"""Every code names its city (the CWT ``iss`` claim), the trust list names the city whose anchor signs it,
and a gate uses both: a code of a city it takes nothing from is refused ``city_not_accepted`` naming that city
(never accepted: the claim only picks the reason), and a code whose ``iss`` disagrees with the city whose list
holds its key is refused ``untrusted_issuer``.

Real keyrings for three cities (ES256 and SM2), trust lists and statements signed as the service signs them,
codes made as the service and the phone make them, and real QR images.
"""

from __future__ import annotations

import os
import time

import cbor2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from issuers import render
from issuers.cards import issue_card_code, new_card_id
from issuers.certificates import issue_show_code
from issuers.codes import cose_sign, encode_claims, issue_code, sign_payload, to_text
from issuers.keyring import IssuerInfo, Keyring, KeyringError
from issuers.rides import compressed_point, issue_credential, make_ride_code
from issuers.trustlist import sign_trust_list, trust_list_claims
from sdk import MemoryReplayGuard, Reason, TrustList, Verifier, base45, cose, load_anchor
from sdk.certid import CertificateId
from sdk.claims import (
    CLAIM_ISS,
    CLAIM_RIDE,
    RIDE_CARD_TYPE,
    RIDE_DEVICE_KEY,
    RIDE_FARE_LIMIT,
    RIDE_STATUS_INDEX,
    RIDE_VALIDITY,
    ClaimsError,
    parse_claims,
)
from sdk.federation import (
    WRONG_ANCHOR,
    FederatedCity,
    Federation,
    FederationError,
    FederationStatement,
    sign_statement,
    statement_claims,
)
from sdk.keys import key_id
from sdk.ride import parse_ride_code
from sdk.trustlist import TrustListError
from verifiers.scenes import SCENES

T0 = int(time.time())
ORG = "11370200004512345X"
IDENTITY = IssuerInfo("city-id", "City Identity Office", ("id",))
TRANSIT = IssuerInfo("city-transit", "City Transit Account Platform", ("ridecred",))
CARDS = IssuerInfo("city-card", "City Card Office", ("card",))
CIVIL = IssuerInfo("civil-affairs", "Civil Affairs Bureau", ("cert",), ("LNYD",), ORG)
WINDOW, METRO = SCENES["service-window"], SCENES["metro-gate"]


@pytest.fixture(params=["ES256", "SM2"])
def alg(request) -> str:
    return request.param


def city_ring(path, city: str, alg: str = "ES256") -> Keyring:
    ring = Keyring(path, city=city, signing_alg=alg)
    ring.initialise([IDENTITY, TRANSIT, CARDS, CIVIL], now=T0 - 86400)
    return ring


@pytest.fixture
def ring_a(tmp_path, alg) -> Keyring:
    return city_ring(tmp_path / "a", "xuzhou", alg)


@pytest.fixture
def ring_b(tmp_path, alg) -> Keyring:
    return city_ring(tmp_path / "b", "suqian", alg)


def anchor_of(ring: Keyring):
    return load_anchor(ring.anchor_public_pem())


def trust_of(ring: Keyring) -> TrustList:
    return TrustList.load(sign_trust_list(ring, validity=86400, now=T0 - 60), anchor_of(ring), at=T0)


def terms(ring: Keyring, city: str = "xuzhou", kinds=("id", "ride")) -> FederatedCity:
    anchor = anchor_of(ring)
    return FederatedCity(city=city, name=city.title(), url=f"http://{city}.example", anchor=anchor,
                         anchor_kid=key_id(anchor), kinds=frozenset(kinds), scenes=frozenset(),
                         valid_from=T0 - 3600, valid_until=T0 + 86400)


def gate(ring_b: Keyring, *federated: tuple[Keyring, FederatedCity]) -> Verifier:
    """A gate of Suqian (ring_b) with its own trust list and, when given, a statement naming *federated*."""
    federation = None
    if federated:
        token = sign_statement(statement_claims("suqian", [t for _, t in federated], now=T0 - 60, validity=86400),
                               ring_b.anchor_private())
        federation = Federation(FederationStatement.load(token, anchor_of(ring_b), at=T0))
        for ring, entry in federated:
            federation.load_trust_list(entry.city, sign_trust_list(ring, validity=86400, now=T0 - 60), at=T0)
    return Verifier(trust_of(ring_b), leeway=30, federation=federation,
                    replay_guard=MemoryReplayGuard(clock=lambda: T0))


def id_code(ring: Keyring) -> str:
    return issue_code(ring.signer("city-id"), "id", subject=os.urandom(10), lifetime=60, now=T0)


def claims_of(text: str) -> dict:
    return cbor2.loads(cose.parse(base45.b45decode(text[4:])).payload)


def credential_of(ring: Keyring, device: ec.EllipticCurvePrivateKey) -> bytes:
    return issue_credential(ring.signer("city-transit"), account=os.urandom(10), device_key=device.public_key(),
                            card_type="adult", fare_limit=2000, status_index=3, validity=60, lifetime=86400,
                            now=T0 - 600)


def forged_iss(ring: Keyring, city: str | None, kind: str = "id") -> str:
    """A code signed by the genuine key of *ring*'s identity office, naming *city* (None: no iss, as before)."""
    payload = encode_claims(kind, issued_at=T0, expires_at=T0 + 60, subject=os.urandom(10), city=city)
    return to_text(sign_payload(ring.signer("city-id"), payload))


# -- every code names its city ---------------------------------------------------------------------------
def test_every_kind_of_code_a_city_issues_names_the_city_in_iss(ring_a):
    cert_id = str(CertificateId.build("LNYD", ORG, "00000001", 1))
    show = issue_show_code(ring_a.signer("civil-affairs"), cert_id=cert_id, type_code="LNYD", holder="company-1",
                           valid_from=T0 - 86400, valid_until=T0 + 86400, status_index=1, disclosed={"age_60": True},
                           lifetime=60, now=T0)
    card = issue_card_code(ring_a.signer("city-card"), subject=os.urandom(10), card_id=new_card_id(), status_index=2,
                           issued_at=T0, expires_at=T0 + 86400 * 365)
    device = ec.generate_private_key(ec.SECP256R1())
    credential = credential_of(ring_a, device)
    ride = make_ride_code(device, credential, now=T0)
    for text in (id_code(ring_a), show, card):
        assert claims_of(text)[CLAIM_ISS] == "xuzhou"
        assert parse_claims(cose.parse(base45.b45decode(text[4:])).payload).city == "xuzhou"
    # A ride code is the phone's: it names its city through the credential the city's platform signed.
    inner = parse_ride_code(cose.parse(base45.b45decode(ride[4:])).payload).credential
    assert cbor2.loads(cose.parse(inner).payload)[CLAIM_ISS] == "xuzhou"


def test_the_trust_list_names_the_city_whose_anchor_signs_it(ring_a):
    token = sign_trust_list(ring_a, validity=3600, now=T0)
    assert jwt.decode(token, options={"verify_signature": False})["city"] == "xuzhou"
    assert TrustList.load(token, anchor_of(ring_a), at=T0).city == "xuzhou"


def test_a_trust_list_from_before_lists_named_their_city_still_loads_without_one(ring_a):
    claims = trust_list_claims(ring_a, now=T0, validity=3600)
    del claims["city"]
    token = jwt.encode(claims, ring_a.anchor_private(), algorithm=ring_a.signer("city-id").alg_name,
                       headers={"typ": "trustlist+jwt"})
    older = TrustList.load(token, anchor_of(ring_a), at=T0)
    assert older.city is None
    assert Verifier(older, leeway=30).verify(id_code(ring_a), WINDOW, at=T0).accepted


@pytest.mark.parametrize("city", ["", "Xuzhou", "xu zhou", "-xuzhou", "a" * 65, 7])
def test_a_trust_list_naming_an_ill_formed_city_is_refused(ring_a, city):
    claims = trust_list_claims(ring_a, now=T0, validity=3600) | {"city": city}
    token = jwt.encode(claims, ring_a.anchor_private(), algorithm=ring_a.signer("city-id").alg_name,
                       headers={"typ": "trustlist+jwt"})
    with pytest.raises(TrustListError, match="city"):
        TrustList.load(token, anchor_of(ring_a), at=T0)


def test_a_keyring_refuses_an_ill_formed_city_id(tmp_path):
    with pytest.raises(KeyringError):
        Keyring(tmp_path / "k", city="Xu Zhou")


@pytest.mark.parametrize("iss", ["", "XUZHOU", "xuzhou.", "a" * 65, 7, b"xuzhou", ["xuzhou"]])
def test_an_ill_formed_iss_is_refused_as_malformed_even_under_a_trusted_key(ring_a, iss):
    claims = claims_of(id_code(ring_a)) | {CLAIM_ISS: iss}
    with pytest.raises(ClaimsError, match="iss"):
        parse_claims(cbor2.dumps(claims, canonical=True))
    text = to_text(sign_payload(ring_a.signer("city-id"), cbor2.dumps(claims, canonical=True)))
    result = Verifier(trust_of(ring_a), leeway=30).verify(text, WINDOW, at=T0)
    assert not result.accepted and result.reason is Reason.MALFORMED


# -- a code of a city the gate takes nothing from ---------------------------------------------------------
def test_a_code_of_a_city_no_statement_lists_is_refused_as_city_not_accepted_naming_the_city(ring_a, ring_b,
                                                                                            tmp_path, alg):
    ring_c = city_ring(tmp_path / "c", "huaibei", alg)
    for verifier in (gate(ring_b), gate(ring_b, (ring_c, terms(ring_c, "huaibei")))):  # no federation; another
        result = verifier.verify(id_code(ring_a), WINDOW, at=T0)
        assert not result.accepted and result.reason is Reason.CITY_NOT_ACCEPTED
        assert "xuzhou" in result.detail and result.home_city is None and result.kind is None


def test_a_printed_card_shown_in_a_city_it_is_not_from_is_refused_naming_its_city(ring_a, ring_b):
    card = issue_card_code(ring_a.signer("city-card"), subject=os.urandom(10), card_id=new_card_id(), status_index=2,
                           issued_at=T0 - 60, expires_at=T0 + 86400)
    result = gate(ring_b).verify(card, SCENES["service-window"], at=T0, id_checked=True)
    assert result.reason is Reason.CITY_NOT_ACCEPTED and "xuzhou" in result.detail


def test_a_ride_code_of_an_unfederated_city_is_refused_as_city_not_accepted_from_a_qr_image(ring_a, ring_b):
    device = ec.generate_private_key(ec.SECP256R1())
    ride = make_ride_code(device, credential_of(ring_a, device), now=T0)
    result = gate(ring_b).verify_image(render.png(ride), METRO, at=T0)
    assert not result.accepted and result.reason is Reason.CITY_NOT_ACCEPTED and "xuzhou" in result.detail


def test_a_code_of_a_city_federated_for_other_kinds_with_an_unknown_key_is_city_not_accepted(ring_a, ring_b,
                                                                                             tmp_path, alg):
    rotated = city_ring(tmp_path / "a2", "xuzhou", alg)  # Xuzhou's, but a key not in the list the gate holds
    verifier = gate(ring_b, (ring_a, terms(ring_a, kinds=("ride",))))
    result = verifier.verify(id_code(rotated), WINDOW, at=T0)
    assert result.reason is Reason.CITY_NOT_ACCEPTED and "id codes of xuzhou" in result.detail


def test_an_unknown_key_of_a_city_federated_for_the_kind_stays_unknown_key(ring_a, ring_b, tmp_path, alg):
    rotated = city_ring(tmp_path / "a2", "xuzhou", alg)
    verifier = gate(ring_b, (ring_a, terms(ring_a)))
    result = verifier.verify(id_code(rotated), WINDOW, at=T0)
    assert result.reason is Reason.UNKNOWN_KEY and "xuzhou" in result.detail
    assert verifier.verify(id_code(ring_a), WINDOW, at=T0).accepted  # Xuzhou's listed key does pass


def test_an_unknown_key_naming_the_gates_own_city_is_unknown_key(ring_b, tmp_path, alg):
    rogue = city_ring(tmp_path / "rogue", "suqian", alg)
    result = gate(ring_b).verify(id_code(rogue), WINDOW, at=T0)
    assert result.reason is Reason.UNKNOWN_KEY


def test_a_foreign_claim_is_not_believed_when_the_gate_does_not_know_its_own_city(ring_a, ring_b):
    claims = trust_list_claims(ring_b, now=T0 - 60, validity=86400)
    del claims["city"]
    token = jwt.encode(claims, ring_b.anchor_private(), algorithm=ring_b.signer("city-id").alg_name,
                       headers={"typ": "trustlist+jwt"})
    older = Verifier(TrustList.load(token, anchor_of(ring_b), at=T0), leeway=30)
    assert older.verify(id_code(ring_a), WINDOW, at=T0).reason is Reason.UNKNOWN_KEY


def test_a_forged_code_claiming_an_unfederated_city_is_never_accepted(ring_b, alg):
    """An attacker's own key, any city claimed: refused whatever the claim says (0 false accepts)."""
    verifier = gate(ring_b)
    rogue = ec.generate_private_key(ec.SECP256R1())
    for city in ("xuzhou", "suqian", None):
        payload = encode_claims("id", issued_at=T0, expires_at=T0 + 60, subject=os.urandom(10), city=city)
        text = to_text(cose_sign(rogue, payload, kid=key_id(rogue.public_key())))
        result = verifier.verify(text, WINDOW, at=T0)
        assert not result.accepted
        assert result.reason is (Reason.CITY_NOT_ACCEPTED if city == "xuzhou" else Reason.UNKNOWN_KEY)


# -- a code cannot claim another city ----------------------------------------------------------------------
def test_a_code_claiming_another_city_under_the_gates_own_key_is_untrusted_issuer(ring_b):
    result = gate(ring_b).verify(forged_iss(ring_b, "xuzhou"), WINDOW, at=T0)
    assert not result.accepted and result.reason is Reason.UNTRUSTED_ISSUER
    assert "xuzhou" in result.detail and "suqian" in result.detail


def test_a_visitors_code_claiming_another_city_than_its_keys_is_untrusted_issuer(ring_a, ring_b):
    verifier = gate(ring_b, (ring_a, terms(ring_a)))
    for claimed in ("suqian", "huaibei"):
        result = verifier.verify(forged_iss(ring_a, claimed), WINDOW, at=T0)
        assert result.reason is Reason.UNTRUSTED_ISSUER and result.home_city == "xuzhou"
    assert verifier.verify(forged_iss(ring_a, "xuzhou"), WINDOW, at=T0).accepted


def test_a_ride_credential_claiming_another_city_is_untrusted_issuer(ring_a, ring_b):
    device = ec.generate_private_key(ec.SECP256R1())
    ride = {RIDE_DEVICE_KEY: compressed_point(device.public_key()), RIDE_CARD_TYPE: 1, RIDE_FARE_LIMIT: 2000,
            RIDE_STATUS_INDEX: 3, RIDE_VALIDITY: 60}
    payload = encode_claims("ridecred", issued_at=T0 - 600, expires_at=T0 + 86400, subject=os.urandom(10),
                            extra={CLAIM_RIDE: ride}, city="suqian")
    credential = sign_payload(ring_a.signer("city-transit"), payload, tagged=False)
    verifier = gate(ring_b, (ring_a, terms(ring_a)))
    result = verifier.verify(make_ride_code(device, credential, now=T0), METRO, at=T0)
    assert result.reason is Reason.UNTRUSTED_ISSUER and "suqian" in result.detail


def test_a_code_from_before_codes_named_their_city_still_verifies(ring_a, ring_b):
    older = forged_iss(ring_b, None)
    assert CLAIM_ISS not in claims_of(older)
    assert gate(ring_b).verify(older, WINDOW, at=T0).accepted
    visitor = gate(ring_b, (ring_a, terms(ring_a))).verify(forged_iss(ring_a, None), WINDOW, at=T0)
    assert visitor.accepted and visitor.home_city == "xuzhou"


def test_a_federated_citys_trust_list_naming_another_city_is_refused_as_wrong_anchor(ring_a, ring_b, tmp_path):
    token = sign_statement(statement_claims("suqian", [terms(ring_a, "huaibei")], now=T0 - 60, validity=86400),
                           ring_b.anchor_private())
    federation = Federation(FederationStatement.load(token, anchor_of(ring_b), at=T0))
    with pytest.raises(FederationError) as refused:  # Xuzhou's list, genuinely signed, under Huaibei's entry
        federation.load_trust_list("huaibei", sign_trust_list(ring_a, validity=3600, now=T0 - 60), at=T0)
    assert refused.value.reason == WRONG_ANCHOR and "xuzhou" in str(refused.value)
    assert federation.trust_list("huaibei") is None
