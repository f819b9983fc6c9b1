"""The transit commands on the embedded default: a software phone's ride codes through the gate simulator
(text and images), a scenic turnstile taking an elderly card's show code, operators, accounts, bad input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CITYCODE = str(Path(sys.executable).with_name("citycode"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("transit-cli") / "home"
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
                   "CITYCODE_HOME": str(home)}
    init = run(environment, "init")
    assert init.returncode == 0, init.stderr
    environment["DEMO"] = json.dumps(json.loads(init.stdout)["demo_residents"])
    return environment


def run(env, *args, input=None):
    return subprocess.run([CITYCODE, *args], env=env, capture_output=True, text=True, input=input, timeout=90)


def demo(env, index: int) -> str:
    return json.loads(env["DEMO"])[index]


def decisions(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if '"opened"' in line]


def test_ride_codes_open_a_metro_gate_once_and_the_exit_pairs_them(env, tmp_path):
    student = demo(env, 2)
    codes = run(env, "ride", "codes", student, "--count", "2")
    assert codes.returncode == 0, codes.stderr
    first, second = codes.stdout.splitlines()  # base45 has spaces: one code a line
    store = str(tmp_path / "g1.sqlite3")
    entry = run(env, "gate", "run", "--operator", "qd-metro", "--gate-id", "G101-1", "--station", "101",
                "--direction", "in", "--store", store, input=f"{first}\n{first}\n{second}\n")
    assert entry.returncode == 1  # not every scan opened
    assert [(d["opened"], d["reason"]) for d in decisions(entry.stdout)] == [
        (True, "ok"), (False, "replayed"), (False, "passback")]
    assert decisions(entry.stdout)[0]["card_type"] == "student"
    out = run(env, "gate", "run", "--operator", "qd-metro", "--gate-id", "G105-1", "--station", "105",
              "--direction", "out", "--store", str(tmp_path / "g2.sqlite3"), second)
    assert out.returncode == 0 and decisions(out.stdout)[0]["opened"]
    records = [json.loads(line) for line in run(env, "gate", "records", "--store", store).stdout.splitlines()]
    assert [r["reason"] for r in records] == ["ok", "replayed", "passback"]
    assert all(r["upload_state"] == "pending" for r in records)


def test_the_gate_reads_codes_from_images_and_refuses_a_stale_one(env, tmp_path):
    pid = demo(env, 1)
    made = run(env, "ride", "codes", pid, "--png", str(tmp_path / "ride.png"))
    assert made.returncode == 0, made.stderr
    fresh = run(env, "gate", "run", "--operator", "qd-bus", "--gate-id", "B1", "--line", "1", "--store",
                str(tmp_path / "b1.sqlite3"), "--image", str(tmp_path / "ride.png"))
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    made_at = decisions(fresh.stdout)[0]["issued_at"]
    stale_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(made_at + 60 + 30 + 5))  # validity + leeway + 5 s
    later = run(env, "gate", "run", "--operator", "qd-bus", "--gate-id", "B2", "--line", "1", "--store",
                str(tmp_path / "b2.sqlite3"), "--at", stale_at, input=f"@{tmp_path / 'ride.png'}\n")
    assert later.returncode == 1
    assert decisions(later.stdout)[0]["reason"] == "code_stale"


def test_a_scenic_turnstile_lets_an_elderly_card_in_free_and_records_only_the_entitlement(env, tmp_path):
    elder = demo(env, 0)
    listed = json.loads(run(env, "cert", "list").stdout)
    cert = next(c for c in listed if c["type"] == "LNYD" and c["holder"] == elder)
    shown = run(env, "cert", "show", cert["id"], "--fields", "age_over_60")
    assert shown.returncode == 0, shown.stderr
    code = shown.stdout.strip()  # the show code, one line
    gate = run(env, "gate", "run", "--operator", "laoshan", "--gate-id", "T1", "--station", "taiqing", "--store",
               str(tmp_path / "t1.sqlite3"), code)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    (record,) = [json.loads(line) for line in
                 run(env, "gate", "records", "--store", str(tmp_path / "t1.sqlite3")).stdout.splitlines()]
    assert record["entitlement"] == "LNYD:age_over_60" and record["account"] is None
    assert elder not in json.dumps(record)  # the holder is not in the operator's record
    with sqlite3.connect(tmp_path / "t1.sqlite3") as store:  # nor anywhere in the gate's store
        for (table,) in store.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            assert elder not in repr(store.execute(f"SELECT * FROM {table}").fetchall()), table
    name_only = run(env, "cert", "show", cert["id"], "--fields", "name").stdout.strip()
    refused = run(env, "gate", "run", "--operator", "laoshan", "--gate-id", "T1", "--station", "taiqing",
                  "--store", str(tmp_path / "t1.sqlite3"), name_only)
    assert refused.returncode == 1 and decisions(refused.stdout)[0]["reason"] == "not_entitled"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--operator", "nobody", "--gate-id", "G", "--station", "101"], "no operator"),
    (["--operator", "qd-metro", "--gate-id", "G", "--station", "999", "--direction", "in"], "station"),
    (["--operator", "qd-metro", "--gate-id", "G", "--station", "101"], "direction"),
    (["--operator", "laoshan", "--gate-id", "G", "--station", "everest"], "site"),
    (["--operator", "qd-bus", "--gate-id", "G", "--line", "1", "--scene", "teleport"], "unknown scene"),
    (["--operator", "qd-bus", "--gate-id", "G", "--line", "1", "--upload", "http://x"], "--device-key"),
])
def test_impossible_gates_are_usage_errors(env, tmp_path, args, fragment):
    result = run(env, "gate", "run", *args, "--store", str(tmp_path / "x.sqlite3"), "CC1:X")
    assert result.returncode == 2, result.stdout
    assert fragment in json.loads(result.stderr)["message"]


def test_operators_and_accounts_from_the_command_line(env, tmp_path):
    fares = tmp_path / "fares.json"
    fares.write_text(json.dumps({"lines": {"801": 200}, "default": 200}))
    added = run(env, "operator", "add", "--id", "jiaozhou-bus", "--name", "Jiaozhou Bus", "--kind", "bus",
                "--fares", str(fares), "--discount", "student=50", "--discount", "elderly=0")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["discounts"] == {"student": 50, "elderly": 0}
    assert "jiaozhou-bus" in [o["id"] for o in json.loads(run(env, "operator", "list").stdout)]
    again = run(env, "operator", "add", "--id", "jiaozhou-bus", "--name", "X", "--kind", "bus", "--fares", str(fares))
    assert again.returncode == 2 and json.loads(again.stderr)["error"] == "exists"
    fares.write_text("{not json")
    broken = run(env, "operator", "add", "--id", "x-bus", "--name", "X", "--kind", "bus", "--fares", str(fares))
    assert broken.returncode == 2 and "cannot read fares" in json.loads(broken.stderr)["message"]
    fares.write_text(json.dumps({"lines": {"1": 100}}))
    incomplete = run(env, "operator", "add", "--id", "x-bus", "--name", "X", "--kind", "bus", "--fares", str(fares))
    assert incomplete.returncode == 2 and json.loads(incomplete.stderr)["error"] == "invalid_fares"
    account = run(env, "transit", "account", demo(env, 1), "--card-type", "disabled", "--fare-limit", "500")
    assert account.returncode == 0, account.stderr
    body = json.loads(account.stdout)
    assert (body["card_type"], body["fare_limit"]) == ("disabled", 500)
    missing = run(env, "transit", "account", "aaaaaaaaaaaaaaaa")
    assert missing.returncode == 2 and json.loads(missing.stderr)["error"] == "not_found"
    device = run(env, "client", "add", "--role", "device", "--operator", "qd-bus", "--name", "Bus 301 front")
    assert device.returncode == 0 and json.loads(device.stdout)["operator"] == "qd-bus"
    both = run(env, "client", "add", "--role", "device", "--operator", "qd-bus", "--office", "central-hall-w3",
               "--name", "confused")
    assert both.returncode == 2
