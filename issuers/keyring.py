"""Issuer signing keys and the trust-anchor key, kept in the data directory.

Layout under ``<home>/keys`` (directory mode 0700, private key files 0600)::

    index.json            issuers (name, kinds, cert_types, org_code) and the metadata of every key (no secrets)
    anchor.key.pem        trust-anchor private key (signs trust lists only)
    <kid>.key.pem         an issuer's private signing key, deleted when the key retires
    <kid>.pub.pem         its public key, kept while codes it signed may still be shown

Each key signs with one algorithm, set when it is made: ES256 (P-256) by default, or SM2 with SM3
(sm2p256v1, ``SIGNING_ALGS``) when the city's configuration says so for the issuer (``CITYCODE_SIGNING_ALG``,
``CITYCODE_ISSUER_SIGNING_ALGS``); a rotation keeps the issuer's algorithm. The index records it (``alg``, the
JWS name) and the trust list publishes it; verifiers take it from there, never from a code.

Rotation makes a new key the one that signs; the old key stops signing at once (its private
file is removed) and stays in the trust list until ``grace`` seconds later, the longest a
code it signed can still be accepted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sdk import sm2
from sdk.claims import CITY_ID
from sdk.cose import ALG_NAMES
from sdk.keys import TrustedKey, alg_for_key, key_id, load_public_pem, public_pem

INDEX = "index.json"
ANCHOR_KEY = "anchor.key.pem"


#: What a signing key may be: P-256 (ES256) or sm2p256v1 (SM2 with SM3).
SigningKey = ec.EllipticCurvePrivateKey | sm2.Sm2PrivateKey
#: The configuration's names of the algorithms an issuer or the anchor may sign with.
SIGNING_ALGS = ("ES256", "SM2")
DEFAULT_SIGNING_ALG = "ES256"
#: The city a keyring signs for when it is not told (the configuration's default ``CITYCODE_CITY``).
DEFAULT_CITY = "demo-city"


class KeyringError(RuntimeError):
    """The keyring is missing, damaged or asked for something it does not hold."""


def generate_key(alg: str) -> SigningKey:
    """A new private key for *alg* (one of :data:`SIGNING_ALGS`)."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "SM2":
        try:
            return sm2.Sm2PrivateKey.generate()
        except sm2.Sm2Unavailable as exc:
            raise KeyringError(str(exc)) from None
    raise KeyringError(f"unknown signing algorithm {alg!r} (one of {', '.join(SIGNING_ALGS)})")


def _config_alg(private: SigningKey) -> str:
    return "SM2" if isinstance(private, sm2.Sm2PrivateKey) else "ES256"


@dataclass(frozen=True)
class Signer:
    """The key an issuer signs with now."""

    issuer: str
    kid: bytes
    private_key: SigningKey
    #: The city whose codes this key signs: every code names it in its ``iss`` claim (sdk/claims.py).
    city: str = DEFAULT_CITY

    @property
    def alg(self) -> int:
        return alg_for_key(self.private_key.public_key())

    @property
    def alg_name(self) -> str:
        """The JWS ``alg`` of this key: ``ES256`` or ``SM2SM3``."""
        return ALG_NAMES[self.alg]


@dataclass(frozen=True)
class IssuerInfo:
    id: str
    name: str
    kinds: tuple[str, ...]
    cert_types: tuple[str, ...] = ()
    #: A department's organisation code (unified social credit code): the issuer code inside the
    #: identifiers of the certificates it signs, published in the trust list as ``org_code``.
    org_code: str | None = None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _pem_private(key: SigningKey) -> bytes:
    if isinstance(key, sm2.Sm2PrivateKey):
        return key.private_pem()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_public(key: ec.EllipticCurvePublicKey | sm2.Sm2PublicKey) -> bytes:
    return public_pem(key)


class Keyring:
    """File-backed keyring. Safe for several processes: changes take an exclusive file lock."""

    def __init__(
        self, path: str | Path, *, signing_alg: str | None = None, issuer_algs: Mapping[str, str] | None = None,
        city: str = DEFAULT_CITY,
    ) -> None:
        """*signing_alg* and *issuer_algs*: what the keys made here sign with (the configuration's
        ``CITYCODE_SIGNING_ALG`` and ``CITYCODE_ISSUER_SIGNING_ALGS``); unset, ES256, and a department added
        later signs as the anchor does. *city*: the city they sign for (``CITYCODE_CITY``), named in every code
        (``iss``) and in the trust list (``city``)."""
        if not isinstance(city, str) or not CITY_ID.match(city):
            raise KeyringError(f"city id must be 1 to 64 of a-z, 0-9 and -, got {city!r}")
        self.city = city
        self.path = Path(path)
        self.signing_alg = signing_alg
        self.issuer_algs: dict[str, str] = dict(issuer_algs or {})
        self._cache: tuple[int, dict[str, Any]] | None = None
        self._signers: dict[str, Signer] = {}

    # -- set-up -------------------------------------------------------------------------
    def initialise(
        self, issuers: list[IssuerInfo], now: float | None = None, *, signing_alg: str | None = None,
        issuer_algs: Mapping[str, str] | None = None,
    ) -> bool:
        """Create the anchor and one key per issuer where missing. True when anything was created.

        A key made here signs with *signing_alg* (the anchor's too), or with the issuer's own in *issuer_algs*
        (both by default the keyring's own, else ES256); keys that exist already keep theirs."""
        now = time.time() if now is None else now
        signing_alg = signing_alg or self.signing_alg or DEFAULT_SIGNING_ALG
        issuer_algs = {**self.issuer_algs, **(issuer_algs or {})}
        for alg in (signing_alg, *issuer_algs.values()):
            if alg not in SIGNING_ALGS:
                raise KeyringError(f"unknown signing algorithm {alg!r} (one of {', '.join(SIGNING_ALGS)})")
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        created = False
        with self._locked():
            index = self._read_index(missing_ok=True)
            if not (self.path / ANCHOR_KEY).exists():
                _write_private(self.path / ANCHOR_KEY, _pem_private(generate_key(signing_alg)))
                created = True
            for info in issuers:
                meta = index["issuers"].setdefault(
                    info.id, {"name": info.name, "kinds": list(info.kinds), "cert_types": list(info.cert_types)}
                )
                if info.org_code is not None:
                    meta["org_code"] = info.org_code
                if not any(k["issuer"] == info.id and k["retired_at"] is None for k in index["keys"]):
                    self._add_key(index, info.id, now, issuer_algs.get(info.id, signing_alg))
                    created = True
            self._write_index(index)
        return created

    def add_issuer(self, info: IssuerInfo, now: float | None = None, *, signing_alg: str | None = None) -> None:
        """Add *info* with a key of *signing_alg* (by default the one configured for it, else the algorithm the
        anchor signs with)."""
        alg = signing_alg or self.issuer_algs.get(info.id) or self.anchor_alg()
        self.initialise([info], now, signing_alg=self.anchor_alg(), issuer_algs={info.id: alg})

    def allow_cert_type(self, issuer: str, type_code: str) -> None:
        """Let *issuer* sign certificates of *type_code* (published in the trust list)."""
        with self._locked():
            index = self._read_index()
            meta = index["issuers"].get(issuer)
            if meta is None:
                raise KeyringError(f"unknown issuer {issuer!r}")
            types = meta.setdefault("cert_types", [])
            if type_code not in types:
                types.append(type_code)
                self._write_index(index)

    def set_org_code(self, issuer: str, org_code: str) -> bool:
        """Record *issuer*'s organisation code (published in the trust list). True when it changed."""
        with self._locked():
            index = self._read_index()
            meta = index["issuers"].get(issuer)
            if meta is None:
                raise KeyringError(f"unknown issuer {issuer!r}")
            if meta.get("org_code") == org_code:
                return False
            meta["org_code"] = org_code
            self._write_index(index)
        return True

    # -- rotation -----------------------------------------------------------------------
    def rotate(self, issuer: str, grace: int, now: float | None = None) -> bytes:
        """Make a new signing key for *issuer*; the old one verifies for *grace* more seconds."""
        now = time.time() if now is None else now
        with self._locked():
            index = self._read_index()
            if issuer not in index["issuers"]:
                raise KeyringError(f"unknown issuer {issuer!r}")
            current = [k for k in index["keys"] if k["issuer"] == issuer]
            alg = "SM2" if current and current[-1].get("alg") == sm2.JWS_ALG else "ES256"  # the issuer keeps its own
            for entry in index["keys"]:
                if entry["issuer"] == issuer and entry["retired_at"] is None:
                    entry["retired_at"] = int(now)
                    entry["verify_until"] = int(now) + grace
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path / f"{entry['kid']}.key.pem")
            kid = self._add_key(index, issuer, now, alg)
            self._write_index(index)
        self._signers.pop(issuer, None)
        return bytes.fromhex(kid)

    def _add_key(self, index: dict[str, Any], issuer: str, now: float, alg: str = DEFAULT_SIGNING_ALG) -> str:
        private = generate_key(alg)
        kid = key_id(private.public_key()).hex()
        if any(k["kid"] == kid for k in index["keys"]):  # 2^-64; refuse rather than overwrite
            raise KeyringError("key id collision; try again")
        _write_private(self.path / f"{kid}.key.pem", _pem_private(private))
        _write_atomic(self.path / f"{kid}.pub.pem", _pem_public(private.public_key()), 0o644)
        index["keys"].append(
            {"kid": kid, "issuer": issuer, "alg": ALG_NAMES[alg_for_key(private.public_key())],
             "created_at": int(now), "retired_at": None,
             "verify_until": None}
        )
        return kid

    # -- reading ------------------------------------------------------------------------
    def index(self) -> dict[str, Any]:
        """The index, re-read when the file changed (another process rotated)."""
        try:
            stat = (self.path / INDEX).stat()
            mtime = stat.st_mtime_ns ^ (stat.st_ino << 1)
        except FileNotFoundError:
            raise KeyringError(f"no keyring at {self.path}; run 'citycode init'") from None
        if self._cache is None or self._cache[0] != mtime:
            self._cache = (mtime, self._read_index())
            self._signers.clear()
        return self._cache[1]

    def version(self) -> int:
        """Changes whenever the index is rewritten (a rotation, a new issuer), in any process."""
        self.index()
        assert self._cache is not None
        return self._cache[0]

    def issuers(self) -> dict[str, IssuerInfo]:
        return {
            iid: IssuerInfo(iid, meta["name"], tuple(meta["kinds"]), tuple(meta.get("cert_types", [])),
                            meta.get("org_code"))
            for iid, meta in self.index()["issuers"].items()
        }

    def signer(self, issuer: str) -> Signer:
        """The current signing key of *issuer*."""
        index = self.index()
        cached = self._signers.get(issuer)
        if cached is not None:
            return cached
        active = [k for k in index["keys"] if k["issuer"] == issuer and k["retired_at"] is None]
        if not active:
            raise KeyringError(f"issuer {issuer!r} has no signing key")
        kid = active[-1]["kid"]
        private = self._load_private(self.path / f"{kid}.key.pem")
        signer = Signer(issuer=issuer, kid=bytes.fromhex(kid), private_key=private, city=self.city)
        self._signers[issuer] = signer
        return signer

    def trusted_keys(self, now: float, until: int, *, include_retired: bool = False) -> list[TrustedKey]:
        """Every key a verifier should accept now; an active key is listed as valid *until*. With
        *include_retired*, also the keys whose grace has passed (valid until then): to check what a code signed
        in their time proves, never to admit anyone now."""
        index = self.index()
        keys = []
        for entry in index["keys"]:
            verify_until = entry["verify_until"]
            if verify_until is not None and verify_until <= now and not include_retired:
                continue
            public = load_public_pem((self.path / f"{entry['kid']}.pub.pem").read_bytes())
            meta = index["issuers"][entry["issuer"]]
            keys.append(
                TrustedKey(
                    kid=bytes.fromhex(entry["kid"]),
                    issuer=entry["issuer"],
                    public_key=public,
                    alg=alg_for_key(public),
                    not_before=entry["created_at"],
                    not_after=verify_until if verify_until is not None else until,
                    kinds=frozenset(meta["kinds"]),
                    issuer_name=meta["name"],
                    cert_types=frozenset(meta.get("cert_types", [])),
                    org_code=meta.get("org_code"),
                )
            )
        return keys

    def anchor_private(self) -> SigningKey:
        return self._load_private(self.path / ANCHOR_KEY)

    def anchor_alg(self) -> str:
        """The configuration's name of the algorithm the anchor signs with: ``ES256`` or ``SM2`` (before the
        anchor exists, the one it will be made with)."""
        if not (self.path / ANCHOR_KEY).exists():
            return self.signing_alg or DEFAULT_SIGNING_ALG
        return _config_alg(self.anchor_private())

    def anchor_public_pem(self) -> bytes:
        return _pem_public(self.anchor_private().public_key())

    def list_keys(self) -> list[dict[str, Any]]:
        return [dict(k) for k in self.index()["keys"]]

    # -- internals ----------------------------------------------------------------------
    def _load_private(self, path: Path) -> SigningKey:
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            raise KeyringError(f"private key {path.name} is missing") from None
        if sm2.is_private_pem(pem):
            try:
                return sm2.Sm2PrivateKey.from_pem(pem)
            except sm2.Sm2Unavailable as exc:
                raise KeyringError(f"{path.name} is an SM2 key: {exc}") from None
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise KeyringError(f"{path.name} is not a P-256 or SM2 key")
        return key

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read_index(self, missing_ok: bool = False) -> dict[str, Any]:
        try:
            data = json.loads((self.path / INDEX).read_text())
        except FileNotFoundError:
            if missing_ok:
                return {"version": 1, "issuers": {}, "keys": []}
            raise KeyringError(f"no keyring at {self.path}; run 'citycode init'") from None
        except (ValueError, OSError) as exc:
            raise KeyringError(f"keyring index is damaged: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != 1:
            raise KeyringError("keyring index has an unknown version")
        return data

    def _write_index(self, index: dict[str, Any]) -> None:
        _write_atomic(self.path / INDEX, json.dumps(index, indent=2, sort_keys=True).encode(), 0o600)
        self._cache = None
