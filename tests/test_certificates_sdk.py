"""Certificate show codes and status lists in the offline SDK, with real keys, real show codes
(``issuers.certificates.issue_show_code``) and real signed status lists (``issuers.statuslist``).

Departments are issuers trusted for the ``cert`` kind and for their own certificate types only.
Every verification passes an explicit ``at`` so that the clock never decides a test.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import cbor2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from codeservice.demo import DEMO_COMPANY, DEPARTMENTS
from issuers.certificates import issue_show_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.statuslist import sign_status_list
from issuers.trustlist import sign_trust_list
from sdk import MemoryReplayGuard, Reason, Scene, SceneError, TrustList, Verifier, load_anchor, subject_to_text
from sdk.certid import (
    ROOT,
    CertificateId,
    IdentifierError,
    mod37_36_check,
    mod37_36_valid,
    uscc_check,
    validate_uscc,
)
from sdk.claims import (
    CERT_FIELDS,
    CERT_HOLDER,
    CERT_ID,
    CERT_STATUS_INDEX,
    CERT_TYPE,
    CERT_VALID_FROM,
    CERT_VALID_UNTIL,
    CLAIM_CERT,
    CLAIM_CTI,
    CLAIM_EXP,
    CLAIM_IAT,
    CLAIM_ISS,
    CLAIM_KIND,
)
from sdk.keys import b64u_encode
from sdk.statuslist import (
    INVALID,
    MAX_LIST_BYTES,
    STATUS_LIST_TYPE,
    SUSPENDED,
    VALID,
    StatusCache,
    StatusList,
    StatusListError,
    encode_lst,
    pack,
)
from tests import forge
from verifiers.scenes import SCENES

T0 = int(time.time())
DAY = 86400
ORG = {dept: org for dept, _name, org in DEPARTMENTS}
CIVIL = IssuerInfo("civil-affairs", "City Civil Affairs Bureau", ("cert",), ("LNYD",), ORG["civil-affairs"])
DISABLED = IssuerInfo("disabled-federation", "City Disabled Persons' Federation", ("cert",), ("CJRZ",),
                      ORG["disabled-federation"])
MARKET = IssuerInfo("market-regulation", "City Market Regulation Bureau", ("cert",), ("YYZZ", "SPJY"),
                    ORG["market-regulation"])
IDENTITY = IssuerInfo("city-id", "City Identity Office", ("id",))
LIST_SIZE = 1024
INSPECTION = SCENES["inspection"]  # any certificate type, status at most an hour old, re-scannable
SCENIC = SCENES["scenic-elderly"]  # LNYD with age_over_60 shown and true, single use

#: The elderly card as the department holds it; the show codes below disclose parts of it only.
ELDER_RECORD = {"name": "Li Wei", "birth_date": "1952-03-14", "gender": "male"}
ELDER_PID = subject_to_text(bytes.fromhex("5be1c0a4f2d38e71a9b6"))
LICENCE_FIELDS = {"company_name": "Harbour Noodle House Co., Ltd.", "legal_representative": "Wang Fang",
                  "registered_capital_cny": 500000, "address": "18 Zhongshan Road, Shinan District"}


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    keyring = Keyring(tmp_path_factory.mktemp("cert-sdk") / "keys")
    keyring.initialise([IDENTITY, CIVIL, DISABLED, MARKET], now=T0)
    return keyring


@pytest.fixture(scope="module")
def trust(ring: Keyring) -> TrustList:
    token = sign_trust_list(ring, validity=30 * DAY, now=T0)
    return TrustList.load(token, load_anchor(ring.anchor_public_pem()), at=T0)


def status_token(ring: Keyring, issuer: str = "civil-affairs", statuses: dict[int, int] | None = None, *,
                 now: int = T0, ttl: int = 300, validity: int = 30 * DAY, size: int = LIST_SIZE) -> str:
    return sign_status_list(ring.signer(issuer), statuses or {}, size=size, uri=f"https://city.example/status/{issuer}",
                            ttl=ttl, validity=validity, now=now)


@pytest.fixture
def cache(ring: Keyring, trust: TrustList) -> StatusCache:
    """What a gate holds after its last sync at T0: every department's list, everything valid."""
    held = StatusCache()
    for dept in (CIVIL, DISABLED, MARKET):
        held.load(status_token(ring, dept.id), trust, at=T0)
    return held


@pytest.fixture
def verifier(trust: TrustList, cache: StatusCache) -> Verifier:
    # The replay guard forgets by its own clock: pin it to the tests' time, which may lie minutes back
    # by the time a test runs (T0 is taken at import).
    return Verifier(trust, status=cache, leeway=30, replay_guard=MemoryReplayGuard(clock=lambda: T0))


def cert_id(type_code: str, issuer: str, serial: int = 1) -> str:
    return str(CertificateId.build(type_code, ORG[issuer], f"{serial:08d}", 1))


def show(ring: Keyring, disclosed: dict[str, Any] | None = None, *, issuer: str = "civil-affairs",
         type_code: str = "LNYD", holder: str = ELDER_PID, index: int = 7, now: int = T0,
         valid_from: int = T0 - 365 * DAY, valid_until: int = T0 + 3650 * DAY, lifetime: int = 60,
         ident: str | None = None) -> str:
    """A show code as the service signs it when the holder presses "show"."""
    return issue_show_code(
        ring.signer(issuer), cert_id=ident or cert_id(type_code, "civil-affairs" if issuer == "city-id" else issuer),
        type_code=type_code, holder=holder, valid_from=valid_from, valid_until=valid_until, status_index=index,
        disclosed={"age_over_60": True} if disclosed is None else disclosed, lifetime=lifetime, now=now,
    )


def licence(ring: Keyring, disclosed: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return show(ring, LICENCE_FIELDS if disclosed is None else disclosed, issuer="market-regulation",
                type_code="YYZZ", holder=DEMO_COMPANY, **kwargs)


def payload_of(code: str) -> dict[Any, Any]:
    return dict(cbor2.loads(cbor2.loads(forge.raw_of(code)).value[2]))


def rebuild(code: str, change: Callable[[dict[Any, Any]], None]) -> str:
    """The code with its claims decoded, changed by *change*, re-encoded, and the original signature."""
    protected, _unprotected, payload, signature = cbor2.loads(forge.raw_of(code)).value
    claims = dict(cbor2.loads(payload))
    claims[CLAIM_CERT] = dict(claims[CLAIM_CERT])
    claims[CLAIM_CERT][CERT_FIELDS] = dict(claims[CLAIM_CERT][CERT_FIELDS])
    change(claims)
    forged = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cbor2.dumps(claims, canonical=True), signature]))
    return forge.text_of(forged)


def leaves(item: Any) -> Iterator[Any]:
    """Every key and value inside a decoded CBOR item."""
    if isinstance(item, dict):
        for key, value in item.items():
            yield from leaves(key)
            yield from leaves(value)
    elif isinstance(item, (list, tuple)):
        for value in item:
            yield from leaves(value)
    else:
        yield item


# -- accepted ----------------------------------------------------------------------------------
def test_valid_certificate_is_accepted_naming_type_issuer_id_holder_and_only_the_disclosed_fields(ring, verifier):
    disclosed = {"name": "Li Wei", "age_over_60": True}
    result = verifier.verify(show(ring, disclosed), INSPECTION, at=T0 + 5)
    assert result.accepted and result.reason is Reason.OK
    assert result.kind == "cert"
    assert result.cert_type == "LNYD"
    assert result.issuer == "civil-affairs"
    assert result.cert_id == cert_id("LNYD", "civil-affairs")
    assert result.holder == ELDER_PID
    assert result.fields == disclosed
    assert result.subject is None  # a show code names its holder in the certificate, not as a code subject
    assert result.status_age == 5
    data = json.loads(json.dumps(result.to_dict()))
    assert data["fields"] == disclosed and data["cert_type"] == "LNYD" and data["holder"] == ELDER_PID


def test_company_certificate_names_the_company_by_its_credit_code_and_keeps_value_types(ring, verifier):
    result = verifier.verify(licence(ring), INSPECTION, at=T0)
    assert result.accepted, result.detail
    assert result.holder == DEMO_COMPANY and result.cert_type == "YYZZ" and result.issuer == "market-regulation"
    assert result.fields == LICENCE_FIELDS
    assert type(result.fields["registered_capital_cny"]) is int


def test_certificate_with_no_field_disclosed_proves_only_that_it_is_valid(ring, verifier):
    result = verifier.verify(show(ring, {}), INSPECTION, at=T0)
    assert result.accepted and result.fields == {}


def test_show_code_is_short_lived_expired_is_not_certificate_expired(ring, verifier):
    code = show(ring, now=T0, lifetime=60)
    assert verifier.verify(code, INSPECTION, at=T0 + 60 + 30).accepted  # within the leeway
    result = verifier.verify(code, INSPECTION, at=T0 + 60 + 31)
    assert result.reason is Reason.EXPIRED


# -- revocation, suspension and reinstatement seen offline ---------------------------------------
def test_revoked_suspended_and_reinstated_certificates_after_the_gate_refreshes(ring, trust, verifier, cache):
    revoked_idx, suspended_idx, other_idx = 101, 202, 303
    revoked = show(ring, index=revoked_idx, now=T0 + 100, lifetime=3600)
    suspended = show(ring, index=suspended_idx, now=T0 + 100, lifetime=3600)
    other = show(ring, index=other_idx, now=T0 + 100, lifetime=3600)

    # Offline since T0: the gate still holds the list in which all three are valid.
    for code in (revoked, suspended, other):
        assert verifier.verify(code, INSPECTION, at=T0 + 110).accepted

    # The department revokes one certificate and suspends another; the gate syncs.
    second = status_token(ring, statuses={revoked_idx: INVALID, suspended_idx: SUSPENDED}, now=T0 + 200)
    cache.load(second, trust, at=T0 + 210)
    result = verifier.verify(revoked, INSPECTION, at=T0 + 220)
    assert result.reason is Reason.REVOKED and result.cert_id == cert_id("LNYD", "civil-affairs")
    assert result.status_age == 20
    assert verifier.verify(suspended, INSPECTION, at=T0 + 220).reason is Reason.SUSPENDED
    assert verifier.verify(other, INSPECTION, at=T0 + 220).accepted

    # The suspension is lifted; the revocation stays. The gate syncs again.
    third = status_token(ring, statuses={revoked_idx: INVALID}, now=T0 + 300)
    cache.load(third, trust, at=T0 + 310)
    assert verifier.verify(suspended, INSPECTION, at=T0 + 320).accepted
    assert verifier.verify(revoked, INSPECTION, at=T0 + 320).reason is Reason.REVOKED

    # A delayed copy of the second list arrives late: it never replaces the newer one.
    cache.load(second, trust, at=T0 + 330)
    held = cache.get("civil-affairs")
    assert held is not None and held.issued_at == T0 + 300
    assert verifier.verify(suspended, INSPECTION, at=T0 + 340).accepted


def test_a_list_that_cannot_be_used_leaves_the_held_list_in_place(ring, trust, cache):
    before = cache.get("civil-affairs")
    with pytest.raises(StatusListError):
        cache.load(status_token(ring, now=T0 + 10)[:-4] + "AAAA", trust, at=T0 + 10)
    assert cache.get("civil-affairs") is before


# -- nothing undisclosed in the code ---------------------------------------------------------------
def test_undisclosed_fields_cannot_be_recovered_from_the_code(ring, verifier):
    code = show(ring, {"age_over_60": True})
    raw = forge.raw_of(code)
    for secret in ("Li Wei", "Li", "1952-03-14", "1952", "19520314", "male", "birth_date", "gender", "name"):
        assert secret.encode() not in raw, secret
    claims = payload_of(code)
    assert set(claims) == {CLAIM_ISS, CLAIM_KIND, CLAIM_IAT, CLAIM_EXP, CLAIM_CTI, CLAIM_CERT}  # iss: the city only
    body = claims[CLAIM_CERT]
    assert set(body) == {CERT_ID, CERT_TYPE, CERT_HOLDER, CERT_VALID_FROM, CERT_VALID_UNTIL, CERT_STATUS_INDEX,
                         CERT_FIELDS}
    assert body[CERT_FIELDS] == {"age_over_60": True}
    # No digests, salts or counts of what was left out: the only byte strings are the code id and the
    # holder, and every text is metadata or the disclosed name.
    byte_strings = [leaf for leaf in leaves(claims) if isinstance(leaf, bytes)]
    assert sorted(byte_strings) == sorted([claims[CLAIM_CTI], body[CERT_HOLDER]])
    assert len(claims[CLAIM_CTI]) == 8 and len(body[CERT_HOLDER]) == 10
    texts = {leaf for leaf in leaves(claims) if isinstance(leaf, str)}
    assert texts == {body[CERT_ID], "LNYD", "age_over_60", ring.city}
    for name, value in ELDER_RECORD.items():
        for data in (name.encode(), value.encode(), json.dumps([name, value]).encode()):
            for digest in (hashlib.sha256(data).digest(), hashlib.sha1(data).digest(), hashlib.md5(data).digest()):
                assert digest[:8] not in raw
    result = verifier.verify(code, INSPECTION, at=T0)
    assert result.accepted and result.fields == {"age_over_60": True}


def test_the_code_is_the_same_whatever_the_undisclosed_fields_hold(ring):
    """Two holders with the same disclosed predicate: their codes differ only in what they must."""
    from codeservice.certificates.models import Certificate, CertType
    from codeservice.certificates.service import disclosed_values

    lnyd = CertType(code="LNYD", fields=[{"name": n, "label": n, "type": t, "disclosable": True}
                                         for n, t in (("name", "text"), ("birth_date", "date"), ("gender", "text"))],
                    predicates=[{"name": "age_over_60", "field": "birth_date", "op": "age_over", "value": 60,
                                 "label": "60 or older"}])
    today = dt.date.fromtimestamp(T0)
    first = Certificate(fields=ELDER_RECORD)
    second = Certificate(fields={"name": "Zhao Xiuying", "birth_date": "1939-12-01", "gender": "female"})
    shown = [disclosed_values(cert, lnyd, ["age_over_60"], today) for cert in (first, second)]
    assert shown[0] == shown[1] == {"age_over_60": True}
    codes = [payload_of(show(ring, values)) for values in shown]
    for claims in codes:
        claims.pop(CLAIM_CTI)  # the random code id
    assert codes[0] == codes[1]


# -- tampering -------------------------------------------------------------------------------------
def test_re_encoding_without_a_change_keeps_the_signature_valid(ring, verifier):
    code = show(ring, {"name": "Li Wei", "age_over_60": True})
    assert rebuild(code, lambda claims: None) == code
    assert verifier.verify(rebuild(code, lambda claims: None), INSPECTION, at=T0).accepted


def _set_field(name: str, value: Any) -> Callable[[dict[Any, Any]], None]:
    def change(claims: dict[Any, Any]) -> None:
        claims[CLAIM_CERT][CERT_FIELDS][name] = value

    return change


def _set_body(key: int, value: Any) -> Callable[[dict[Any, Any]], None]:
    def change(claims: dict[Any, Any]) -> None:
        claims[CLAIM_CERT][key] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _set_field("name", "Li Wej"),  # one character
        _set_field("birth_date", "1952-03-15"),  # one character
        _set_field("age_over_60", False),
        _set_body(CERT_STATUS_INDEX, 8),
        _set_body(CERT_VALID_UNTIL, T0 + 3651 * DAY),
        _set_body(CERT_TYPE, "LNYE"),
        _set_body(CERT_HOLDER, bytes.fromhex("5be1c0a4f2d38e71a9b7")),
    ],
    ids=["name", "birth-date", "predicate", "status-index", "validity", "type", "holder"],
)
def test_a_disclosed_value_altered_by_one_character_is_rejected_with_bad_signature(ring, verifier, change):
    code = show(ring, {"name": "Li Wei", "birth_date": "1952-03-14", "age_over_60": True})
    result = verifier.verify(rebuild(code, change), INSPECTION, at=T0)
    assert result.reason is Reason.BAD_SIGNATURE


def test_adding_a_field_to_a_code_is_rejected_with_bad_signature(ring, verifier):
    code = show(ring, {"age_over_60": True})
    added = rebuild(code, _set_field("name", "Li Wei"))
    assert verifier.verify(added, INSPECTION, at=T0).reason is Reason.BAD_SIGNATURE


# -- issuers -----------------------------------------------------------------------------------------
def test_certificate_of_one_departments_type_signed_by_another_department_is_untrusted_issuer(ring, verifier):
    forged = show(ring, issuer="market-regulation", type_code="LNYD", ident=cert_id("LNYD", "civil-affairs"))
    result = verifier.verify(forged, INSPECTION, at=T0)
    assert result.reason is Reason.UNTRUSTED_ISSUER
    assert result.issuer == "market-regulation" and "LNYD" in result.detail
    # ... even where the scene would take that type and the department has a status list
    assert verifier.verify(forged, SCENIC, at=T0).reason is Reason.UNTRUSTED_ISSUER


def test_identifier_naming_another_departments_org_code_is_untrusted_issuer(ring, verifier):
    """Civil affairs may sign LNYD, but not an LNYD whose identifier says market regulation issued it."""
    forged = show(ring, issuer="civil-affairs", type_code="LNYD", ident=cert_id("LNYD", "market-regulation"))
    result = verifier.verify(forged, INSPECTION, at=T0)
    assert result.reason is Reason.UNTRUSTED_ISSUER and not result.accepted
    assert result.issuer == "civil-affairs" and result.cert_id == cert_id("LNYD", "market-regulation")
    assert ORG["market-regulation"] in result.detail and ORG["civil-affairs"] in result.detail
    assert verifier.verify(forged, SCENIC, at=T0).reason is Reason.UNTRUSTED_ISSUER
    # the same certificate under civil affairs' own code passes
    assert verifier.verify(show(ring, ident=cert_id("LNYD", "civil-affairs")), INSPECTION, at=T0).accepted


def test_identifier_with_a_made_up_issuer_code_is_untrusted_issuer(ring, verifier):
    made_up = str(CertificateId.build("LNYD", "1137020000451234", "00000001", 1))  # one character short
    assert verifier.verify(show(ring, ident=made_up), INSPECTION, at=T0).reason is Reason.UNTRUSTED_ISSUER


def test_trust_list_carries_each_departments_org_code_and_none_for_other_issuers(trust):
    published = {key.issuer: key.org_code for key in trust.keys.values()}
    assert published == {"civil-affairs": ORG["civil-affairs"], "disabled-federation": ORG["disabled-federation"],
                         "market-regulation": ORG["market-regulation"], "city-id": None}


def test_certificate_key_without_an_org_code_fails_closed_as_untrusted_issuer(tmp_path):
    """A trust list from before org codes (or a department whose code was never recorded): nothing to check the
    identifier against, so no certificate of that key is accepted."""
    bare = Keyring(tmp_path / "keys")
    bare.initialise([IssuerInfo("civil-affairs", "City Civil Affairs Bureau", ("cert",), ("LNYD",))], now=T0)
    listed = TrustList.load(sign_trust_list(bare, validity=DAY, now=T0), load_anchor(bare.anchor_public_pem()), at=T0)
    assert all(key.org_code is None for key in listed.keys.values())
    held = StatusCache()
    held.load(status_token(bare), listed, at=T0)
    result = Verifier(listed, status=held).verify(show(bare), INSPECTION, at=T0)
    assert result.reason is Reason.UNTRUSTED_ISSUER and "org_code" in result.detail
    bare.set_org_code("civil-affairs", ORG["civil-affairs"])  # recorded: the next list lets it through
    healed = TrustList.load(sign_trust_list(bare, validity=DAY, now=T0), load_anchor(bare.anchor_public_pem()), at=T0)
    assert Verifier(healed, status=held).verify(show(bare), INSPECTION, at=T0).accepted


@pytest.mark.parametrize("org_code", [12, "", "11370200004512345p", "1137-0200", "A" * 33, ["X"]])
def test_trust_list_entry_with_an_ill_formed_org_code_is_refused(ring, org_code):
    from issuers.trustlist import trust_list_claims
    from sdk.trustlist import TRUST_LIST_TYPE, TrustListError

    claims = trust_list_claims(ring, now=T0, validity=DAY)
    entry = next(k for k in claims["keys"] if k["issuer"] == "civil-affairs")
    assert entry["org_code"] == ORG["civil-affairs"]
    entry["org_code"] = org_code
    token = jwt.encode(claims, ring.anchor_private(), algorithm="ES256", headers={"typ": TRUST_LIST_TYPE})
    with pytest.raises(TrustListError, match="org_code"):
        TrustList.load(token, load_anchor(ring.anchor_public_pem()), at=T0)


def test_certificate_signed_by_a_key_not_trusted_for_certificates_is_untrusted_issuer(ring, verifier):
    forged = show(ring, issuer="city-id")
    assert verifier.verify(forged, INSPECTION, at=T0).reason is Reason.UNTRUSTED_ISSUER
    assert verifier.verify(forged, at=T0).reason is Reason.UNTRUSTED_ISSUER


def test_certificate_signed_by_a_department_outside_the_trust_list_is_unknown_key(tmp_path, verifier):
    impostor = Keyring(tmp_path / "impostor")
    impostor.initialise([CIVIL], now=T0)
    assert verifier.verify(show(impostor), INSPECTION, at=T0).reason is Reason.UNKNOWN_KEY


# -- status: unknown and stale -------------------------------------------------------------------------
@pytest.mark.parametrize("index", [LIST_SIZE, LIST_SIZE + 1, 5000, 2**40])
def test_status_index_outside_the_list_is_status_unknown(ring, verifier, index):
    result = verifier.verify(show(ring, index=index), INSPECTION, at=T0)
    assert result.reason is Reason.STATUS_UNKNOWN and "outside" in result.detail
    assert verifier.verify(show(ring, index=LIST_SIZE - 1), INSPECTION, at=T0).accepted  # the last entry


def test_no_status_list_for_the_issuer_is_status_unknown(ring, trust):
    bare = Verifier(trust, status=StatusCache(), leeway=30)
    result = bare.verify(show(ring), INSPECTION, at=T0)
    assert result.reason is Reason.STATUS_UNKNOWN and result.status_age is None
    assert "civil-affairs" in result.detail


def test_status_list_older_than_the_scene_allows_is_status_stale_with_its_age(ring, trust, verifier, cache):
    assert INSPECTION.max_status_age == 3600
    fresh_enough = verifier.verify(show(ring, now=T0 + 3600), INSPECTION, at=T0 + 3600)
    assert fresh_enough.accepted and fresh_enough.status_age == 3600
    result = verifier.verify(show(ring, now=T0 + 3601), INSPECTION, at=T0 + 3601)
    assert result.reason is Reason.STATUS_STALE
    assert result.status_age == 3601 and "3601 s" in result.detail and "3600" in result.detail
    # Back online: a refreshed list makes the same gate trust status again.
    cache.load(status_token(ring, now=T0 + 3650), trust, at=T0 + 3650)
    assert verifier.verify(show(ring, now=T0 + 3660), INSPECTION, at=T0 + 3660).accepted


def test_expired_status_list_is_status_stale_whatever_the_scene_allows(ring, trust):
    held = StatusCache()
    held.load(status_token(ring, now=T0, validity=600), trust, at=T0)
    gate = Verifier(trust, status=held, leeway=30)
    lenient = Scene("lenient", frozenset({"cert"}), single_use=False, max_status_age=30 * DAY)
    assert gate.verify(show(ring, now=T0 + 599), lenient, at=T0 + 599).accepted
    result = gate.verify(show(ring, now=T0 + 600), lenient, at=T0 + 600)
    assert result.reason is Reason.STATUS_STALE and "expired" in result.detail and result.status_age == 600


def test_status_age_policy_is_configurable_per_scene(ring, verifier):
    at = T0 + 2 * DAY
    code = show(ring, now=at)
    weekly = Scene.from_dict({"name": "remote-park", "kinds": ["cert"], "single_use": False,
                              "max_status_age": 7 * DAY})
    assert weekly.max_status_age == 7 * DAY and Scene.from_dict(weekly.to_dict()) == weekly
    assert verifier.verify(code, weekly, at=at).accepted
    assert verifier.verify(code, INSPECTION, at=at).reason is Reason.STATUS_STALE  # 1 hour
    assert verifier.verify(code, at=at).reason is Reason.STATUS_STALE  # no scene: 24 hours
    assert Scene("s", frozenset({"cert"}), single_use=False).max_status_age == DAY
    with pytest.raises(SceneError):
        Scene("s", frozenset({"cert"}), single_use=False, max_status_age=0)
    with pytest.raises(SceneError):
        Scene.from_dict({"name": "s", "kinds": ["cert"], "max_status_age": "a week"})


# -- validity dates and scene rules -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("valid_from", "valid_until"),
    [(T0 - 3650 * DAY, T0 - DAY), (T0 - 3650 * DAY, T0 - 31), (T0 + 31, T0 + 3650 * DAY), (T0 + DAY, T0 + 2 * DAY)],
    ids=["ended-yesterday", "ended-just-now", "starts-soon", "starts-tomorrow"],
)
def test_certificate_outside_its_validity_dates_is_certificate_expired(ring, verifier, valid_from, valid_until):
    result = verifier.verify(show(ring, valid_from=valid_from, valid_until=valid_until), INSPECTION, at=T0)
    assert result.reason is Reason.CERTIFICATE_EXPIRED and result.cert_type == "LNYD"


def test_certificate_validity_dates_take_the_clock_leeway(ring, verifier):
    assert verifier.verify(show(ring, valid_until=T0 - 30), INSPECTION, at=T0).accepted
    assert verifier.verify(show(ring, valid_from=T0 + 30), INSPECTION, at=T0).accepted


def test_scene_rules_need_the_predicate_shown_and_true(ring, verifier):
    missing = verifier.verify(show(ring, {"name": "Li Wei"}), SCENIC, at=T0)
    assert missing.reason is Reason.NOT_ENTITLED and "age_over_60" in missing.detail
    false = verifier.verify(show(ring, {"age_over_60": False}), SCENIC, at=T0)
    assert false.reason is Reason.NOT_ENTITLED
    other_type = verifier.verify(licence(ring), SCENIC, at=T0)
    assert other_type.reason is Reason.NOT_ENTITLED and "YYZZ" in other_type.detail
    code = show(ring, {"age_over_60": True})
    assert verifier.verify(code, SCENIC, at=T0).accepted
    assert verifier.verify(code, SCENIC, at=T0 + 1).reason is Reason.REPLAYED  # a turnstile lets one through


@pytest.mark.parametrize("value", [0, 1, -1, "", "true", "false", "no", "yes", "0"])
def test_scene_rule_shown_and_true_accepts_only_the_boolean_true(ring, verifier, value):
    # A department's signed field of another type (a number, a text) is not "true" to a turnstile; other
    # values (lists, null, floats) the claims parser already refuses as malformed.
    refused = verifier.verify(show(ring, {"age_over_60": value}), SCENIC, at=T0)
    assert not refused.accepted and refused.reason is Reason.NOT_ENTITLED, value
    assert "age_over_60" in refused.detail


def test_scene_without_rules_takes_any_trusted_certificate_type(ring, verifier):
    assert INSPECTION.cert_rules == {}
    assert verifier.verify(show(ring, {"name": "Li Wei"}), INSPECTION, at=T0).accepted
    assert verifier.verify(licence(ring), INSPECTION, at=T0).accepted


def test_refusal_order_a_revoked_certificate_is_revoked_before_not_entitled(ring, trust, verifier, cache):
    cache.load(status_token(ring, statuses={7: INVALID}, now=T0 + 1), trust, at=T0 + 1)
    assert verifier.verify(show(ring, {"name": "Li Wei"}), SCENIC, at=T0 + 2).reason is Reason.REVOKED


# -- status lists that must not be used ----------------------------------------------------------------
def _segment(data: dict[str, Any]) -> str:
    return b64u_encode(json.dumps(data, separators=(",", ":")).encode())


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": "civil-affairs", "sub": "https://city.example/status/civil-affairs", "iat": T0,
                              "exp": T0 + DAY, "ttl": 300, "status_list": {"bits": 2, "lst": encode_lst(bytes(256))}}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(ring: Keyring, claims: dict[str, Any], issuer: str = "civil-affairs", **header: Any) -> str:
    signer = ring.signer(issuer)
    headers = {"typ": STATUS_LIST_TYPE, "kid": b64u_encode(signer.kid), **header}
    return jwt.encode(claims, signer.private_key, algorithm="ES256", headers=headers)


def test_a_hand_built_list_loads_so_the_refusals_below_are_about_their_one_change(ring, trust):
    loaded = StatusList.load(_signed(ring, _claims()), trust, at=T0)
    assert loaded.issuer == "civil-affairs" and loaded.bits == 2 and loaded.size == 1024 and loaded.ttl == 300


def test_list_signed_by_another_key_under_a_trusted_kid_is_refused(ring, trust):
    stranger = ec.generate_private_key(ec.SECP256R1())
    kid = b64u_encode(ring.signer("civil-affairs").kid)
    token = jwt.encode(_claims(), stranger, algorithm="ES256", headers={"typ": STATUS_LIST_TYPE, "kid": kid})
    with pytest.raises(StatusListError, match="rejected"):
        StatusList.load(token, trust, at=T0)


def test_list_with_alg_none_is_refused(ring, trust):
    kid = b64u_encode(ring.signer("civil-affairs").kid)
    token = _segment({"alg": "none", "typ": STATUS_LIST_TYPE, "kid": kid}) + "." + _segment(_claims()) + "."
    with pytest.raises(StatusListError):
        StatusList.load(token, trust, at=T0)


@pytest.mark.parametrize("secret", ["pem", "jwk-x", "empty"])
def test_list_with_hmac_keyed_by_public_material_is_refused(ring, trust, secret):
    signer = ring.signer("civil-affairs")
    public = signer.private_key.public_key()
    key = {
        "pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk-x": public.public_numbers().x.to_bytes(32, "big"),
        "empty": b"",
    }[secret]
    signing_input = _segment({"alg": "HS256", "typ": STATUS_LIST_TYPE, "kid": b64u_encode(signer.kid)}) + "." + \
        _segment(_claims())
    token = signing_input + "." + b64u_encode(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    with pytest.raises(StatusListError):
        StatusList.load(token, trust, at=T0)


@pytest.mark.parametrize("typ", ["JWT", "trustlist+jwt", "statuslist+cwt", None])
def test_list_of_the_wrong_type_is_refused(ring, trust, typ):
    token = _signed(ring, _claims(), typ=typ)  # None: pyjwt leaves typ out
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header.get("typ") == typ
    with pytest.raises(StatusListError, match="type"):
        StatusList.load(token, trust, at=T0)


@pytest.mark.parametrize("header", [{"jwk": {"kty": "EC"}}, {"jku": "https://evil.example/keys"},
                                    {"x5c": ["MIIB"]}, {"crit": ["exp"]}])
def test_list_header_carrying_key_material_or_other_parameters_is_refused(ring, trust, header):
    with pytest.raises(StatusListError, match=r"unexpected|critical"):
        StatusList.load(_signed(ring, _claims(), **header), trust, at=T0)


def test_list_signed_by_a_key_not_in_the_trust_list_or_naming_no_key_is_refused(tmp_path, ring, trust):
    impostor = Keyring(tmp_path / "impostor")
    impostor.initialise([CIVIL], now=T0)
    with pytest.raises(StatusListError, match="not in the trust list"):
        StatusList.load(_signed(impostor, _claims()), trust, at=T0)
    no_kid = jwt.encode(_claims(), ring.signer("civil-affairs").private_key, algorithm="ES256",
                        headers={"typ": STATUS_LIST_TYPE})
    with pytest.raises(StatusListError, match="not in the trust list"):
        StatusList.load(no_kid, trust, at=T0)


def test_list_signed_by_a_trusted_key_not_trusted_for_certificates_is_refused(ring, trust):
    token = _signed(ring, _claims(iss="city-id"), issuer="city-id")
    with pytest.raises(StatusListError, match="issues nothing that has a status"):
        StatusList.load(token, trust, at=T0)


def test_list_naming_another_issuer_than_its_key_is_refused(ring, trust):
    with pytest.raises(StatusListError, match="another issuer"):
        StatusList.load(_signed(ring, _claims(iss="market-regulation")), trust, at=T0)


@pytest.mark.parametrize(
    "status_list",
    [
        {"bits": 2, "lst": "!!!not base64!!!"},
        {"bits": 2, "lst": b64u_encode(b"not zlib at all")},
        {"bits": 2, "lst": b64u_encode(zlib.compress(bytes(256))[:-6])},  # truncated
        {"bits": 3, "lst": encode_lst(bytes(256))},
        {"bits": "2", "lst": encode_lst(bytes(256))},
        {"lst": encode_lst(bytes(256))},
        {"bits": 2},
        {"bits": 2, "lst": 12345},
        "eNrbuRgAAhcBXQ",
        None,
    ],
    ids=["not-base64", "not-zlib", "truncated", "bits-3", "bits-text", "no-bits", "no-lst", "lst-number",
         "not-an-object", "missing"],
)
def test_malformed_lst_is_refused(ring, trust, status_list):
    with pytest.raises(StatusListError):
        StatusList.load(_signed(ring, _claims(status_list=status_list)), trust, at=T0)


@pytest.mark.parametrize(
    "claims",
    [
        _claims(sub=None),
        _claims(iat=None),
        _claims(iat=str(T0)),
        _claims(iat=T0 + 3600),  # signed an hour in the future
        _claims(iat=T0 - 10 * DAY),  # before its key existed
        _claims(ttl=0),
        _claims(ttl=-5),
        _claims(ttl="300"),
        _claims(exp=float(T0 + DAY)),
    ],
    ids=["no-sub", "no-iat", "iat-text", "iat-future", "iat-before-key", "ttl-0", "ttl-negative", "ttl-text",
         "exp-float"],
)
def test_list_with_bad_times_or_claims_is_refused(ring, trust, claims):
    with pytest.raises(StatusListError):
        StatusList.load(_signed(ring, claims), trust, at=T0)


def test_zip_bomb_is_refused_without_inflating_it(ring, trust):
    compressor = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(MAX_LIST_BYTES // len(chunk) + 1)]
    bomb = b"".join(parts) + compressor.flush()
    assert len(bomb) < 100_000  # about 65 KB that would inflate to 65 MiB
    token = _signed(ring, _claims(status_list={"bits": 2, "lst": b64u_encode(bomb)}))
    with pytest.raises(StatusListError, match="too large"):
        StatusList.load(token, trust, at=T0)


def test_oversized_token_is_refused_before_parsing(trust):
    with pytest.raises(StatusListError, match="too large"):
        StatusList.load("e" * (16 * 1024 * 1024 + 1), trust, at=T0)


def test_not_a_jws_is_refused(trust):
    for token in ("", "nonsense", b"\xff\xfe", "a.b.c"):
        with pytest.raises(StatusListError):
            StatusList.load(token, trust, at=T0)


# -- reading a list ----------------------------------------------------------------------------------
def test_list_statuses_are_read_back_as_signed(ring, trust):
    statuses = {0: INVALID, 1: SUSPENDED, 2: 3, 513: INVALID, LIST_SIZE - 1: SUSPENDED}
    loaded = StatusList.load(status_token(ring, statuses=statuses), trust, at=T0)
    assert loaded.bits == 2 and loaded.size == LIST_SIZE and loaded.uri.endswith("/civil-affairs")
    assert [loaded.status(i) for i in range(LIST_SIZE)] == [statuses.get(i, VALID) for i in range(LIST_SIZE)]
    for index in (-1, LIST_SIZE):
        with pytest.raises(IndexError):
            loaded.status(index)


def test_status_value_3_is_status_unknown_not_accepted(ring, trust, verifier, cache):
    cache.load(status_token(ring, statuses={7: 3}, now=T0 + 1), trust, at=T0 + 1)
    result = verifier.verify(show(ring, now=T0 + 2), INSPECTION, at=T0 + 2)
    assert result.reason is Reason.STATUS_UNKNOWN and "3" in result.detail


def test_due_for_refresh_honours_ttl_and_expiry(ring, trust):
    held = StatusCache()
    held.load(status_token(ring, now=T0, ttl=300), trust, at=T0 + 20)  # received 20 s after signing
    assert held.due_for_refresh(T0 + 20 + 299) == []
    assert held.due_for_refresh(T0 + 20 + 300) == ["civil-affairs"]
    held.load(status_token(ring, now=T0 + 400, ttl=300), trust, at=T0 + 400)
    assert held.due_for_refresh(T0 + 500) == []

    expiring = StatusCache()
    expiring.load(status_token(ring, "market-regulation", now=T0, ttl=3600, validity=600), trust, at=T0)
    assert expiring.due_for_refresh(T0 + 599) == []
    assert expiring.due_for_refresh(T0 + 600) == ["market-regulation"]  # expiry comes before ttl


def test_due_for_refresh_without_ttl_uses_the_default(ring, trust):
    held = StatusCache()
    held.load(_signed(ring, _claims(ttl=None, exp=None)), trust, at=T0)
    loaded = held.get("civil-affairs")
    assert loaded is not None and loaded.ttl is None and loaded.expires_at is None
    assert held.due_for_refresh(T0 + 3599) == []
    assert held.due_for_refresh(T0 + 3600) == ["civil-affairs"]
    assert held.due_for_refresh(T0 + 59, default_ttl=60) == []
    assert held.due_for_refresh(T0 + 60, default_ttl=60) == ["civil-affairs"]


def test_cache_keeps_one_list_per_issuer(ring, trust, cache):
    assert {dept: cache.get(dept) is not None for dept in ("civil-affairs", "market-regulation", "city-id")} == {
        "civil-affairs": True, "market-regulation": True, "city-id": False}
    cache.load(status_token(ring, "market-regulation", {5: INVALID}, now=T0 + 5), trust, at=T0 + 5)
    assert cache.lookup("market-regulation", 5, T0 + 6, 3600).status == INVALID
    assert cache.lookup("civil-affairs", 5, T0 + 6, 3600).status == VALID


def test_pack_refuses_what_does_not_fit():
    with pytest.raises(ValueError):
        pack(16, {}, 3)
    with pytest.raises(ValueError):
        pack(16, {16: 1}, 2)
    with pytest.raises(ValueError):
        pack(16, {0: 4}, 2)
    assert pack(5, {4: 3}, 2) == bytes([0, 0b11])


# -- GB/T 36904 certificate identifiers and GB 32100 credit codes -----------------------------------------
def test_certificate_identifier_round_trip():
    ident = CertificateId.build("LNYD", ORG["civil-affairs"], "00000042", 1)
    text = str(ident)
    assert text.startswith(ROOT + ".LNYD." + ORG["civil-affairs"] + ".00000042.1.")
    assert len(text.rsplit(".", 1)[1]) == 1
    assert CertificateId.parse(text) == ident
    assert mod37_36_valid(text.replace(".", ""))  # the check covers every character before it, root included


def test_every_other_check_character_is_rejected():
    text = str(CertificateId.build("YYZZ", ORG["market-regulation"], "00012345", 2))
    body, check = text[:-1], text[-1]
    others = [c for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c != check]
    assert len(others) == 35
    for char in [*others, check.lower(), "", "MM", "-", " "]:
        with pytest.raises(IdentifierError):
            CertificateId.parse(body + char)


def test_every_single_character_change_in_the_body_is_rejected():
    """MOD 37,36 detects every single substitution: change each character of the body in turn."""
    text = str(CertificateId.build("SPJY", ORG["market-regulation"], "00000007", 1))
    start = len(ROOT) + 1
    for position in range(start, len(text) - 2):
        if text[position] == ".":
            continue
        for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            if char != text[position]:
                with pytest.raises(IdentifierError):
                    CertificateId.parse(text[:position] + char + text[position + 1:])


@pytest.mark.parametrize(
    "text",
    [
        "1.2.156.3005.3.LNYD.X.1.1.0",  # another root
        "LNYD.X.1.1.0",
        "1.2.156.3005.2.LNYD.X.1.1",  # no check part
        "1.2.156.3005.2.LNYD.X.1.1.0.0",
        "1.2.156.3005.2.lnyd.X.1.1.0",
        "1.2.156.3005.2..X.1.1.0",
        "1.2.156.3005.2.LNYD.X.1." + "1" * 33 + ".0",
        "",
    ],
)
def test_malformed_certificate_identifiers_are_rejected(text):
    with pytest.raises(IdentifierError):
        CertificateId.parse(text)


def test_mod37_36_matches_the_iso_iec_7064_example():
    assert mod37_36_check("A12425GABC1234002") == "M"
    assert mod37_36_valid("A12425GABC1234002M")
    assert not mod37_36_valid("A12425GABC1234002N")
    with pytest.raises(IdentifierError):
        mod37_36_check("a12425")


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000600037341L", DEMO_COMPANY,
                                  *[org for _d, _n, org in DEPARTMENTS]])
def test_unified_social_credit_codes_validate_and_every_single_change_is_rejected(code):
    assert validate_uscc(code) == code
    assert uscc_check(code[:17]) == code[17]
    for position in range(18):
        for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            if char != code[position]:
                with pytest.raises(IdentifierError):
                    validate_uscc(code[:position] + char + code[position + 1:])


def test_malformed_credit_codes_are_rejected():
    for code in ("", "91350100M000100Y4", "91350100M000100Y433", "91350100m000100Y43", None, 91350100):
        with pytest.raises(IdentifierError):
            validate_uscc(code)  # type: ignore[arg-type]


# -- a show code names its certificate by a valid identifier ---------------------------------------------
def test_show_code_identifier_is_a_valid_gbt_36904_identifier(ring, verifier):
    result = verifier.verify(licence(ring), INSPECTION, at=T0)
    ident = CertificateId.parse(result.cert_id)
    assert ident.type_code == "YYZZ" and ident.issuer_code == ORG["market-regulation"]


def test_verifier_never_raises_on_a_certificate_claim_of_the_wrong_shape(ring, verifier):
    signer = ring.signer("civil-affairs")
    from issuers.codes import issue_code

    for body in ({}, {CERT_ID: 1}, "text", {CERT_ID: "x", CERT_TYPE: "LNYD", CERT_HOLDER: b"",
                                              CERT_VALID_FROM: 0, CERT_VALID_UNTIL: 1, CERT_STATUS_INDEX: 0},
                 {CERT_ID: "x", CERT_TYPE: "LNYD", CERT_HOLDER: ELDER_PID, CERT_VALID_FROM: 2, CERT_VALID_UNTIL: 1,
                  CERT_STATUS_INDEX: 0},
                 {CERT_ID: "x", CERT_TYPE: "LNYD", CERT_HOLDER: ELDER_PID, CERT_VALID_FROM: 0,
                  CERT_VALID_UNTIL: T0 + DAY, CERT_STATUS_INDEX: -1},
                 {CERT_ID: "x", CERT_TYPE: "LNYD", CERT_HOLDER: ELDER_PID, CERT_VALID_FROM: 0,
                  CERT_VALID_UNTIL: T0 + DAY, CERT_STATUS_INDEX: 0, CERT_FIELDS: {"a": 1.5}}):
        code = issue_code(signer, "cert", subject=None, lifetime=60, now=T0, extra={CLAIM_CERT: body})
        assert verifier.verify(code, INSPECTION, at=T0).reason is Reason.MALFORMED



# -- gaps found in review, now closed ---------------------------------------------------------------------

@pytest.mark.parametrize("ident", ["not an identifier", "wrong-check", "other-type"])
def test_show_code_whose_identifier_is_not_valid_is_refused(ring, verifier, ident):
    good = cert_id("LNYD", "civil-affairs")
    text = {
        "not an identifier": "not an identifier",
        "wrong-check": good[:-1] + ("B" if good[-1] != "B" else "C"),
        "other-type": str(CertificateId.build("YYZZ", ORG["civil-affairs"], "00000001", 1)),  # type LNYD in the code
    }[ident]
    result = verifier.verify(show(ring, ident=text), INSPECTION, at=T0)
    assert result.reason is Reason.MALFORMED


def test_list_with_boolean_bits_is_refused(ring, trust):
    with pytest.raises(StatusListError):
        StatusList.load(_signed(ring, _claims(status_list={"bits": True, "lst": encode_lst(bytes(16))})), trust, at=T0)
