"""The certificate commands of ``citycode``: departments, types, issue, show (亮证), status lists seen by an
offline gate, API keys and frozen identities. Exit 0 success, 1 refused, 2 usage or input error."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeservice.demo import DEMO_COMPANY
from sdk.certid import ALPHANUMERIC, CertificateId, uscc_check

CITYCODE = str(Path(sys.executable).with_name("citycode"))


def _env(home: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
            "CITYCODE_HOME": str(home), "CITYCODE_CODE_LIFETIME": "600"}


@pytest.fixture
def env(tmp_path):
    return _env(tmp_path / "home")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One initialised home (demo data) for the tests that only read it or add to it."""
    env = _env(tmp_path_factory.mktemp("shared") / "home")
    result = run(env, "init")
    assert result.returncode == 0, result.stderr
    return env, json.loads(result.stdout)


def run(env, *args, input=None):
    return subprocess.run([CITYCODE, *args], env=env, capture_output=True, text=True, input=input, timeout=60)


def ok(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def uscc(first17: str) -> str:
    return first17 + uscc_check(first17)


def test_certificate_lifecycle_seen_by_an_offline_gate(env, tmp_path):
    org = uscc("11370200009876543")
    dept = ok(run(env, "dept", "add", "--id", "health-insurance", "--name", "City Health Insurance",
                  "--org-code", org))
    assert dept["org_code"] == org and len(dept["kid"]) == 16
    cert_type = ok(run(env, "cert-type", "add", "--code", "YBPZ", "--name", "Medical insurance card",
                       "--dept", "health-insurance", "--holder", "resident", "--validity-days", "730",
                       "--field", "name", "--field", "birth_date:date:private", "--field", "grade:int",
                       "--predicate", "age_over_18:birth_date"))
    assert cert_type["disclosable"] == ["name", "grade", "age_over_18"]
    holder = ok(run(env, "resident", "add", "--name", "Sun Li", "--birth-date", "1990-04-05"))["id"]

    cert = ok(run(env, "cert", "issue", "--type", "YBPZ", "--holder", holder, "--field", "name=Sun Li",
                  "--field", "birth_date=1990-04-05", "--field", "grade=2", "--number", "YB-0001"))
    assert str(CertificateId.parse(cert["id"])) == cert["id"]
    assert cert["id"].startswith(f"1.2.156.3005.2.YBPZ.{org}.")
    assert (cert["type"], cert["number"], cert["holder"], cert["issuer"], cert["status"]) == (
        "YBPZ", "YB-0001", holder, "health-insurance", "valid")
    assert cert["fields"] == {"name": "Sun Li", "birth_date": "1990-04-05", "grade": 2}

    png = tmp_path / "cert.png"
    shown = run(env, "cert", "show", cert["id"], "--fields", "name,age_over_18", "--png", str(png))
    assert shown.returncode == 0, shown.stderr
    code = shown.stdout.strip()
    assert code.startswith("CC1:") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    trust, anchor, status = tmp_path / "trust.jwt", tmp_path / "anchor.pem", tmp_path / "status.jwt"
    ok(run(env, "trust", "export", "-o", str(trust), "--anchor-out", str(anchor)))
    gate_env = _env(tmp_path / "gate")  # the gate holds nothing but the files it synchronised

    def gate(*extra):
        return run(gate_env, "verify", "--trust", str(trust), "--anchor", str(anchor), *extra, code)

    def export_status():
        exported = ok(run(env, "status", "export", "health-insurance", "-o", str(status)))
        assert exported["issuer"] == "health-insurance" and exported["bits"] == 2

    export_status()
    accepted = gate("--status", str(status))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    result = json.loads(accepted.stdout)
    assert result["fields"] == {"name": "Sun Li", "age_over_18": True}  # never the birth date or the grade
    assert (result["cert_id"], result["cert_type"], result["issuer"]) == (cert["id"], "YBPZ", "health-insurance")

    unknown = gate()
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["reason"] == "status_unknown"

    for command, expected in [("suspend", "suspended"), ("reinstate", "ok"), ("revoke", "revoked")]:
        changed = ok(run(env, "cert", command, cert["id"]))
        assert changed == {"id": cert["id"], "status": {"suspend": "suspended", "reinstate": "valid",
                                                         "revoke": "revoked"}[command]}
        export_status()
        seen = gate("--status", str(status))
        assert seen.returncode == (0 if expected == "ok" else 1)
        assert json.loads(seen.stdout)["reason"] == expected, seen.stdout


def test_scenic_site_takes_the_elderly_card_only_when_it_shows_age_over_60(shared):
    env, _ = shared
    [elderly] = ok(run(env, "cert", "list", "--type", "LNYD"))
    codes = []
    for fields in ("age_over_60", "name"):
        shown = run(env, "cert", "show", elderly["id"], "--fields", fields)
        assert shown.returncode == 0, shown.stderr
        codes.append(shown.stdout.strip())
    # With the service's own keys, verify loads the service's current status lists.
    checked = run(env, "verify", "--scene", "scenic-elderly", "--batch", "-", input="\n".join(codes) + "\n")
    assert checked.returncode == 1
    results = [json.loads(line) for line in checked.stdout.splitlines()]
    assert [r["reason"] for r in results] == ["ok", "not_entitled"]
    assert results[0]["fields"] == {"age_over_60": True} and results[1]["fields"] == {"name": "Li Wei"}


def _mistyped_id() -> str:
    good = str(CertificateId.build("LNYD", uscc("11370200004512345"), "00000001", 1))
    wrong = next(c for c in ALPHANUMERIC if c != good[-1])
    return good[:-1] + wrong


SPJY_FIELDS = ["--field", "company_name=Harbour Noodle House", "--field", "operating_items=noodles",
               "--field", "address=18 Zhongshan Road"]


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        (["cert", "show", _mistyped_id(), "--fields", "name"], "input_error", "check character"),
        (["cert", "issue", "--type", "SPJY", "--holder", DEMO_COMPANY, *SPJY_FIELDS, "--field", "catering=maybe"],
         "input_error", "catering"),
        (["cert", "issue", "--type", "SPJY", "--holder", DEMO_COMPANY, *SPJY_FIELDS, "--field", "catering"],
         "input_error", "NAME=VALUE"),
        (["cert-type", "add", "--code", "XX", "--name", "X", "--dept", "civil-affairs", "--holder", "resident",
          "--field", "weight:float"], "input_error", "TYPE"),
        (["cert-type", "add", "--code", "XX", "--name", "X", "--dept", "civil-affairs", "--holder", "resident",
          "--field", "name", "--predicate", "age_over_60:name"], "input_error", "date field"),
        (["dept", "add", "--id", "tax", "--name", "Tax", "--org-code", "113702000045123450"], "input_error",
         "check character"),
        (["status", "export", "nobody", "-o", "/dev/null"], "not_found", "nobody"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(shared, args, error, words):
    env, _ = shared
    result = run(env, *args)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    failure = json.loads(result.stderr)
    assert failure["error"] == error and words in failure["message"], failure


def test_a_status_file_that_is_not_a_status_list_exits_2(shared, tmp_path):
    env, _ = shared
    bogus = tmp_path / "status.jwt"
    bogus.write_text("eyJhbGciOiJub25lIn0.e30.\n")
    result = run(env, "verify", "--status", str(bogus), "CC1:X")
    assert result.returncode == 2 and json.loads(result.stderr)["error"] == "status_list_error"


def _elderly_gate_files(env, tmp_path):
    """The files an offline gate holds after a sync (trust list, anchor, civil affairs' status list) and a
    show code of the demo elderly card."""
    [elderly] = ok(run(env, "cert", "list", "--type", "LNYD"))
    shown = run(env, "cert", "show", elderly["id"], "--fields", "age_over_60")
    assert shown.returncode == 0, shown.stderr
    trust, anchor, status = tmp_path / "trust.jwt", tmp_path / "anchor.pem", tmp_path / "status.jwt"
    ok(run(env, "trust", "export", "-o", str(trust), "--anchor-out", str(anchor)))
    ok(run(env, "status", "export", "civil-affairs", "-o", str(status)))
    return ["--trust", str(trust), "--anchor", str(anchor), "--status", str(status)], shown.stdout.strip()


def test_verify_takes_a_scene_from_a_file_with_its_own_status_age(shared, tmp_path):
    env, _ = shared
    files, code = _elderly_gate_files(env, tmp_path)
    gate_env = _env(tmp_path / "gate")
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=300)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def gate(max_status_age: int, *extra: str):
        scene = tmp_path / f"scene-{max_status_age}.json"
        scene.write_text(json.dumps({"name": "night-turnstile", "kinds": ["cert"], "single_use": False,
                                     "cert_rules": {"LNYD": ["age_over_60"]}, "max_status_age": max_status_age}))
        return run(gate_env, "verify", *files, "--scene-file", str(scene), *extra, code)

    stale = gate(120, "--at", at)  # the list is about 300 s old at --at; this scene allows 120 s
    assert stale.returncode == 1, stale.stderr
    result = json.loads(stale.stdout)
    assert result["reason"] == "status_stale" and result["scene"] == "night-turnstile"
    assert result["status_age"] >= 290 and "scene allows 120 s" in result["detail"]
    fresh = gate(3600, "--at", at)  # the same list, a scene that allows an hour
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert json.loads(fresh.stdout)["scene"] == "night-turnstile"
    assert gate(120).returncode == 0  # now, the same list is young enough for the strict scene


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read scene file"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"name": "x"}', "lacks"),
        ('{"name": "x", "kinds": ["cert"], "max_status_age": 0}', "max_status_age must be positive"),
        ('{"name": "x", "kinds": ["cert"], "max_status_age": "soon"}', "malformed"),
        ('{"name": "x", "kinds": ["cert"], "max_status_age": 1e400}', "malformed"),
        ('{"name": "x", "kinds": ["teleport"]}', "unknown or no kinds"),
        ('{"name": "x", "kinds": "cert"}', "kinds must be a list"),
    ],
)
def test_a_bad_scene_file_exits_2_with_a_clear_message(shared, tmp_path, content, words):
    env, _ = shared
    scene = tmp_path / "scene.json"
    if content is not None:
        scene.write_text(content)
    result = run(env, "verify", "--scene-file", str(scene), "CC1:X")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    failure = json.loads(result.stderr)
    assert failure["error"] == "scene_error" and words in failure["message"] and str(scene) in failure["message"]


def test_scene_and_scene_file_together_are_a_usage_error(shared, tmp_path):
    env, _ = shared
    scene = tmp_path / "scene.json"
    scene.write_text('{"name": "x", "kinds": ["cert"]}')
    result = run(env, "verify", "--scene", "inspection", "--scene-file", str(scene), "CC1:X")
    assert result.returncode == 2 and json.loads(result.stderr)["error"] == "usage"


def test_apikey_add_prints_the_key_once(shared):
    env, _ = shared
    client = ok(run(env, "apikey", "add", "--role", "verifier", "--name", "Noodle inspector",
                    "--types", "SPJY", "--predicates", "catering"))
    assert client["role"] == "verifier" and client["name"] == "Noodle inspector" and isinstance(client["id"], int)
    assert client["key"].startswith("cc_v_") and len(client["key"]) > 40


def test_a_frozen_identity_gets_no_codes_until_unfrozen(shared):
    env, init = shared
    pid = init["demo_residents"][2]
    assert ok(run(env, "resident", "freeze", pid))["frozen"] is True
    refused = run(env, "code", "issue", pid)
    assert refused.returncode == 2 and "frozen" in json.loads(refused.stderr)["message"]
    assert ok(run(env, "resident", "unfreeze", pid))["frozen"] is False
