"""Ride codes made on the phone, verified offline by the SDK: two signatures, times, scene, status, replay.

Real keys throughout: the transit platform's key in a real keyring and trust list, a device key as the
phone's WebCrypto makes it (P-256), codes made exactly as the page makes them (issuers/rides.py).
"""

from __future__ import annotations

import os
import time

import cbor2
import pytest
import qrcode
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from issuers.codes import encode_claims, issue_code, sign_payload, to_text
from issuers.keyring import IssuerInfo, Keyring
from issuers.rides import encode_ride_payload, issue_credential, make_ride_code
from issuers.statuslist import sign_status_list
from issuers.trustlist import sign_trust_list
from sdk import MemoryReplayGuard, Reason, Scene, TrustList, Verifier, base45, cose, load_anchor, subject_to_text
from sdk.claims import CLAIM_CREDENTIAL, CLAIM_CTI, CLAIM_IAT, CLAIM_KIND, CLAIM_RIDE
from sdk.statuslist import INVALID, SUSPENDED, StatusCache
from tests import forge
from verifiers.scenes import SCENES

T0 = int(time.time())
METRO = SCENES["metro-gate"]
WINDOW = SCENES["service-window"]
TRANSIT = IssuerInfo("city-transit", "City Transit Account Platform", ("ridecred",))
IDENTITY = IssuerInfo("city-id", "City Identity Office", ("id",))
INDEX = 4242


@pytest.fixture
def ring(tmp_path) -> Keyring:
    keyring = Keyring(tmp_path / "keys")
    keyring.initialise([IDENTITY, TRANSIT], now=T0 - 7 * 86400)
    return keyring


@pytest.fixture
def trust(ring) -> TrustList:
    return TrustList.load(sign_trust_list(ring, validity=7 * 86400, now=T0 - 60), load_anchor(ring.anchor_public_pem()),
                          at=T0)


def status_cache(ring, trust, statuses=None, *, issued=T0 - 10) -> StatusCache:
    cache = StatusCache()
    token = sign_status_list(ring.signer("city-transit"), statuses or {}, size=16384, uri="https://x/status/transit",
                             ttl=300, validity=86400, now=issued)
    cache.load(token, trust, at=T0)
    return cache


@pytest.fixture
def verifier(ring, trust) -> Verifier:
    return Verifier(trust, leeway=30, status=status_cache(ring, trust),
                    replay_guard=MemoryReplayGuard(clock=lambda: T0))


@pytest.fixture
def device() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


ACCOUNT = os.urandom(10)


def credential(ring, device, *, card="adult", limit=2000, index=INDEX, validity=60, lifetime=86400, now=T0 - 600,
               issuer="city-transit"):
    return issue_credential(ring.signer(issuer), account=ACCOUNT, device_key=device.public_key(), card_type=card,
                            fare_limit=limit, status_index=index, validity=validity, lifetime=lifetime, now=now)


# -- accepted ---------------------------------------------------------------------------------------------------
def test_fresh_ride_code_is_accepted_with_account_card_type_and_limit(ring, verifier, device):
    code = make_ride_code(device, credential(ring, device, card="student", limit=1500), now=T0)
    result = verifier.verify(code, METRO, at=T0 + 5)
    assert result.accepted and result.reason is Reason.OK, result.detail
    assert result.kind == "ride" and result.subject == subject_to_text(ACCOUNT)
    assert (result.card_type, result.fare_limit, result.issuer) == ("student", 1500, "city-transit")
    assert result.issued_at == T0 and result.expires_at == T0 + 60
    assert result.credential_expires_at == T0 - 600 + 86400 and result.status_age == 15


def test_ride_code_fits_qr_version_13_at_error_correction_m(ring, device):
    """The target: version 13 or lower (the national transport code needs 15). Largest values on the wire."""
    cred = credential(ring, device, card="disabled", limit=999_999, index=99_999_999, validity=300,
                      lifetime=30 * 86400)
    code = make_ride_code(device, cred, now=T0)
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(code)
    qr.make(fit=True)
    assert qr.version <= 13, (len(code), qr.version)
    assert set(code[4:]) <= set(base45.ALPHABET)  # alphanumeric mode all the way


def test_two_codes_of_one_phone_are_both_accepted_once(ring, verifier, device):
    cred = credential(ring, device)
    first, second = make_ride_code(device, cred, now=T0), make_ride_code(device, cred, now=T0 + 30)
    assert verifier.verify(first, METRO, at=T0 + 31).accepted
    assert verifier.verify(second, METRO, at=T0 + 31).accepted
    assert verifier.verify(second, METRO, at=T0 + 32).reason is Reason.REPLAYED


# -- time -------------------------------------------------------------------------------------------------------
def test_screenshot_older_than_its_validity_is_rejected_with_code_stale(ring, verifier, device):
    code = make_ride_code(device, credential(ring, device, validity=60), now=T0)
    assert verifier.verify(code, METRO, at=T0 + 60 + 30).accepted  # validity plus the clock leeway
    stale = verifier.verify(code, METRO, at=T0 + 60 + 31)
    assert stale.reason is Reason.CODE_STALE and "valid for 60 s" in stale.detail


def test_code_made_in_the_future_is_not_yet_valid(ring, verifier, device):
    code = make_ride_code(device, credential(ring, device), now=T0 + 120)
    assert verifier.verify(code, METRO, at=T0).reason is Reason.NOT_YET_VALID


def test_expired_authorisation_is_rejected_with_credential_expired(ring, verifier, device):
    cred = credential(ring, device, lifetime=3600, now=T0 - 7200)
    result = verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0)
    assert result.reason is Reason.CREDENTIAL_EXPIRED and result.subject == subject_to_text(ACCOUNT)


def test_code_made_before_its_credential_is_malformed(ring, verifier, device):
    cred = credential(ring, device, now=T0)
    assert verifier.verify(make_ride_code(device, cred, now=T0 - 600), METRO, at=T0).reason is Reason.MALFORMED


# -- signatures and keys ---------------------------------------------------------------------------------------
def _ride_message(code: str) -> list:
    return cbor2.loads(base45.b45decode(code[4:])).value


def _reassemble(protected, payload, signature) -> str:
    return to_text(cose.assemble(protected, payload, signature))


def test_code_signed_by_another_phone_is_rejected_with_bad_signature(ring, verifier, device):
    thief = ec.generate_private_key(ec.SECP256R1())
    code = make_ride_code(thief, credential(ring, device), now=T0)  # the credential certifies *device*
    result = verifier.verify(code, METRO, at=T0)
    assert result.reason is Reason.BAD_SIGNATURE and result.detail == "device signature"


def test_changed_time_in_a_ride_code_breaks_the_device_signature(ring, verifier, device):
    code = make_ride_code(device, credential(ring, device), now=T0 - 500)
    protected, _, payload, signature = _ride_message(code)
    claims = cbor2.loads(payload)
    claims[CLAIM_IAT] = T0  # an old screenshot made to look fresh
    result = verifier.verify(_reassemble(protected, cbor2.dumps(claims, canonical=True), signature), METRO, at=T0)
    assert result.reason is Reason.BAD_SIGNATURE


def test_credential_with_a_raised_fare_limit_is_rejected_with_bad_signature(ring, verifier, device):
    cred = cbor2.loads(credential(ring, device, limit=200))
    claims = cbor2.loads(cred[2])
    claims[CLAIM_RIDE][3] = 100_000
    forged = cbor2.dumps([cred[0], cred[1], cbor2.dumps(claims, canonical=True), cred[3]])
    result = verifier.verify(make_ride_code(device, forged, now=T0), METRO, at=T0)
    assert result.reason is Reason.BAD_SIGNATURE and result.detail == "credential signature"


def test_credential_signed_by_a_key_outside_the_trust_list_is_unknown_key(tmp_path, verifier, device):
    rogue = Keyring(tmp_path / "rogue")
    rogue.initialise([TRANSIT])
    cred = issue_credential(rogue.signer("city-transit"), account=ACCOUNT, device_key=device.public_key(),
                            card_type="adult", fare_limit=2000, status_index=1, validity=60, lifetime=86400, now=T0)
    assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).reason is Reason.UNKNOWN_KEY


def test_credential_signed_by_the_identity_office_is_untrusted_issuer(ring, verifier, device):
    cred = credential(ring, device, issuer="city-id")
    assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).reason is Reason.UNTRUSTED_ISSUER


def test_an_identity_code_in_place_of_a_credential_is_malformed(ring, verifier, device):
    identity = cose.parse(base45.b45decode(issue_code(ring.signer("city-id"), "id", subject=ACCOUNT, lifetime=60,
                                                      now=T0)[4:]))
    inner = cbor2.dumps([identity.protected, {}, identity.payload, identity.signature])
    result = verifier.verify(make_ride_code(device, inner, now=T0), METRO, at=T0)
    assert result.reason is Reason.MALFORMED and "credential" in result.detail


def test_ride_code_signed_with_eddsa_is_unsupported_alg(ring, verifier, device):
    payload = encode_ride_payload(credential(ring, device), generated_at=T0, nonce=os.urandom(8))
    protected = cose.encode_protected(cose.ALG_EDDSA)
    key = ed25519.Ed25519PrivateKey.generate()
    code = _reassemble(protected, payload, key.sign(cose.sig_structure(protected, payload)))
    assert verifier.verify(code, METRO, at=T0).reason is Reason.UNSUPPORTED_ALG


def test_ride_code_carrying_its_own_key_is_malformed(ring, verifier, device):
    payload = encode_ride_payload(credential(ring, device), generated_at=T0, nonce=os.urandom(8))
    protected = cbor2.dumps({1: -7, 33: b"cert"}, canonical=True)
    code = _reassemble(protected, payload, forge.es256(device, cose.sig_structure(protected, payload)))
    assert verifier.verify(code, METRO, at=T0).reason is Reason.MALFORMED


@pytest.mark.parametrize("change", ["extra claim", "short nonce", "no credential", "credential as text"])
def test_ride_payload_not_to_the_specification_is_malformed(ring, verifier, device, change):
    body = {CLAIM_KIND: 3, CLAIM_IAT: T0, CLAIM_CTI: os.urandom(8), CLAIM_CREDENTIAL: credential(ring, device)}
    if change == "extra claim":
        body[2] = ACCOUNT
    elif change == "short nonce":
        body[CLAIM_CTI] = b"abc"
    elif change == "no credential":
        del body[CLAIM_CREDENTIAL]
    else:
        body[CLAIM_CREDENTIAL] = "text"
    payload = cbor2.dumps(body, canonical=True)
    protected = cose.encode_protected(cose.ALG_ES256)
    code = _reassemble(protected, payload, forge.es256(device, cose.sig_structure(protected, payload)))
    assert verifier.verify(code, METRO, at=T0).reason is Reason.MALFORMED


def test_credential_with_a_point_off_the_curve_is_malformed(ring, verifier, device):
    payload = encode_claims("ridecred", issued_at=T0 - 60, expires_at=T0 + 3600, subject=ACCOUNT, extra={
        CLAIM_RIDE: {1: b"\x02" + b"\xff" * 32, 2: 1, 3: 200, 4: 1, 5: 60}})
    cred = cbor2.dumps(cbor2.loads(sign_payload(ring.signer("city-transit"), payload)).value)
    assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).reason is Reason.MALFORMED


# -- scene and status --------------------------------------------------------------------------------------------
def test_ride_code_at_a_scene_that_takes_identity_codes_only_is_wrong_kind(ring, verifier, device):
    code = make_ride_code(device, credential(ring, device), now=T0)
    assert verifier.verify(code, WINDOW, at=T0).reason is Reason.WRONG_KIND


def test_a_credential_shown_without_its_ride_code_is_never_accepted(ring, trust, verifier, device):
    """Gates see credentials inside ride codes; without the device signature one must not pass as a code,
    not even with no scene or at a scene that lists the kind."""
    bare = "CC1:" + base45.b45encode(credential(ring, device))
    anything = Scene("anything", frozenset({"id", "cert", "ride", "ridecred"}), single_use=False)
    for scene in (None, anything):
        result = verifier.verify(bare, scene, at=T0)
        assert not result.accepted and result.reason is Reason.WRONG_KIND, result
        assert result.kind == "ridecred" and "not a code by itself" in result.detail


def test_card_type_the_scene_does_not_take_is_card_not_accepted(ring, verifier, device):
    elderly_only = Scene("elderly-bus", frozenset({"ride"}), single_use=True, card_types=frozenset({"elderly"}))
    adult = make_ride_code(device, credential(ring, device, card="adult"), now=T0)
    elder = make_ride_code(device, credential(ring, device, card="elderly"), now=T0)
    assert verifier.verify(adult, elderly_only, at=T0).reason is Reason.CARD_NOT_ACCEPTED
    assert verifier.verify(elder, elderly_only, at=T0).accepted


@pytest.mark.parametrize(("status", "reason"), [(INVALID, Reason.REVOKED), (SUSPENDED, Reason.SUSPENDED)])
def test_removed_or_frozen_device_is_refused_by_the_status_list(ring, trust, device, status, reason):
    verifier = Verifier(trust, status=status_cache(ring, trust, {INDEX: status}))
    result = verifier.verify(make_ride_code(device, credential(ring, device), now=T0), METRO, at=T0)
    assert result.reason is reason and "account or device" in result.detail


def test_gate_offline_too_long_says_status_stale(ring, trust, device):
    verifier = Verifier(trust, status=status_cache(ring, trust, issued=T0 - 2 * 86400))
    result = verifier.verify(make_ride_code(device, credential(ring, device), now=T0), METRO, at=T0)
    assert result.reason is Reason.STATUS_STALE and result.status_age == 2 * 86400


def test_gate_without_the_transit_status_list_says_status_unknown(trust, ring, device):
    verifier = Verifier(trust)
    result = verifier.verify(make_ride_code(device, credential(ring, device), now=T0), METRO, at=T0)
    assert result.reason is Reason.STATUS_UNKNOWN


def test_refused_ride_code_does_not_spend_its_id(ring, verifier, device):
    code = make_ride_code(device, credential(ring, device), now=T0)
    veto = verifier.verify(code, METRO, at=T0, before_use=lambda r: forge.refusal(r, Reason.FARE_LIMIT_EXCEEDED))
    assert veto.reason is Reason.FARE_LIMIT_EXCEEDED
    assert verifier.verify(code, METRO, at=T0).accepted


# -- arbitrary damage ----------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_mutation_of_a_ride_code_is_accepted(ring, trust, device, data):
    verifier = Verifier(trust, status=status_cache(ring, trust))
    raw = bytearray(base45.b45decode(make_ride_code(device, credential(ring, device), now=T0)[4:]))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    result = verifier.verify("CC1:" + base45.b45encode(bytes(raw)), METRO, at=T0)
    assert not result.accepted


# -- a phone's credential, checked once ------------------------------------------------------------------------------
def test_a_credential_already_checked_spares_its_signature_but_not_the_checks_of_each_code(ring, trust, device):
    """A phone shows the same credential in every ride code of the day: a verifier checks its structure, key and
    signature once (by its exact bytes, under the same trust list). Everything else is still checked per code."""
    verifier = Verifier(trust, leeway=30, status=status_cache(ring, trust),
                        replay_guard=MemoryReplayGuard(clock=lambda: T0))
    checks = []
    check_credential = verifier._check_credential
    verifier._check_credential = lambda *args: checks.append(args[0]) or check_credential(*args)  # type: ignore[method-assign]
    cred = credential(ring, device, lifetime=3600, now=T0 - 600)
    assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).accepted
    assert len(verifier._credentials) == 1

    thief = ec.generate_private_key(ec.SECP256R1())  # the credential copied into another phone's code
    stolen = verifier.verify(make_ride_code(thief, cred, now=T0), METRO, at=T0)
    assert stolen.reason is Reason.BAD_SIGNATURE and stolen.detail == "device signature"
    late = T0 - 600 + 3600 + 31
    assert verifier.verify(make_ride_code(device, cred, now=late), METRO, at=late).reason is Reason.CREDENTIAL_EXPIRED
    after = trust.expires_at
    assert verifier.verify(make_ride_code(device, cred, now=after), METRO, at=after).reason is Reason.TRUST_LIST_EXPIRED
    assert verifier.verify(make_ride_code(device, cred, now=T0), SCENES["bus"], at=T0).accepted  # still good

    verifier.status = status_cache(ring, trust, {INDEX: INVALID})  # revoked since: refused at the next code
    assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).reason is Reason.REVOKED
    assert checks == [cred]  # checked once, at the first code


def test_a_credential_checked_under_one_trust_list_is_checked_again_under_another(ring, trust, device, tmp_path):
    other = Keyring(tmp_path / "other")
    other.initialise([IDENTITY])  # a list without the transit platform's key
    without_transit = TrustList.load(sign_trust_list(other, validity=86400, now=T0 - 60),
                                     load_anchor(other.anchor_public_pem()), at=T0)
    cred = credential(ring, device)
    for swap in ("replace_trust_list", "assign"):
        verifier = Verifier(trust, status=status_cache(ring, trust))
        assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).accepted
        if swap == "replace_trust_list":
            verifier.replace_trust_list(without_transit)
        else:
            verifier.trust = without_transit
        assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).reason is Reason.UNKNOWN_KEY
        verifier.replace_trust_list(trust)
        assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).accepted


def test_the_credential_cache_is_bounded(ring, trust, monkeypatch):
    from sdk import verifier as verifier_module

    monkeypatch.setattr(verifier_module, "CREDENTIAL_CACHE_SIZE", 3)
    verifier = Verifier(trust, status=status_cache(ring, trust))
    phones = [ec.generate_private_key(ec.SECP256R1()) for _ in range(5)]
    creds = [credential(ring, phone) for phone in phones]
    for phone, cred in zip(phones, creds, strict=True):
        assert verifier.verify(make_ride_code(phone, cred, now=T0), METRO, at=T0).accepted
    assert list(verifier._credentials) == creds[2:]  # the oldest went first
    assert verifier.verify(make_ride_code(phones[0], creds[0], now=T0), METRO, at=T0).accepted  # checked again


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_mutation_of_a_ride_code_is_accepted_when_its_credential_was_checked_before(ring, trust, device, data):
    verifier = Verifier(trust, status=status_cache(ring, trust))
    cred = credential(ring, device)
    assert verifier.verify(make_ride_code(device, cred, now=T0), METRO, at=T0).accepted
    raw = bytearray(base45.b45decode(make_ride_code(device, cred, now=T0)[4:]))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    result = verifier.verify("CC1:" + base45.b45encode(bytes(raw)), METRO, at=T0)
    assert not result.accepted
