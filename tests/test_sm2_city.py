"""A city that signs with SM2: ``CITYCODE_SIGNING_ALG=SM2 citycode init``, its identity codes, certificate show
codes and ride codes accepted by the SDK on a gate and by ``citycode verify``; its trust list and status lists
signed with SM2; the phone's device key still P-256."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from sdk import TrustList, Verifier, cose, load_anchor, sm2
from sdk.base45 import b45decode
from sdk.cose import parse
from sdk.statuslist import StatusCache
from verifiers.scenes import SCENES

CITYCODE = str(Path(sys.executable).with_name("citycode"))


def run(env, *args, input=None):
    return subprocess.run([CITYCODE, *args], env=env, capture_output=True, text=True, input=input, timeout=90)


def ok(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("sm2-city")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
           "CITYCODE_HOME": str(root / "home"), "CITYCODE_SIGNING_ALG": "SM2"}
    demo = json.loads(ok(run(env, "init")))["demo_residents"]
    trust, anchor = root / "trust.jwt", root / "anchor.pem"
    ok(run(env, "trust", "export", "-o", str(trust), "--anchor-out", str(anchor)))
    statuses = []
    for issuer in ("civil-affairs", "city-transit"):
        path = root / f"{issuer}.status.jwt"
        ok(run(env, "status", "export", issuer, "-o", str(path)))
        statuses.append(path)
    gate_env = {k: v for k, v in env.items() if k not in ("CITYCODE_HOME", "CITYCODE_SIGNING_ALG")} | {
        "CITYCODE_HOME": str(root / "gate")}
    return {"env": env, "gate_env": gate_env, "demo": demo, "trust": trust, "anchor": anchor,
            "statuses": statuses, "root": root}


def gate_verifier(city) -> Verifier:
    trust = TrustList.load_file(city["trust"], load_anchor(city["anchor"]))
    cache = StatusCache()
    for path in city["statuses"]:
        cache.load(path.read_text(), trust)
    return Verifier(trust, leeway=30, status=cache)


def alg_of(code: str) -> int:
    return parse(b45decode(code[4:])).alg


def test_init_with_the_setting_makes_every_key_and_the_anchor_sm2(city):
    keys = json.loads(ok(run(city["env"], "keys", "list")))
    assert keys and {k["alg"] for k in keys} == {"SM2SM3"}
    assert isinstance(load_anchor(city["anchor"]), sm2.Sm2PublicKey)
    header = jwt.get_unverified_header(city["trust"].read_text().strip())
    assert header["alg"] == "SM2SM3"
    trust = TrustList.load_file(city["trust"], load_anchor(city["anchor"]))
    assert {key.alg for key in trust.keys.values()} == {cose.ALG_SM2}
    for path in city["statuses"]:
        assert jwt.get_unverified_header(path.read_text().strip())["alg"] == "SM2SM3"


def test_an_identity_code_passes_the_sdk_and_citycode_verify_with_and_without_the_service(city):
    code, _second = ok(run(city["env"], "code", "issue", city["demo"][0], "--count", "2",
                            "--png", str(city["root"] / "id.png"))).splitlines()
    assert alg_of(code) == cose.ALG_SM2
    result = gate_verifier(city).verify(code, SCENES["bus"])
    assert result.accepted and result.subject == city["demo"][0], result
    served = json.loads(ok(run(city["env"], "verify", code)))
    assert served["accepted"] and served["reason"] == "ok"
    at_gate = run(city["gate_env"], "verify", "--trust", str(city["trust"]), "--anchor", str(city["anchor"]),
                  "--image", str(city["root"] / "id-2.png"))
    assert at_gate.returncode == 0 and json.loads(at_gate.stdout)["subject"] == city["demo"][0], at_gate.stderr


def test_a_certificate_show_code_passes_with_the_sm2_status_list(city):
    [elderly] = json.loads(ok(run(city["env"], "cert", "list", "--type", "LNYD")))
    code = ok(run(city["env"], "cert", "show", elderly["id"], "--fields", "age_over_60")).strip()
    assert alg_of(code) == cose.ALG_SM2
    result = gate_verifier(city).verify(code, SCENES["scenic-elderly"])
    assert result.accepted and result.fields == {"age_over_60": True}, result
    status = [str(p) for p in city["statuses"]]
    checked = run(city["gate_env"], "verify", "--trust", str(city["trust"]), "--anchor", str(city["anchor"]),
                  "--status", status[0], "--status", status[1], "--scene", "scenic-elderly", code)
    assert checked.returncode == 0 and json.loads(checked.stdout)["reason"] == "ok", checked.stdout


def test_a_ride_code_passes_with_an_sm2_credential_and_a_p256_device_signature(city):
    codes = ok(run(city["env"], "ride", "codes", city["demo"][2], "--count", "1")).splitlines()
    ride = parse(b45decode(codes[0][4:]))
    assert ride.alg == cose.ALG_ES256  # the phone's key: P-256, as WebCrypto on every phone holds
    from sdk.ride import parse_ride_code

    credential = parse(parse_ride_code(ride.payload).credential)
    assert credential.alg == cose.ALG_SM2  # the platform's certificate of that key: SM2
    result = gate_verifier(city).verify(codes[0], SCENES["metro-gate"])
    assert result.accepted and result.kind == "ride", result
    gate = run(city["env"], "gate", "run", "--operator", "qd-metro", "--gate-id", "G1", "--station", "101",
               "--direction", "in", "--store", str(city["root"] / "g.sqlite3"), codes[0])
    assert gate.returncode == 0 and '"opened": true' in gate.stdout, gate.stdout + gate.stderr


def test_consent_fetches_sd_jwts_and_the_access_log_checkpoint_signed_with_sm2(city):
    from tests.test_cli_consent import fill_log

    count = fill_log(Path(city["env"]["CITYCODE_HOME"]))  # real requests, approvals and SM2-signed SD-JWT fetches
    mark = json.loads(ok(run(city["env"], "audit", "checkpoint")))
    assert mark["issuer"] == "city-audit" and mark["seq"] >= count
    report = json.loads(ok(run(city["env"], "audit", "verify")))
    assert report["ok"] and report["checkpoints"] >= 1, report


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("CITYCODE_SIGNING_ALG", "RSA", "CITYCODE_SIGNING_ALG must be ES256 or SM2"),
    ("CITYCODE_ISSUER_SIGNING_ALGS", "city-id", "issuer=ALG pairs"),
    ("CITYCODE_ISSUER_SIGNING_ALGS", "city-id=SM9", "must be ES256 or SM2"),
    ("CITYCODE_ISSUER_SIGNING_ALGS", "city-id=SM2,city-id=ES256", "names city-id twice"),
])
def test_a_bad_signing_setting_stops_init_with_a_message_naming_it(tmp_path, variable, value, says):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
           "CITYCODE_HOME": str(tmp_path / "home"), variable: value}
    result = run(env, "init")
    assert result.returncode == 2 and json.loads(result.stderr)["error"] == "config_error"
    assert says in json.loads(result.stderr)["message"]
    assert not (tmp_path / "home" / "keys").exists()


def test_per_issuer_setting_signs_one_issuer_with_sm2_in_an_es256_city(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
           "CITYCODE_HOME": str(tmp_path / "home"), "CITYCODE_ISSUER_SIGNING_ALGS": "city-transit=SM2",
           "CITYCODE_DEMO_DATA": "0"}
    ok(run(env, "init"))
    algs = {k["issuer"]: k["alg"] for k in json.loads(ok(run(env, "keys", "list")))}
    assert algs["city-transit"] == "SM2SM3" and algs["city-id"] == "ES256"
