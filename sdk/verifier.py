"""Offline verification of a scanned citycode against a trust list and a scene policy.

Order of checks (the first failure decides the reason):

1. text form: our prefix (else ``not_a_citycode``), size, base45, COSE_Sign1 structure (``malformed``);
   a header algorithm we never sign with (``unsupported_alg``)
2. the trust list itself still valid (``trust_list_expired``)
3. key id in the trust list (``unknown_key``; ``city_not_accepted`` when the code's unverified ``iss`` names
   another city than the gate's own that the federation does not take this kind from: refused either way, the
   claim only picks the reason); the code's algorithm is the key's (``unsupported_alg``)
4. signature (``bad_signature``); only then are the claims decoded (``malformed``)
5. the code's ``iss``, when it has one, names the city whose trust list holds the key (``untrusted_issuer``);
   the key valid for this kind and at this time (``untrusted_issuer``, ``unknown_key``)
6. times with the clock leeway (``not_yet_valid``, ``expired``), the scene's kinds (``wrong_kind``; a ride
   credential on its own, kind ``ridecred``, is ``wrong_kind`` everywhere)
7. ``venue`` codes: the venue claim (``malformed``) and the venue issuer's status list (``revoked``)
7. ``cert`` codes: the certificate claim (``malformed``); its type among the signing key's ``cert_types``
   and its identifier's issuer code the key's ``org_code`` (``untrusted_issuer``); its validity dates,
   status and the scene's rules (docs/certificates.md)
   ``card`` codes (printed cards): a scene that does not take them (``printed_card_not_accepted``), the card
   claim (``malformed``), the card issuer's status list (``revoked`` once reported lost), a scene that takes
   them only after the clerk checked the identity card (``id_check_required``)
8. single-use scenes: the replay guard (``replayed``), consulted last so that a refused
   code never burns its id; a printed card counts once per the scene's ``card_window``.

A key id that is not in the gate's own trust list is looked up in the trust lists of the federated cities
(:class:`sdk.federation.Federation`, when the verifier has one): found there, the code is checked with that
city's key, against that city's status lists, and its city's terms in the statement (kinds, scenes, dates)
decide after the signature and the key's kind (``city_not_accepted``); a result that passes names the city
(``home_city``). That city's trust list and the statement themselves expire like the gate's own list
(``trust_list_expired``) while the federation is in force.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from sdk import base45, sm2
from sdk.claims import CertificateClaims, Claims, ClaimsError, parse_card, parse_certificate, parse_claims, parse_venue
from sdk.cose import ALG_ES256, ALG_SM2, AlgorithmError, CoseError, Sign1, parse
from sdk.federation import Federation, Located
from sdk.keys import TrustedKey, verify_es256
from sdk.reasons import Reason
from sdk.replay import MemoryReplayGuard, ReplayGuard
from sdk.result import Result, refused, refused_like
from sdk.ride import RideCredential, parse_credential, parse_ride_code, replay_id
from sdk.scene import Scene
from sdk.statuslist import INVALID, SUSPENDED, VALID, StatusCache
from sdk.trustlist import TrustList

#: A last check on a code that passed: a refusal, or None to go on.
Veto = Callable[[Result], "Result | None"]
#: How many checked ride credentials a verifier keeps (a gate's phones of a day or so; about 2 KB each).
CREDENTIAL_CACHE_SIZE = 4096


class _Credential(NamedTuple):
    """A ride credential that passed its checks under *trust*, and what they found."""

    trust: TrustList
    inner: Sign1
    key: TrustedKey
    claims: Claims
    credential: RideCredential
    #: The federated city whose trust list *trust* is (None: the verifier's own).
    city: str | None = None

PREFIX = "CC1:"
MAX_CODE_LENGTH = 2048
DEFAULT_LEEWAY = 30


class Verifier:
    """Verifies codes offline. Thread-safe when its replay guard is."""

    def __init__(
        self,
        trust: TrustList,
        *,
        leeway: int = DEFAULT_LEEWAY,
        replay_guard: ReplayGuard | None = None,
        status: StatusCache | None = None,
        clock: Callable[[], float] = time.time,
        federation: Federation | None = None,
    ) -> None:
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        self.trust = trust
        self.leeway = leeway
        self.replay_guard: ReplayGuard = replay_guard if replay_guard is not None else MemoryReplayGuard()
        self.status = status if status is not None else StatusCache()
        self.clock = clock
        #: The federated cities' statement and lists (None: this city's own codes only).
        self.federation = federation
        #: Ride credentials that passed their checks (structure, trust-list key, signature, claims), by their
        #: exact bytes: a phone shows the same credential in every ride code it makes that day.
        self._credentials: dict[bytes, _Credential] = {}
        self._credentials_lock = threading.Lock()

    def replace_trust_list(self, trust: TrustList) -> None:
        """Swap in a freshly synchronised trust list (atomic for readers)."""
        self.trust = trust
        self._credentials = {}  # checked under the old list: each is checked again under the new one

    def verify(
        self, text: Any, scene: Scene | None = None, *, at: float | None = None, before_use: Veto | None = None,
        id_checked: bool = False,
    ) -> Result:
        """Verify one scanned code. Never raises; any failure is a refusal with a reason.

        *before_use* sees a code that passed every check just before a single-use scene spends it
        on the replay guard; a refusal it returns is the answer and the code stays unspent (a gate's
        anti-passback or capacity rule, the service's check for a frozen identity). *id_checked*: the clerk
        has checked the resident's identity card, which a scene may require before it takes a printed card.
        """
        try:
            return self._verify(text, scene, self.clock() if at is None else at, before_use, id_checked=id_checked)
        except Exception as exc:  # fail closed: an unforeseen error is a refusal, not a crash
            return refused(Reason.MALFORMED, f"unexpected {exc.__class__.__name__}")

    def verify_image(
        self, image: Any, scene: Scene | None = None, *, at: float | None = None, decoder: str = "auto",
        before_use: Veto | None = None,
    ) -> Result:
        """Find the QR code(s) in an image (bytes, path or PIL image) and verify ours."""
        text = self.read_image(image, decoder=decoder)
        if isinstance(text, Result):
            return text
        return self.verify(text, scene, at=at, before_use=before_use)

    @staticmethod
    def read_image(image: Any, *, decoder: str = "auto") -> str | Result:
        """The text of the QR code in an image (ours when there are several), or the ``no_code_found`` refusal."""
        # lazy: sdk.image needs the optional [image] extra (pillow, zxing-cpp, pyzbar); a gate that reads no
        # images does not install it, and the rest of the SDK must import without it.
        from sdk.image import ImageError, decode_image

        try:
            texts = decode_image(image, decoder=decoder)
        except ImageError as exc:
            return refused(Reason.NO_CODE_FOUND, str(exc))
        except Exception as exc:
            return refused(Reason.NO_CODE_FOUND, f"image could not be read ({exc.__class__.__name__})")
        if not texts:
            return refused(Reason.NO_CODE_FOUND, "no QR code in the image")
        ours = [t for t in texts if t.startswith(PREFIX)]
        return ours[0] if ours else texts[0]

    def evidence(self, text: Any, *, at: float) -> Result:
        """Whether *text* is a genuine code of ours as at *at*: its signatures, keys, kind and times (with the
        leeway), but neither a scene, nor status lists, nor the replay guard. Not a decision to admit anyone:
        the service uses it to check that a record a gate kept names a code that really was shown then."""
        try:
            return self._verify(text, None, at, None, evidence=True)
        except Exception as exc:  # fail closed
            return refused(Reason.MALFORMED, f"unexpected {exc.__class__.__name__}")

    def _verify(
        self, text: Any, scene: Scene | None, now: float, before_use: Veto | None = None, evidence: bool = False,
        id_checked: bool = False,
    ) -> Result:
        if type(text) is not str:
            if isinstance(text, (bytes, bytearray)):
                try:
                    text = bytes(text).decode("ascii")
                except UnicodeDecodeError:
                    return refused(Reason.NOT_A_CITYCODE, "not text")
            if not isinstance(text, str):
                return refused(Reason.NOT_A_CITYCODE, "not text")
        text = text.strip()
        if not text.startswith(PREFIX):
            return refused(Reason.NOT_A_CITYCODE, "no citycode prefix")
        if len(text) > MAX_CODE_LENGTH:
            return refused(Reason.MALFORMED, f"longer than {MAX_CODE_LENGTH} characters")
        try:
            message = parse(base45.b45decode(text[len(PREFIX):]))
        except base45.Base45Error as exc:
            return refused(Reason.MALFORMED, f"base45: {exc}")
        except AlgorithmError as exc:
            return refused(Reason.UNSUPPORTED_ALG, str(exc))
        except CoseError as exc:
            return refused(Reason.MALFORMED, str(exc))

        if not message.kid:
            return self._verify_ride(message, scene, now, before_use, evidence)
        signed = self._signer(message, now)
        if isinstance(signed, Result):
            return signed
        key, visit = signed
        try:
            claims = parse_claims(message.payload)
        except ClaimsError as exc:
            return refused(Reason.MALFORMED, f"claims: {exc}", kid=message.kid.hex())

        fields = self._fields(claims, message.kid.hex(), key.issuer, scene)
        kind, issued_at, leeway = claims.kind, claims.issued_at, self.leeway
        if visit is not None:
            fields["home_city"] = visit.city.city
        claimed = self._claimed_city(claims, key, visit)
        if claimed is not None:
            return refused(Reason.UNTRUSTED_ISSUER, claimed, **fields)
        if kind not in key.kinds:
            return refused(Reason.UNTRUSTED_ISSUER, f"{key.issuer} does not issue {kind} codes", **fields)
        if visit is not None:
            elsewhere = visit.city.refusal(kind, scene.name if scene is not None else None, now)
            if elsewhere is not None:
                return refused(Reason.CITY_NOT_ACCEPTED, elsewhere, **fields)
        if not key.not_before - leeway <= issued_at <= key.not_after or now > key.not_after + leeway:
            return refused(Reason.UNKNOWN_KEY, "key not valid at this time", **fields)
        if issued_at > now + leeway:
            return refused(Reason.NOT_YET_VALID, f"issued {issued_at - now:.0f} s in the future", **fields)
        if claims.expires_at < now - leeway:
            return refused(Reason.EXPIRED, f"expired {now - claims.expires_at:.0f} s ago", **fields)
        if kind == "ridecred":  # no device signature: only ever accepted inside a ride code
            return refused(Reason.WRONG_KIND, "a ride credential is not a code by itself", **fields)
        if scene is not None and not scene.accepts(kind):
            if kind == "card":
                return refused(Reason.PRINTED_CARD_NOT_ACCEPTED, f"scene {scene.name} does not take printed cards",
                               **fields)
            return refused(Reason.WRONG_KIND, f"scene {scene.name} does not take {kind} codes", **fields)
        if kind == "card":
            return self._verify_card(claims, key, scene, now, fields, before_use, evidence, id_checked)
        if kind == "cert":
            try:
                cert = parse_certificate(claims.extra)
            except ClaimsError as exc:
                return refused(Reason.MALFORMED, f"claims: {exc}", **fields)
            fields.update(cert_id=cert.cert_id, cert_type=cert.type_code, holder=cert.holder, fields=cert.fields)
            refusal = self._check_certificate(cert, key, scene, now, fields, evidence,
                                              visit.status if visit is not None else self.status)
            if refusal is not None:
                return refusal
        elif kind == "venue":  # a venue's posted code: its venue claim, then its status (revoked venues)
            try:
                venue = parse_venue(claims.extra)
            except ClaimsError as exc:
                return refused(Reason.MALFORMED, f"claims: {exc}", **fields)
            fields.update(venue_id=venue.venue_id)
            refusal = None if evidence else self._check_status(key.issuer, venue.status_index, scene, now, fields,
                                                               "venue code")
            if refusal is not None:
                return refusal
        return self._spend(Result(accepted=True, reason=Reason.OK, **fields), claims.code_id,
                           claims.expires_at + self.leeway, scene, before_use)

    def _verify_card(
        self, claims: Claims, key: TrustedKey, scene: Scene | None, now: float, fields: dict[str, Any],
        before_use: Veto | None, evidence: bool, id_checked: bool,
    ) -> Result:
        """A printed card: its claim, its status (a lost card is revoked), the scene's identity-card rule, then
        (single-use scenes) the replay guard, once per the scene's ``card_window``."""
        try:
            index = parse_card(claims.extra)
        except ClaimsError as exc:
            return refused(Reason.MALFORMED, f"claims: {exc}", **fields)
        if not evidence:
            refusal = self._check_status(key.issuer, index, scene, now, fields, "printed card")
            if refusal is not None:
                return refusal
        if scene is not None and scene.card_needs_id_check and not id_checked:
            return refused(Reason.ID_CHECK_REQUIRED, f"scene {scene.name} takes a printed card only with the "
                           "identity card checked", **fields)
        accepted = Result(accepted=True, reason=Reason.OK, **fields)
        if scene is None or not scene.single_use:
            return self._spend(accepted, claims.code_id, claims.expires_at + self.leeway, scene, before_use)
        # The same card is shown every day: spent for one window at a time, never for good.
        window = int(now // scene.card_window)
        return self._spend(accepted, claims.code_id + window.to_bytes(8, "big"),
                           (window + 1) * scene.card_window + self.leeway, scene, before_use)

    def _signer(
        self, message: Sign1, now: float, what: str = "", trust: TrustList | None = None
    ) -> tuple[TrustedKey, Located | None] | Result:
        """The trust-list key whose signature *message* carries (and the federated city it was found in, or
        None for the verifier's own list), or the refusal: an expired trust list, a key id not in it nor in a
        federated city's, another algorithm than the key's, a signature that does not verify."""
        if trust is None:
            trust = self.trust
        if trust.expired(now):
            return refused(Reason.TRUST_LIST_EXPIRED, f"trust list expired at {trust.expires_at}")
        key = trust.get(message.kid)
        visit = None
        if key is None:
            visit = self.federation.locate(message.kid) if self.federation is not None else None
            if visit is None:
                return self._unlisted(message, now)
            stale = self._stale_visit(visit, now)
            if stale is not None:
                return stale
            key = visit.key
        if message.alg != key.alg:
            return refused(Reason.UNSUPPORTED_ALG, f"key {message.kid.hex()} signs with {key.alg_name} only")
        if key.alg == ALG_SM2 and not sm2.available():  # fail closed, and say why
            return refused(Reason.UNSUPPORTED_ALG, f"key {message.kid.hex()} signs with SM2: {sm2.INSTALL_HINT}")
        if not key.verify(message.signature, message.to_be_signed()):
            return refused(Reason.BAD_SIGNATURE, what, kid=message.kid.hex())
        return key, visit

    def own_city(self) -> str | None:
        """The gate's own city: its trust list's ``city``, else its federation statement's issuer (None: a list
        signed before lists named their city, and no federation)."""
        if self.trust.city is not None:
            return self.trust.city
        statement = self.federation.statement if self.federation is not None else None
        return statement.city if statement is not None else None

    def _unlisted(self, message: Sign1, now: float) -> Result:
        """A key id in no trust list the gate holds: ``unknown_key``, or ``city_not_accepted`` when the code's
        claims (unverified: nothing vouches for them) name another city than the gate's own, one the federation
        does not accept this kind of code from. The code is refused either way (fail closed); the claim only
        picks the reason, so that a gate can say "this city's codes are not accepted here"."""
        detail = f"key {message.kid.hex()} is not in the trust list"
        try:
            claims = parse_claims(message.payload)
        except ClaimsError:
            return refused(Reason.UNKNOWN_KEY, detail)
        city, own = claims.city, self.own_city()
        if city is None or own is None or city == own:
            return refused(Reason.UNKNOWN_KEY, detail)
        statement = self.federation.statement if self.federation is not None else None
        entry = statement.cities.get(city) if statement is not None else None
        if entry is None:
            return refused(Reason.CITY_NOT_ACCEPTED, f"codes of {city} are not accepted here: {own} does not "
                           f"federate with {city} (key {message.kid.hex()}, signature not checked)")
        elsewhere = entry.refusal("ride" if claims.kind == "ridecred" else claims.kind, None, now)
        if elsewhere is not None:
            return refused(Reason.CITY_NOT_ACCEPTED, f"{elsewhere} (key {message.kid.hex()}, signature not checked)")
        # A city this gate does take codes of: the key is simply not (yet) in the list held of it.
        return refused(Reason.UNKNOWN_KEY, f"key {message.kid.hex()} is not in the trust list of {city}")

    def _claimed_city(self, claims: Claims, key: TrustedKey, visit: Located | None) -> str | None:
        """Why a code's ``iss`` is refused: it names another city than the one whose trust list holds its key
        (a key vouched for by one city cannot speak for another). None when it agrees, when the code names no
        city (made before codes did), or when the gate's own list names none."""
        city = visit.city.city if visit is not None else self.own_city()
        if claims.city is None or city is None or claims.city == city:
            return None
        return f"the code claims city {claims.city}, but {key.issuer}'s key is in the trust list of {city}"

    def _stale_visit(self, visit: Located, now: float) -> Result | None:
        """While a federation is in force, its statement and the city's trust list expire like the gate's own
        list; past its end the city's codes are refused as ``city_not_accepted`` whatever the lists' age."""
        if not visit.city.active(now):
            return None
        statement = self.federation.statement if self.federation is not None else None
        if statement is None or statement.expired(now):
            return refused(Reason.TRUST_LIST_EXPIRED, "the federation statement expired"
                           + (f" at {statement.expires_at}" if statement is not None else ""))
        if visit.trust.expired(now):
            return refused(Reason.TRUST_LIST_EXPIRED,
                           f"trust list of {visit.city.city} expired at {visit.trust.expires_at}")
        return None

    def _verify_ride(
        self, message: Sign1, scene: Scene | None, now: float, before_use: Veto | None, evidence: bool = False
    ) -> Result:
        """A ride code: the credential through the trust list, then the phone's signature with the key it
        certifies, then times, scene, status, and the replay guard (docs/rides.md, section 3)."""
        if message.alg != ALG_ES256:
            return refused(Reason.UNSUPPORTED_ALG, "ride codes are signed with ES256 only")
        try:
            code = parse_ride_code(message.payload)
        except ClaimsError as exc:
            return refused(Reason.MALFORMED, f"ride code: {exc}")
        trust = self.trust
        seen = self._credentials.get(code.credential)
        visit: Located | None = None
        if seen is not None and seen.city is not None:  # a visitor's, checked under its city's list then
            visit = self.federation.locate(seen.inner.kid) if self.federation is not None else None
            if visit is None or visit.trust is not seen.trust:
                seen, visit = None, None
        if seen is not None and (seen.trust is trust or visit is not None):
            # The same credential bytes, already checked under this very trust list: what that check found
            # depends on nothing else. Only the trust lists' own expiry depends on the time; the key's
            # validity, the credential's expiry, the status and the rest are checked below for every code.
            if trust.expired(now):
                return refused(Reason.TRUST_LIST_EXPIRED, f"trust list expired at {trust.expires_at}")
            if visit is not None:
                stale = self._stale_visit(visit, now)
                if stale is not None:
                    return stale
            inner, key, claims, credential = seen.inner, seen.key, seen.claims, seen.credential
        else:
            checked = self._check_credential(code.credential, trust, now)
            if isinstance(checked, Result):
                return checked
            inner, key, claims, credential = checked.inner, checked.key, checked.claims, checked.credential
            if checked.city is not None and self.federation is not None:
                visit = self.federation.locate(inner.kid)
        code_id = replay_id(credential, code)
        fields: dict[str, Any] = {
            "kind": "ride", "subject_id": credential.account, "issued_at": code.generated_at,
            "expires_at": code.generated_at + credential.validity, "kid": inner.kid.hex(), "issuer": key.issuer,
            "code_id": code_id.hex(), "scene": scene.name if scene is not None else None,
            "card_type": credential.card_type, "fare_limit": credential.fare_limit,
            "credential_id": credential.credential_id.hex(), "credential_expires_at": credential.expires_at,
            "home_city": visit.city.city if visit is not None else None,
        }
        if "ridecred" not in key.kinds:
            return refused(Reason.UNTRUSTED_ISSUER, f"{key.issuer} does not issue ride credentials", **fields)
        if visit is not None:
            elsewhere = visit.city.refusal("ride", scene.name if scene is not None else None, now)
            if elsewhere is not None:
                return refused(Reason.CITY_NOT_ACCEPTED, elsewhere, **fields)
        if not key.not_before - self.leeway <= claims.issued_at <= key.not_after or now > key.not_after + self.leeway:
            return refused(Reason.UNKNOWN_KEY, "key not valid at this time", **fields)
        if not verify_es256(credential.device_key, message.signature, message.to_be_signed()):
            return refused(Reason.BAD_SIGNATURE, "device signature", **fields)
        if code.generated_at > now + self.leeway:
            return refused(Reason.NOT_YET_VALID, f"made {code.generated_at - now:.0f} s in the future", **fields)
        if credential.expires_at < now - self.leeway:
            return refused(Reason.CREDENTIAL_EXPIRED, f"authorisation expired {now - credential.expires_at:.0f} s ago",
                           **fields)
        if code.generated_at < credential.issued_at - self.leeway:
            return refused(Reason.MALFORMED, "code made before its credential", **fields)
        if code.generated_at + credential.validity < now - self.leeway:
            return refused(Reason.CODE_STALE, f"made {now - code.generated_at:.0f} s ago, valid for "
                           f"{credential.validity} s", **fields)
        if scene is not None and not scene.accepts("ride"):
            return refused(Reason.WRONG_KIND, f"scene {scene.name} does not take ride codes", **fields)
        if scene is not None and scene.card_types and credential.card_type not in scene.card_types:
            return refused(Reason.CARD_NOT_ACCEPTED, f"{credential.card_type} cards are not taken here", **fields)
        if not evidence:
            refusal = self._check_status(key.issuer, credential.status_index, scene, now, fields, "account or device",
                                         visit.status if visit is not None else self.status)
            if refusal is not None:
                return refusal
        return self._spend(Result(accepted=True, reason=Reason.OK, **fields), code_id,
                           code.generated_at + credential.validity + self.leeway, scene, before_use)

    def _check_credential(self, blob: bytes, trust: TrustList, now: float) -> _Credential | Result:
        """A ride credential through *trust*: its structure, its key, its signature, its claims; the refusal
        else. What passes is kept (by the credential's exact bytes, with the trust list it passed under), for
        the next codes of the same phone."""
        try:
            inner = parse(blob)
        except AlgorithmError as exc:
            return refused(Reason.UNSUPPORTED_ALG, f"credential: {exc}")
        except CoseError as exc:
            return refused(Reason.MALFORMED, f"credential: {exc}")
        if not inner.kid:
            return refused(Reason.MALFORMED, "the credential names no key")
        signed = self._signer(inner, now, "credential signature", trust)
        if isinstance(signed, Result):
            return signed
        key, visit = signed
        try:
            claims = parse_claims(inner.payload)
            credential = parse_credential(claims)
        except ClaimsError as exc:
            return refused(Reason.MALFORMED, f"credential: {exc}", kid=inner.kid.hex())
        claimed = self._claimed_city(claims, key, visit)
        if claimed is not None:
            return refused(Reason.UNTRUSTED_ISSUER, f"credential: {claimed}", kid=inner.kid.hex(), issuer=key.issuer,
                           home_city=visit.city.city if visit is not None else None)
        checked = (_Credential(trust, inner, key, claims, credential) if visit is None
                   else _Credential(visit.trust, inner, key, claims, credential, visit.city.city))
        with self._credentials_lock:
            cache = self._credentials
            while len(cache) >= CREDENTIAL_CACHE_SIZE:  # the oldest first
                del cache[next(iter(cache))]
            cache[blob] = checked
        return checked

    def _check_status(
        self, issuer: str, index: int, scene: Scene | None, now: float, fields: dict[str, Any], what: str,
        status: StatusCache | None = None,
    ) -> Result | None:
        """The issuer's status list entry (in *status*: the verifier's own lists, or a federated city's): valid
        goes on; revoked, suspended, stale or unknown refuse."""
        max_age = scene.max_status_age if scene is not None else 24 * 3600
        found = (self.status if status is None else status).lookup(issuer, index, now, max_age)
        fields["status_age"] = found.age
        if found.status is None:
            reason = Reason.STATUS_UNKNOWN if found.age is None else Reason.STATUS_STALE
            return refused(reason, found.detail, **fields)
        if found.status == -1:
            return refused(Reason.STATUS_UNKNOWN, found.detail, **fields)
        if found.status == INVALID:
            return refused(Reason.REVOKED, f"{what} revoked by its issuer", **fields)
        if found.status == SUSPENDED:
            return refused(Reason.SUSPENDED, f"{what} suspended by its issuer", **fields)
        if found.status != VALID:
            return refused(Reason.STATUS_UNKNOWN, f"unknown status value {found.status}", **fields)
        return None

    def _spend(
        self, accepted: Result, code_id: bytes, keep_until: float, scene: Scene | None, before_use: Veto | None
    ) -> Result:
        """The last steps for a code that passed its checks: the caller's veto, then the replay guard."""
        if before_use is not None:
            veto = before_use(accepted)
            if veto is not None:
                return veto
        if scene is not None and scene.single_use:
            try:
                first = self.replay_guard.first_use(scene.replay_scope, code_id, keep_until)
            except Exception as exc:
                return refused_like(accepted, Reason.REPLAY_GUARD_UNAVAILABLE, exc.__class__.__name__)
            if not first:
                return refused_like(accepted, Reason.REPLAYED, f"already used in {scene.replay_scope}")
        return accepted

    def _check_certificate(
        self, cert: CertificateClaims, key: TrustedKey, scene: Scene | None, now: float, fields: dict[str, Any],
        evidence: bool = False, status: StatusCache | None = None,
    ) -> Result | None:
        """Issuer entitled to the type and named in the identifier, validity dates, status, then the scene's
        requirements."""
        issuer = key.issuer
        if cert.type_code not in key.cert_types:
            return refused(Reason.UNTRUSTED_ISSUER, f"{issuer} does not issue {cert.type_code} certificates", **fields)
        if key.org_code is None:  # fail closed: nothing to hold the identifier's issuer code against
            return refused(Reason.UNTRUSTED_ISSUER, f"{issuer} publishes no org_code in the trust list", **fields)
        if cert.issuer_code != key.org_code:
            return refused(Reason.UNTRUSTED_ISSUER,
                           f"the identifier names issuer {cert.issuer_code}, not {issuer} ({key.org_code})", **fields)
        if not cert.valid_from - self.leeway <= now <= cert.valid_until + self.leeway:
            return refused(Reason.CERTIFICATE_EXPIRED, "outside the certificate's validity dates", **fields)
        refusal = None if evidence else self._check_status(issuer, cert.status_index, scene, now, fields,
                                                           "certificate", status)
        if refusal is not None:
            return refusal
        if scene is not None and scene.cert_rules:
            required = scene.cert_rules.get(cert.type_code)
            if required is None:
                return refused(Reason.NOT_ENTITLED, f"{cert.type_code} certificates are not taken here", **fields)
            for name in sorted(required):
                value = cert.fields.get(name)
                if value is not True:  # only the boolean true: not 1, "true", "yes" nor a date
                    return refused(Reason.NOT_ENTITLED, f"needs {name} shown and true", **fields)
        return None

    @staticmethod
    def _fields(claims: Claims, kid: str, issuer: str, scene: Scene | None) -> dict[str, Any]:
        return {
            "kind": claims.kind,
            "subject_id": claims.subject,
            "issued_at": claims.issued_at,
            "expires_at": claims.expires_at,
            "kid": kid,
            "issuer": issuer,
            "code_id": claims.code_id.hex(),
            "scene": scene.name if scene is not None else None,
        }

