"""Other implementations of the Token Status List draft read our lists unchanged, and we read theirs.

(a) The draft's own examples: statuses packed least significant bits first, ZLIB, base64url.
(b) An independent implementation: the OpenWallet Foundation's ``@sd-jwt/jwt-status-list`` (npm, the
    implementation the draft's repository lists), run under Node.js. The package is installed once into
    ``.venv/interop/`` with the machine's npm; without node and npm the test skips, except under
    CI=true, where it fails. Node's own crypto checks our ES256 signature against the trust list's JWK.
"""

from __future__ import annotations

import fcntl
import json
import random
import shutil
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import jwt
import pytest

from issuers.keyring import IssuerInfo, Keyring
from issuers.statuslist import sign_status_list
from issuers.trustlist import sign_trust_list
from sdk import TrustList, load_anchor
from sdk.keys import b64u_decode, b64u_encode, public_key_to_jwk
from sdk.statuslist import INVALID, STATUS_LIST_TYPE, SUSPENDED, StatusList, encode_lst, pack
from tests.conftest import IN_CI

T0 = int(time.time())
CIVIL = IssuerInfo("civil-affairs", "City Civil Affairs Bureau", ("cert",), ("LNYD",), "11370200004512345P")

# draft-ietf-oauth-status-list, section 4.1 examples (also in its test vectors)
ONE_BIT = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]
ONE_BIT_BYTES = bytes.fromhex("b9a3")
ONE_BIT_LST = "eNrbuRgAAhcBXQ"
TWO_BIT = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]
TWO_BIT_BYTES = bytes.fromhex("c944f9")
TWO_BIT_LST = "eNo76fITAAPfAgc"

NPM_PACKAGE = "@sd-jwt/jwt-status-list"
NPM_VERSION = "0.19.0"
ROOT = Path(__file__).resolve().parents[1]
NPM_PREFIX = ROOT / ".venv" / "interop" / f"sd-jwt-status-list-{NPM_VERSION}"

READER_JS = r"""
// Reads a status list token with @sd-jwt/jwt-status-list and checks its signature with node:crypto.
const path = require("path");
const crypto = require("crypto");
const sl = require(path.join(process.argv[2], "node_modules", "@sd-jwt", "jwt-status-list"));
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  const out = {};
  if (request.token) {
    const list = sl.getListFromStatusListJWT(request.token);
    const all = list.statusList;
    out.bits = list.getBitsPerStatus();
    out.length = all.length;
    out.nonzero = [];
    for (let i = 0; i < all.length; i++) if (all[i] !== 0) out.nonzero.push([i, all[i]]);
    out.at = request.indices.map((i) => list.getStatus(i));
    const [header, payload, signature] = request.token.split(".");
    out.header = JSON.parse(Buffer.from(header, "base64url").toString("utf8"));
    const key = crypto.createPublicKey({ key: request.jwk, format: "jwk" });
    out.signature_valid = crypto.verify("sha256", Buffer.from(header + "." + payload),
      { key, dsaEncoding: "ieee-p1363" }, Buffer.from(signature, "base64url"));
  }
  if (request.make) {
    out.lst = new sl.StatusList(request.make.statuses, request.make.bits).compressStatusList();
  }
  process.stdout.write(JSON.stringify(out));
});
"""


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    keyring = Keyring(tmp_path_factory.mktemp("interop") / "keys")
    keyring.initialise([CIVIL], now=T0)
    return keyring


@pytest.fixture(scope="module")
def trust(ring: Keyring) -> TrustList:
    return TrustList.load(sign_trust_list(ring, validity=86400, now=T0), load_anchor(ring.anchor_public_pem()), at=T0)


def signed(ring: Keyring, lst: str, bits: int) -> str:
    """A status list token around *lst* (any bits), signed as sign_status_list signs."""
    signer = ring.signer("civil-affairs")
    claims = {"iss": "civil-affairs", "sub": "https://city.example/status/civil-affairs", "iat": T0,
              "exp": T0 + 86400, "ttl": 300, "status_list": {"bits": bits, "lst": lst}}
    return jwt.encode(claims, signer.private_key, algorithm="ES256",
                      headers={"typ": STATUS_LIST_TYPE, "kid": b64u_encode(signer.kid)})


# -- (a) the draft's examples ------------------------------------------------------------------
def test_draft_one_bit_example_packs_to_b9a3():
    packed = pack(len(ONE_BIT), dict(enumerate(ONE_BIT)), 1)
    assert packed == ONE_BIT_BYTES
    assert encode_lst(packed) == ONE_BIT_LST


def test_draft_two_bit_example_packs_to_c944f9():
    packed = pack(len(TWO_BIT), dict(enumerate(TWO_BIT)), 2)
    assert packed == TWO_BIT_BYTES
    assert encode_lst(packed) == TWO_BIT_LST


@pytest.mark.parametrize(("bits", "data", "statuses"), [(1, ONE_BIT_BYTES, ONE_BIT), (2, TWO_BIT_BYTES, TWO_BIT)])
def test_draft_examples_decode_through_status_list(bits, data, statuses):
    decoded = StatusList(issuer="x", uri="u", bits=bits, data=data, issued_at=T0, expires_at=None, ttl=None)
    assert decoded.size == len(statuses)
    assert [decoded.status(i) for i in range(decoded.size)] == statuses


@pytest.mark.parametrize(("bits", "lst", "statuses"), [(1, ONE_BIT_LST, ONE_BIT), (2, TWO_BIT_LST, TWO_BIT)])
def test_draft_lst_strings_load_from_a_signed_token(ring, trust, bits, lst, statuses):
    loaded = StatusList.load(signed(ring, lst, bits), trust, at=T0)
    assert loaded.bits == bits
    assert [loaded.status(i) for i in range(loaded.size)] == statuses


def test_four_and_eight_bit_lists_pack_least_significant_first():
    assert pack(2, {0: 0x1, 1: 0xA}, 4) == bytes([0xA1])
    assert pack(3, {0: 7, 2: 255}, 8) == bytes([7, 0, 255])
    for bits in (4, 8):
        values = {i: (i * 7) % (1 << bits) for i in range(40)}
        data = pack(40, values, bits)
        decoded = StatusList(issuer="x", uri="u", bits=bits, data=data, issued_at=T0, expires_at=None, ttl=None)
        assert [decoded.status(i) for i in range(40)] == [values[i] for i in range(40)]


# -- (b) an independent implementation --------------------------------------------------------------
def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI=true: the interoperability test must run)")
    pytest.skip(message)


def _installed() -> bool:
    manifest = NPM_PREFIX / "node_modules" / "@sd-jwt" / "jwt-status-list" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"] == NPM_VERSION
    except (OSError, ValueError, KeyError):
        return False


@pytest.fixture(scope="module")
def node_reader(tmp_path_factory: pytest.TempPathFactory):
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed to run @sd-jwt/jwt-status-list")
    assert node is not None and npm is not None
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    with open(NPM_PREFIX / ".install.lock", "w") as lock:  # several pytest workers may get here at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            try:
                proc = subprocess.run(
                    [npm, "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund", "--loglevel=error",
                     f"{NPM_PACKAGE}@{NPM_VERSION}"],
                    capture_output=True, text=True, timeout=300, check=False,
                )
            except subprocess.TimeoutExpired:
                _unavailable(f"npm install {NPM_PACKAGE}@{NPM_VERSION} timed out")
            if proc.returncode != 0 or not _installed():
                _unavailable(f"npm install {NPM_PACKAGE}@{NPM_VERSION} failed: {proc.stderr.strip()[-500:]}")
    script = tmp_path_factory.mktemp("node") / "read_status_list.js"
    script.write_text(READER_JS)

    def read(request: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run([node, str(script), str(NPM_PREFIX)], input=json.dumps(request), capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return read


def jwk_of(trust: TrustList, token: str) -> dict[str, str]:
    """The signing key's JWK as the trust list publishes it (found by the token's kid)."""
    key = trust.get(b64u_decode(jwt.get_unverified_header(token)["kid"]))
    assert key is not None
    return public_key_to_jwk(key.public_key)


def test_independent_implementation_reads_our_signed_list_unchanged(ring, trust, node_reader):
    size = 1_000_000
    rng = random.Random(36904)
    chosen = rng.sample(range(size), size // 100)
    statuses = {index: INVALID if n % 4 else SUSPENDED for n, index in enumerate(chosen)}
    statuses[size - 1] = 3  # the last entry, and the application-specific value
    token = sign_status_list(ring.signer("civil-affairs"), statuses, size=size,
                             uri="https://city.example/status/civil-affairs", ttl=300, validity=86400, now=T0)
    ours = StatusList.load(token, trust, at=T0)
    probe = [0, 1, size // 2, size - 1, *chosen[:50], *rng.sample(range(size), 50)]

    theirs = node_reader({"token": token, "indices": probe, "jwk": jwk_of(trust, token)})

    assert theirs["signature_valid"] is True
    assert theirs["header"]["typ"] == "statuslist+jwt" and theirs["header"]["alg"] == "ES256"
    assert theirs["bits"] == 2 and theirs["length"] == size == ours.size
    assert {index: value for index, value in theirs["nonzero"]} == statuses
    assert theirs["at"] == [ours.status(i) for i in probe]


@pytest.mark.parametrize(("bits", "lst", "statuses"), [(1, ONE_BIT_LST, ONE_BIT), (2, TWO_BIT_LST, TWO_BIT)])
def test_independent_implementation_reads_the_draft_examples_from_our_tokens(ring, trust, node_reader, bits, lst,
                                                                              statuses):
    token = signed(ring, lst, bits)
    theirs = node_reader({"token": token, "indices": list(range(len(statuses))), "jwk": jwk_of(trust, token)})
    assert theirs["signature_valid"] is True
    assert theirs["bits"] == bits and theirs["at"] == statuses


def test_independent_signature_check_is_real(ring, trust, node_reader):
    token = sign_status_list(ring.signer("civil-affairs"), {3: INVALID}, size=64, uri="u", ttl=60, validity=600, now=T0)
    header, payload, signature = token.split(".")
    altered = sign_status_list(ring.signer("civil-affairs"), {4: INVALID}, size=64, uri="u", ttl=60, validity=600,
                               now=T0).split(".")[1]
    assert altered != payload
    theirs = node_reader({"token": f"{header}.{altered}.{signature}", "indices": [3, 4],
                          "jwk": jwk_of(trust, token)})
    assert theirs["signature_valid"] is False and theirs["at"] == [0, 1]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_we_read_lists_the_independent_implementation_makes(ring, trust, node_reader, bits):
    rng = random.Random(bits)
    values = [rng.randrange(1 << bits) if rng.random() < 0.2 else 0 for _ in range(1000)]
    made = node_reader({"make": {"statuses": values, "bits": bits}})
    loaded = StatusList.load(signed(ring, made["lst"], bits), trust, at=T0)
    assert [loaded.status(i) for i in range(len(values))] == values
    # Compressed forms may differ between compressors; the packed bytes may not.
    assert zlib.decompress(b64u_decode(made["lst"])) == pack(len(values), dict(enumerate(values)), bits)
