"""Issuer signing keys and the trust-anchor key, kept in the data directory.

Layout under ``<home>/keys`` (directory mode 0700, private key files 0600)::

    index.json            issuers (name, kinds, cert_types, org_code) and the metadata of every key (no secrets)
    anchor.key.pem        trust-anchor private key (signs trust lists only)
    <kid>.key.pem         an issuer's private signing key, deleted when the key retires
    <kid>.pub.pem         its public key, kept while codes it signed may still be shown

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sdk.keys import TrustedKey, alg_for_key, key_id

INDEX = "index.json"
ANCHOR_KEY = "anchor.key.pem"


class KeyringError(RuntimeError):
    """The keyring is missing, damaged or asked for something it does not hold."""


@dataclass(frozen=True)
class Signer:
    """The key an issuer signs with now."""

    issuer: str
    kid: bytes
    private_key: ec.EllipticCurvePrivateKey

    @property
    def alg(self) -> int:
        return alg_for_key(self.private_key.public_key())


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


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_public(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class Keyring:
    """File-backed keyring. Safe for several processes: changes take an exclusive file lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cache: tuple[int, dict[str, Any]] | None = None
        self._signers: dict[str, Signer] = {}

    # -- set-up -------------------------------------------------------------------------
    def initialise(self, issuers: list[IssuerInfo], now: float | None = None) -> bool:
        """Create the anchor and one key per issuer where missing. True when anything was created."""
        now = time.time() if now is None else now
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        created = False
        with self._locked():
            index = self._read_index(missing_ok=True)
            if not (self.path / ANCHOR_KEY).exists():
                _write_private(self.path / ANCHOR_KEY, _pem_private(ec.generate_private_key(ec.SECP256R1())))
                created = True
            for info in issuers:
                meta = index["issuers"].setdefault(
                    info.id, {"name": info.name, "kinds": list(info.kinds), "cert_types": list(info.cert_types)}
                )
                if info.org_code is not None:
                    meta["org_code"] = info.org_code
                if not any(k["issuer"] == info.id and k["retired_at"] is None for k in index["keys"]):
                    self._add_key(index, info.id, now)
                    created = True
            self._write_index(index)
        return created

    def add_issuer(self, info: IssuerInfo, now: float | None = None) -> None:
        self.initialise([info], now)

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
            for entry in index["keys"]:
                if entry["issuer"] == issuer and entry["retired_at"] is None:
                    entry["retired_at"] = int(now)
                    entry["verify_until"] = int(now) + grace
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path / f"{entry['kid']}.key.pem")
            kid = self._add_key(index, issuer, now)
            self._write_index(index)
        self._signers.pop(issuer, None)
        return bytes.fromhex(kid)

    def _add_key(self, index: dict[str, Any], issuer: str, now: float) -> str:
        private = ec.generate_private_key(ec.SECP256R1())
        kid = key_id(private.public_key()).hex()
        if any(k["kid"] == kid for k in index["keys"]):  # 2^-64; refuse rather than overwrite
            raise KeyringError("key id collision; try again")
        _write_private(self.path / f"{kid}.key.pem", _pem_private(private))
        _write_atomic(self.path / f"{kid}.pub.pem", _pem_public(private.public_key()), 0o644)
        index["keys"].append(
            {"kid": kid, "issuer": issuer, "alg": "ES256", "created_at": int(now), "retired_at": None,
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
        signer = Signer(issuer=issuer, kid=bytes.fromhex(kid), private_key=private)
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
            public = serialization.load_pem_public_key((self.path / f"{entry['kid']}.pub.pem").read_bytes())
            meta = index["issuers"][entry["issuer"]]
            keys.append(
                TrustedKey(
                    kid=bytes.fromhex(entry["kid"]),
                    issuer=entry["issuer"],
                    public_key=public,  # type: ignore[arg-type]
                    alg=alg_for_key(public),  # type: ignore[arg-type]
                    not_before=entry["created_at"],
                    not_after=verify_until if verify_until is not None else until,
                    kinds=frozenset(meta["kinds"]),
                    issuer_name=meta["name"],
                    cert_types=frozenset(meta.get("cert_types", [])),
                    org_code=meta.get("org_code"),
                )
            )
        return keys

    def anchor_private(self) -> ec.EllipticCurvePrivateKey:
        return self._load_private(self.path / ANCHOR_KEY)

    def anchor_public_pem(self) -> bytes:
        return _pem_public(self.anchor_private().public_key())

    def list_keys(self) -> list[dict[str, Any]]:
        return [dict(k) for k in self.index()["keys"]]

    # -- internals ----------------------------------------------------------------------
    def _load_private(self, path: Path) -> ec.EllipticCurvePrivateKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise KeyringError(f"private key {path.name} is missing") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyringError(f"{path.name} is not a P-256 key")
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
