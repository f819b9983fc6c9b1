"""A city's operating day on one machine: gate records uploaded, verified, paired and cleared.

    python -m bench.cityday [--taps 5000000] [--gates 10000] [--quick] [--out FILE] [--no-memory-check]

The city: two metro operators with lines and transfer stations (the demo's ``qd-metro`` and ``xh-metro``,
added here), a bus company with flat fares (``qd-bus``) and a scenic site (``laoshan``); ``--gates`` gates and
bus readers shared among them; phones of every card type, each with its own P-256 device key and a credential
of the service's transit key; taps spread over the day with a morning and an evening peak; entries never
tapped out and exits without an entry (unpaired), passback refusals, the same ride code recorded twice under
new record ids, and a twentieth of the gates uploading late (after a first clearing, which is then run again).

Stages (a progress bar each on a terminal, quiet otherwise):

1. *codes* (not timed): every tap's ride code made as a phone makes it (``issuers.rides.make_ride_code`` with the
   phone's key and credential), in worker processes; each gate's records written to its own ``sdk.gate``
   ``GateStore`` in the form ``Gate._record`` gives them;
2. *upload* (timed): the SDK's ``Uploader`` of every gate sending its store, from ``--concurrency`` threads, to
   ``POST /api/v1/gate/records`` of ``citycode serve`` (gunicorn) on PostgreSQL and Redis; every record's code
   verified by the service; then a tenth of the gates send their last batches again (retries after a lost
   answer), which must all come back as duplicates;
3. *clearing* (timed): ``run_clearing`` for each operator and the day, in a child process (its peak memory);
4. *check*: the statements against an independent recomputation from the generated journeys (fares from a
   Floyd-Warshall over the lines as the rules describe them, written here, not the service's code); the bench
   exits 1 if they differ.

It prints one JSON document (bench/README.md explains the figures). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.run import emit, machine
from bench.transit import Environment, peak_rss_mb
from codeservice.config import Settings
from codeservice.demo import DEMO_OPERATORS
from codeservice.services import Services
from codeservice.transit.clearing import run_clearing, statement_json
from codeservice.transit.models import Operator
from codeservice.transit.service import add_operator
from issuers.rides import issue_credential, make_ride_code
from sdk.citytime import service_day
from sdk.claims import CARD_TYPE_IDS, subject_to_text
from sdk.gate import GateStore
from sdk.upload import Uploader, UploadError, http_post_json

CST = dt.timezone(dt.timedelta(hours=8))
BATCH = 100
XH_METRO = {
    "lines": {"A": [["A1", 0], ["A2", 1800], ["AX", 4100], ["A4", 7600], ["A5", 12800]],
              "B": [["B1", 0], ["AX", 3300], ["B3", 9100], ["B4", 15500], ["BX", 21000]],
              "C": [["BX", 0], ["C2", 2600], ["C3", 30500]]},
    "bands": [[5000, 200], [12000, 300], [22000, 500]], "max_fare": 700, "max_minutes": 240,
}
DISCOUNTS = {"adult": 100, "student": 50, "elderly": 0, "disabled": 0}
QUICK = {"taps": 6000, "gates": 120}


def demo(operator_id: str) -> dict[str, Any]:
    return next(o for o in DEMO_OPERATORS if o["id"] == operator_id)


# -- the independent fare model ------------------------------------------------------------------------------
def floyd_warshall(lines: dict[str, list[list[Any]]]) -> dict[tuple[str, str], int]:
    stations = sorted({s for line in lines.values() for s, _ in line})
    inf = 10**12
    d = {(a, b): (0 if a == b else inf) for a in stations for b in stations}
    for line in lines.values():
        for (a, pa), (b, pb) in itertools.pairwise(line):
            d[a, b] = d[b, a] = min(d[a, b], pb - pa)
    for k in stations:
        for i in stations:
            dik = d[i, k]
            for j in stations:
                if dik + d[k, j] < d[i, j]:
                    d[i, j] = dik + d[k, j]
    return d


class MetroModel:
    def __init__(self, fares: dict[str, Any]) -> None:
        self.fares = fares
        self.distance = floyd_warshall(fares["lines"])
        self.stations = sorted({a for a, _ in self.distance})

    def fare(self, a: str, b: str) -> int:
        for limit, cents in self.fares["bands"]:
            if self.distance[a, b] <= limit:
                return int(cents)
        return int(self.fares["max_fare"])


class Expected:
    """What the statements must say, summed from the journeys as they were generated."""

    def __init__(self, discounts: dict[str, dict[str, int]]) -> None:
        self.discounts = discounts
        self.by_operator: dict[str, Counter[str]] = defaultdict(Counter)

    def trip(self, operator: str, status: str, fare: int, card: str, limit: int | None, *, free: bool = False,
             ) -> None:
        e = self.by_operator[operator]
        payable = 0 if free else fare * self.discounts[operator].get(card, 100) // 100
        charge = payable if limit is None else min(payable, limit)
        e["trips"] += 1
        e[f"status:{status}"] += 1
        e["fare"] += fare
        e["charged"] += charge
        e["capped"] += payable - charge
        e["discount"] += fare - payable

    def summary(self, operator: str) -> dict[str, Any]:
        e = self.by_operator[operator]
        return {"trips": e["trips"], "fare_total": e["fare"], "discount_total": e["discount"],
                "capped_total": e["capped"], "charged_total": e["charged"], "records": e["records"],
                "duplicates": e["duplicates"],
                "by_status": dict(sorted((k.split(":", 1)[1], v) for k, v in e.items() if k.startswith("status:")))}


# -- the day -----------------------------------------------------------------------------------------------------
def tap_minute(rng: random.Random) -> float:
    """Minutes after 04:00: a morning peak about 08:00, an evening peak about 18:00, the rest spread out."""
    draw = rng.random()
    if draw < 0.35:
        minute = rng.gauss(240, 45)
    elif draw < 0.7:
        minute = rng.gauss(840, 60)
    else:
        minute = rng.uniform(60, 1140)
    return min(max(minute, 30.0), 1150.0)


class City:
    """The operators, their gates, the phones and every tap of the day (records without their codes yet)."""

    def __init__(self, day: dt.date, taps: int, gates: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.day, self.start = day, dt.datetime.combine(day, dt.time(4, 0), CST).timestamp()
        self.metros = {"qd-metro": MetroModel(demo("qd-metro")["fares"]), "xh-metro": MetroModel(XH_METRO)}
        self.bus = demo("qd-bus")["fares"]
        self.sites = demo("laoshan")["fares"]["sites"]
        self.expected = Expected({"qd-metro": demo("qd-metro")["discounts"], "xh-metro": DISCOUNTS,
                                  "qd-bus": demo("qd-bus")["discounts"], "laoshan": demo("laoshan")["discounts"]})
        shares = {"qd-metro": 0.45, "xh-metro": 0.2, "qd-bus": 0.3, "laoshan": 0.05}
        self.gates: dict[str, list[dict[str, Any]]] = {}
        for operator, share in shares.items():
            count = max(2, round(gates * share))
            self.gates[operator] = [self._gate(operator, n) for n in range(count)]
        self.phones: list[dict[str, Any]] = []
        #: (gate_id, record) in generation order; the record's code is made later from its ``phone`` and ``at``
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.taps = 0
        self._by_station: dict[str, dict[str | None, list[dict[str, Any]]]] = {}
        self._fill(taps, shares)

    def _gate(self, operator: str, n: int) -> dict[str, Any]:
        if operator in self.metros:
            station = self.metros[operator].stations[n % len(self.metros[operator].stations)]
            return {"gate_id": f"{operator}-{station}-{n}", "operator": operator, "scene": "metro",
                    "station": station, "line": None}
        if operator == "qd-bus":
            lines = [*self.bus["lines"], "901"]  # a line not in the table takes the default fare
            return {"gate_id": f"qd-bus-r{n}", "operator": operator, "scene": "bus", "station": None,
                    "line": lines[n % len(lines)]}
        site = sorted(self.sites)[n % len(self.sites)]
        return {"gate_id": f"laoshan-{site}-{n}", "operator": operator, "scene": "scenic", "station": site,
                "line": None}

    def _phone(self) -> dict[str, Any]:
        account = self.rng.randbytes(10)
        phone: dict[str, Any] = {"index": len(self.phones), "account": account,
                                 "account_text": subject_to_text(account),
                 "card_type": self.rng.choice(list(CARD_TYPE_IDS)),
                 "fare_limit": self.rng.choice([2000, 2000, 2000, 2000, 350, 150])}
        self.phones.append(phone)
        return phone

    def _metro_gate(self, operator: str, station: str) -> dict[str, Any]:
        by_station = self._by_station.get(operator)
        if by_station is None:  # the gates of each station, in the order of the operator's gates
            by_station = self._by_station[operator] = defaultdict(list)
            for g in self.gates[operator]:
                by_station[g["station"]].append(g)
        candidates = by_station.get(station)
        return self.rng.choice(candidates) if candidates else self.rng.choice(self.gates[operator])

    def _tap(self, gate: dict[str, Any], phone: dict[str, Any] | None, minute: float, *, direction: str | None = None,
             accepted: bool = True, reason: str = "ok") -> dict[str, Any]:
        at = round(self.start + minute * 60 + self.rng.uniform(0, 59), 3)
        record = {"record_id": uuid.uuid4().hex, "gate_id": gate["gate_id"], "operator": gate["operator"],
                  "scene": gate["scene"], "station": gate["station"], "line": gate["line"], "direction": direction,
                  "at": at, "accepted": accepted, "reason": reason, "kind": "ride",
                  "account": phone["account_text"] if phone else None,
                  "card_type": phone["card_type"] if phone else None,
                  "fare_limit": phone["fare_limit"] if phone else None, "credential_id": None, "code_id": None,
                  "entitlement": None, "online": False, "code": None,
                  "phone": phone["index"] if phone is not None and accepted else None}
        self.records.append((gate["gate_id"], record))
        self.taps += 1
        if accepted:
            self.expected.by_operator[gate["operator"]]["records"] += 1
        return record

    def _fill(self, taps: int, shares: dict[str, float]) -> None:
        rng = self.rng
        budget = {operator: round(taps * share) for operator, share in shares.items()}
        for operator in self.metros:
            model, made = self.metros[operator], 0
            # only stations that have a gate (with few gates not every station has one)
            stations = sorted({g["station"] for g in self.gates[operator]})
            while made < budget[operator]:
                phone = self._phone()
                minute = tap_minute(rng)
                for _ in range(rng.choice((1, 1, 2))):  # a journey, or two (out and back) hours apart
                    if minute > 1100:
                        break
                    a, b = rng.choice(stations), rng.choice(stations)
                    shape = rng.random()
                    if shape < 0.04:  # entered, never tapped out
                        self._tap(self._metro_gate(operator, a), phone, minute, direction="in")
                        self.expected.trip(operator, "unpaired_entry", model.fares["max_fare"], phone["card_type"],
                                           phone["fare_limit"])
                        made += 1
                        minute += 300
                    elif shape < 0.06:  # tapped out without an entry
                        self._tap(self._metro_gate(operator, b), phone, minute, direction="out")
                        self.expected.trip(operator, "unpaired_exit", model.fares["max_fare"], phone["card_type"],
                                           phone["fare_limit"])
                        made += 1
                    else:
                        self._tap(self._metro_gate(operator, a), phone, minute, direction="in")
                        if rng.random() < 0.03:  # the gate refused a second entry: anti-passback
                            self._tap(self._metro_gate(operator, a), phone, minute + 1, direction="in",
                                      accepted=False, reason="passback")
                            made += 1
                        self._tap(self._metro_gate(operator, b), phone, minute + rng.uniform(5, 70), direction="out")
                        self.expected.trip(operator, "paired", model.fare(a, b), phone["card_type"],
                                           phone["fare_limit"])
                        made += 2
                    minute += rng.uniform(180, 420)
        lines = self.bus["lines"]
        for _ in range(budget["qd-bus"]):
            phone = self._phone() if not self.phones or rng.random() < 0.5 else rng.choice(self.phones)
            gate = rng.choice(self.gates["qd-bus"])
            self._tap(gate, phone, tap_minute(rng))
            self.expected.trip("qd-bus", "ride", int(lines.get(gate["line"], self.bus["default"])),
                               phone["card_type"], phone["fare_limit"])
        for _ in range(budget["laoshan"]):
            phone = self._phone()
            gate = rng.choice(self.gates["laoshan"])
            self._tap(gate, phone, rng.uniform(120, 700))
            self.expected.trip("laoshan", "entry", int(self.sites[gate["station"]]["price"]), phone["card_type"],
                               None)  # a scenic ticket is not a ride: no per-ride limit

    def duplicates(self, share: float) -> None:
        """The same ride code recorded again under a new record id (a gate that wrote a scan twice): charged
        once, the copy counted as a duplicate."""
        chosen = [r for r in self.rng.sample(self.records, max(1, int(len(self.records) * share)))
                  if r[1]["accepted"]]
        for gate_id, record in chosen:
            self.records.append((gate_id, {**record, "record_id": uuid.uuid4().hex, "copy_of": record["record_id"]}))
            self.expected.by_operator[record["operator"]]["duplicates"] += 1


# -- codes, made as phones make them (worker processes) ------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_codes(env: dict[str, str], phones: list[tuple[int, int, bytes]]) -> None:
    services = Services(Settings.from_env(env))
    _WORKER["verifier"] = services.evidence_verifier()
    _WORKER["phones"] = {index: (ec.derive_private_key(seed, ec.SECP256R1()), credential)
                         for index, seed, credential in phones}


def _codes(part: list[tuple[int, float]]) -> list[tuple[str, str, str, str]]:
    """(code, account, credential id, code id) of each (phone, moment): the code as the phone makes it, the
    rest as the gate's SDK reads it from the code."""
    phones, verifier = _WORKER["phones"], _WORKER["verifier"]
    out = []
    for index, at in part:
        code = make_ride_code(phones[index][0], phones[index][1], now=at)
        result = verifier.evidence(code, at=at)
        if not result.accepted:
            raise RuntimeError(f"a generated code does not verify: {result.reason.value} {result.detail}")
        out.append((code, result.subject, result.credential_id, result.code_id))
    return out


def make_codes(city: City, env: dict[str, str], signer: Any, bar: Any, cache: CodeCache | None = None,
               verifier: Any = None) -> bool:
    """Every accepted tap's ride code, in worker processes (one per usable core); the copies take their
    original's code. Each phone's credential is issued here, once; its device key is derived from a seed.

    With *cache*, codes made before for exactly these phones, taps and transit key are taken from it instead
    (checked on a sample with *verifier*; see ``CodeCache``), and codes made here are kept in it. True when they
    came from the cache."""
    seeds = [city.rng.getrandbits(250) + 1 for _ in city.phones]
    targets = [r for _, r in city.records if r["phone"] is not None and "copy_of" not in r]
    todo = [(r["phone"], r["at"]) for r in targets]
    key = cache.key(city, seeds, todo, signer) if cache is not None else ""
    cached = cache.load(key, todo, verifier) if cache is not None else None
    if cached is not None:
        made_all = cached
        bar.update(len(made_all))
    else:
        phones = []
        for phone, seed in zip(city.phones, seeds, strict=True):
            device = ec.derive_private_key(seed, ec.SECP256R1())
            credential = issue_credential(
                signer, account=phone["account"], device_key=device.public_key(), card_type=phone["card_type"],
                fare_limit=phone["fare_limit"], status_index=phone["index"], validity=60, lifetime=2 * 86400,
                now=city.start - 3600)
            phones.append((phone["index"], seed, credential))
        chunk = 2000
        made_all = []
        with ProcessPoolExecutor(len(os.sched_getaffinity(0)), initializer=_init_codes,
                                 initargs=(env, phones)) as pool:
            for made in pool.map(_codes, [todo[i:i + chunk] for i in range(0, len(todo), chunk)]):
                made_all.extend(made)
                bar.update(len(made))
        if cache is not None:
            cache.save(key, made_all)
    for target, (code, account, credential_id, code_id) in zip(targets, made_all, strict=True):
        target.update(code=code, account=account, credential_id=credential_id, code_id=code_id)
    by_id = {r["record_id"]: r for _, r in city.records}
    for _, record in city.records:
        if "copy_of" in record:
            original = by_id[record["copy_of"]]
            record.update({k: original[k] for k in ("code", "account", "credential_id", "code_id")})
    return cached is not None


class CodeCache:
    """The day's ride codes kept between runs (making them is not part of the timed day, but takes long).

    One entry a day's *inputs*: a SHA-256 over the format, the transit key (its kid and public key), every
    phone (index, device-key seed, account, card type, fare limit) and every tap to code (phone, moment). The
    bench's transit key is kept beside the entries (``transit_key``), so that it, and with it the key of an
    entry, is the same from run to run. An entry that does not match is not found, so the codes are made again;
    a found one is used only when its last line holds the SHA-256 of the lines before it (written to its end,
    unchanged since), its line count is right, and a sample of its codes (the first, the last and up to 200
    more) verifies with the service's evidence verifier and names the same account, credential and code id as
    the entry; otherwise the codes are made again too. The newest ``KEEP`` entries
    are kept. Nothing in it is secret beyond the bench's own transit key."""

    FORMAT = "citycode-bench-cityday-codes-1"
    KEEP = 2

    def __init__(self, root: Path) -> None:
        self.root = root

    def transit_key(self, keyring: Any) -> None:
        """The bench's transit key, the same from run to run: made on the first run as of ten days before it
        (so that credentials issued on the bench's day are its own) and kept here; later runs put it in their
        fresh keyring in place of the key ``citycode init`` made (which is retired at once, as ``citycode keys
        rotate`` with no grace would)."""
        pem, meta = self.root / "transit.key.pem", self.root / "transit.json"
        if not pem.exists() or not meta.exists():
            keyring.rotate("city-transit", grace=0, now=time.time() - 10 * 86400)
            signer = keyring.signer("city-transit")
            entry = next(k for k in keyring.index()["keys"] if k["kid"] == signer.kid.hex())
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
            partial = self.root / f".transit-{uuid.uuid4().hex}"
            partial.write_bytes((keyring.path / f"{entry['kid']}.key.pem").read_bytes())
            os.chmod(partial, 0o600)
            meta.write_text(json.dumps({k: entry[k] for k in ("kid", "alg", "created_at")}))
            os.replace(partial, pem)
            return
        entry = {**json.loads(meta.read_text()), "issuer": "city-transit", "retired_at": None, "verify_until": None}
        now = int(time.time())
        with keyring._locked():
            index = keyring._read_index()
            for old in index["keys"]:
                if old["issuer"] == "city-transit" and old["retired_at"] is None:
                    old["retired_at"] = old["verify_until"] = now
                    (keyring.path / f"{old['kid']}.key.pem").unlink(missing_ok=True)
            private = serialization.load_pem_private_key(pem.read_bytes(), None)
            (keyring.path / f"{entry['kid']}.key.pem").write_bytes(pem.read_bytes())
            os.chmod(keyring.path / f"{entry['kid']}.key.pem", 0o600)
            (keyring.path / f"{entry['kid']}.pub.pem").write_bytes(private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            index["keys"].append(entry)
            keyring._write_index(index)
        keyring._signers.pop("city-transit", None)
        if keyring.signer("city-transit").kid.hex() != entry["kid"]:
            raise SystemExit("bench: the cached transit key was not taken")

    def key(self, city: City, seeds: list[int], todo: list[tuple[int, float]], signer: Any) -> str:
        digest = hashlib.sha256()
        public = signer.private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        digest.update(json.dumps([self.FORMAT, signer.kid.hex(), public.hex(), city.start]).encode())
        for phone, seed in zip(city.phones, seeds, strict=True):
            digest.update(f"{phone['index']},{seed},{phone['account_text']},{phone['card_type']},"
                          f"{phone['fare_limit']};".encode())
        digest.update(b"|")
        for phone_index, at in todo:
            digest.update(f"{phone_index},{at!r};".encode())
        return digest.hexdigest()

    def _entry(self, key: str) -> Path:
        return self.root / f"codes-{key}.tsv"

    def load(self, key: str, todo: list[tuple[int, float]], verifier: Any,
             ) -> list[tuple[str, str, str, str]] | None:
        path = self._entry(key)
        digest = hashlib.sha256()
        made: list[tuple[str, ...]] = []
        last = ""
        try:
            with path.open("rb") as f:
                for raw in f:
                    if last:
                        digest.update(last.encode("ascii"))
                        made.append(tuple(last.rstrip("\n").split("\t")))
                    last = raw.decode("ascii")
        except (OSError, UnicodeDecodeError):
            return None
        if last.rstrip("\n") != f"sha256\t{digest.hexdigest()}":
            return None  # not written to its end, or changed since
        if len(made) != len(todo) or any(len(m) != 4 for m in made):
            return None
        sample = sorted({0, len(made) - 1, *random.Random(key).sample(range(len(made)), min(200, len(made)))}) \
            if made else []
        for n in sample:
            code, account, credential_id, code_id = made[n]
            result = verifier.evidence(code, at=todo[n][1])
            if not result.accepted or (result.subject, result.credential_id, result.code_id) != (
                    account, credential_id, code_id):
                return None
        path.touch()
        return made  # type: ignore[return-value]

    def save(self, key: str, made: list[tuple[str, str, str, str]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.root / f".codes-{uuid.uuid4().hex}.tsv"
        digest = hashlib.sha256()
        with partial.open("w", encoding="ascii") as f:
            for entry in made:
                line = "\t".join(entry) + "\n"
                digest.update(line.encode("ascii"))
                f.write(line)
            f.write(f"sha256\t{digest.hexdigest()}\n")
        os.replace(partial, self._entry(key))
        entries = sorted(self.root.glob("codes-*.tsv"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[self.KEEP:]:
            old.unlink(missing_ok=True)


# -- progress -------------------------------------------------------------------------------------------------
class _Quiet:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, what: str) -> Any:
    """A tqdm bar on a terminal (stderr), nothing otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=what, unit="rec", file=sys.stderr)
    return _Quiet()


# -- memory ----------------------------------------------------------------------------------------------------
#: The bench process's own peak memory, measured (``/usr/bin/time -v``, maximum resident set size): 173.6 MB at
#: 10,054 records, 305.3 MB at 40,200 (2026-12-08): the whole day is held in memory, about 4.4 KB a record
#: (each record's dict, its code, the made codes and the gates' lists), above about 131 MB of imports.
BENCH_BASE_MB = 131
BENCH_KB_PER_TAP = 4.4
#: Each code-making worker (one a usable core) holds every phone's private key and credential: 4.6 KB a phone
#: (a 1,000,000-tap day, 473,000 phones: each worker's RSS reached 2,337 MB, about 150 MB of it its services;
#: the keys alone, 50,000 made with ``ec.derive_private_key``, are 2.67 KB a phone); the city has 0.474 phones a
#: tap (18,951 phones for 40,002 taps).
WORKER_KB_PER_PHONE = 4.6
PHONES_PER_TAP = 0.474
#: What runs beside them and is not in those figures: the server (about 1 GB at 5 workers) and PostgreSQL.
BESIDE_MB = 1536


def memory_needed_mb(taps: int) -> int:
    """The memory a day of *taps* needs on this machine, from the measured figures above (a lower bound)."""
    workers = len(os.sched_getaffinity(0))
    return round(BENCH_BASE_MB + taps * BENCH_KB_PER_TAP / 1024
                 + workers * taps * PHONES_PER_TAP * WORKER_KB_PER_PHONE / 1024 + BESIDE_MB)


def available_mb() -> int | None:
    """MemAvailable of /proc/meminfo in MB (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_refusal(taps: int) -> str | None:
    """Why a day of *taps* is not started here, or None: a day that does not fit in memory swaps the machine
    until nothing answers (a 5,000,000-tap run did that on 2026-12-07), so it is refused before it starts."""
    needed, available = memory_needed_mb(taps), available_mb()
    if available is None or needed <= available:
        return None
    return (f"bench: a day of {taps:,} taps needs about {needed:,} MB of memory (measured: {BENCH_KB_PER_TAP} KB "
            f"a tap in this process, {WORKER_KB_PER_PHONE} KB a phone in each code-making worker, about {BESIDE_MB} "
            f"MB for the server); this machine has "
            f"{available:,} MB available. Use fewer --taps, or --no-memory-check to start anyway.")


# -- measurements ------------------------------------------------------------------------------------------------
def raw_verify_us(rounds: int = 5, count: int = 2000) -> float:
    """One raw P-256 (ES256) verify, the median of *rounds* timings of *count* verifies, in this process."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    message = os.urandom(64)
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        timings.append((time.perf_counter() - started) / count * 1e6)
    return round(statistics.median(timings), 1)


def tree_peak_rss_mb(pid: int) -> dict[str, int]:
    """Peak resident memory (VmHWM) of a process and each of its children, in MB."""
    out = {}
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(p) for p in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[str(p)] = round(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return out


def cpu_seconds_of(pids: Iterable[int]) -> float:
    """User plus system CPU seconds of the processes so far (their /proc stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


def settled(pid: int, quiet_s: float = 0.05, most_s: float = 60.0) -> list[int]:
    """The server's processes once they are idle: gunicorn answers as soon as one worker is up, while the others
    are still importing and building the app (seconds of CPU each, which are not the upload's). Waits until the
    tree used less than *quiet_s* CPU seconds in half a second (at most *most_s*)."""
    deadline = time.monotonic() + most_s
    while True:
        pids = [pid, *map(int, tree_peak_rss_mb(pid).keys())]
        before = cpu_seconds_of(set(pids))
        time.sleep(0.5)
        if cpu_seconds_of(set(pids)) - before < quiet_s or time.monotonic() > deadline:
            return [pid, *map(int, tree_peak_rss_mb(pid).keys())]


# -- stages ------------------------------------------------------------------------------------------------------
def upload(stores: dict[str, GateStore], keys: dict[str, str], operators: dict[str, str], base: str,
           concurrency: int, bar: Any, lost: set[str], copy_ids: set[str]) -> Counter[str]:
    """Every store's records through its gate's SDK uploader, *concurrency* gates at a time. For the gates in
    *lost*, the answer to the first batch is lost after the service stored it (a timeout): the uploader keeps
    the records pending and sends them again, and they must come back as duplicates."""
    totals: Counter[str] = Counter()

    def one(gate_id: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        if gate_id in lost:
            def losing(url: str, body: dict[str, Any], key: str) -> tuple[int, Any]:
                http_post_json(url, body, key)
                counts["lost_answers"] += len(body["records"])
                counts["lost_copies"] += sum(1 for r in body["records"] if r["record_id"] in copy_ids)
                raise UploadError("the answer was lost (a timeout)")

            failed = Uploader(stores[gate_id], base, keys[operators[gate_id]], batch_size=BATCH,
                              post=losing).upload(max_batches=1)
            if not failed.errors:
                raise SystemExit(f"bench: gate {gate_id}: the lost answer was not noticed")
        report = Uploader(stores[gate_id], base, keys[operators[gate_id]], batch_size=BATCH).upload(
            max_batches=100_000)
        bar.update(report.sent)
        if report.errors:
            raise SystemExit(f"bench: gate {gate_id}: {report.errors[:2]}")
        counts.update(sent=report.sent, stored=report.stored, duplicates=report.duplicates, rejected=report.rejected)
        return counts

    with ThreadPoolExecutor(concurrency) as pool:
        for counts in pool.map(one, sorted(stores)):
            totals.update(counts)
    return totals


def clearing_child(env: dict[str, str], day: dt.date, operators: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.cityday", "--child-clearing", day.isoformat(),
                          "--operators", ",".join(operators)], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench: the clearing child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def run_clearing_child(day: dt.date, operators: list[str]) -> dict[str, Any]:
    services = Services(Settings.from_env(os.environ))
    started, cpu = time.perf_counter(), time.process_time()
    statements = {}
    for operator in operators:
        with services.db.session() as session:
            statement = run_clearing(session, operator, day)
            doc = statement_json(statement, session.get(Operator, operator))  # type: ignore[arg-type]
            statements[operator] = {k: doc[k] for k in ("records", "duplicates", "trips", "fare_total",
                                                         "discount_total", "capped_total", "charged_total",
                                                         "by_status", "digest")}
    seconds = time.perf_counter() - started
    services.db.dispose()
    return {"seconds": round(seconds, 2), "cpu_s": round(time.process_time() - cpu, 2), "peak_rss_mb": peak_rss_mb(),
            "statements": statements}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cityday", description=__doc__.split("\n\n")[0])
    parser.add_argument("--taps", type=int, help="taps of the day (default 5000000; --quick 6000)")
    parser.add_argument("--gates", type=int, help="gates and bus readers (default 10000; --quick 120)")
    parser.add_argument("--quick", action="store_true", help="a small day (about a minute), for trying and tests")
    parser.add_argument("--out", type=Path, help="also write the JSON document here")
    parser.add_argument("--concurrency", type=int, default=16, help="uploading threads (default 16)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: as citycode serve)")
    parser.add_argument("--threads", type=int, default=8, help="threads a worker (default 8)")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--cache", type=Path, default=Path(".bench-cache/cityday"),
                        help="where the bench's transit key and the made codes are kept between runs "
                             "(default .bench-cache/cityday)")
    parser.add_argument("--no-cache", action="store_true", help="make the keys and the codes anew, keep nothing")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="start even when the day looks larger than the memory available")
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child-clearing", help=argparse.SUPPRESS)
    parser.add_argument("--operators", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_clearing:
        print(json.dumps(run_clearing_child(dt.date.fromisoformat(args.child_clearing), args.operators.split(","))))
        return 0
    taps = args.taps if args.taps is not None else QUICK["taps"] if args.quick else 5_000_000
    gates = args.gates if args.gates is not None else QUICK["gates"] if args.quick else 10_000
    if taps < 100 or gates < 8:
        parser.error("--taps at least 100, --gates at least 8")
    refusal = None if args.no_memory_check else memory_refusal(taps)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    started_all = time.perf_counter()
    doc: dict[str, Any] = {
        "benchmark": "citycode city day",
        "command": "python -m bench.cityday " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {**machine(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    doc["raw_verify_us"] = raw_verify_us()
    day = dt.date.fromisoformat(service_day(time.time())) - dt.timedelta(days=1)
    cache = None if args.no_cache else CodeCache(args.cache)
    with Environment(args.postgres, args.redis, args.workers, args.threads) as env:
        assert env.services is not None
        services = env.services
        if cache is not None:
            cache.transit_key(services.keyring)
        else:
            # the transit key as made ten days ago, so that credentials issued on the bench's day are its own
            services.keyring.rotate("city-transit", grace=0, now=time.time() - 10 * 86400)
        with services.db.session() as session:
            add_operator(session, "xh-metro", "Xihai Metro", "metro", XH_METRO, DISCOUNTS)
            doc["machine"]["postgresql"] = session.execute(sa.text("SHOW server_version")).scalar()
        city = City(day, taps, gates, args.seed)
        city.duplicates(0.005)
        bar = progress(sum(1 for _, r in city.records if r["phone"] is not None and "copy_of" not in r), "codes")
        generated = time.perf_counter()
        codes_cached = make_codes(city, env.env, services.keyring.signer("city-transit"), bar, cache,
                                  services.evidence_verifier())
        bar.close()
        operators = {g["gate_id"]: g["operator"] for gs in city.gates.values() for g in gs}
        keys = {operator: env.device(f"gates of {operator}", operator)[1] for operator in city.gates}
        stores: dict[str, GateStore] = {}
        by_gate: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for gate_id, record in city.records:
            by_gate[gate_id].append({k: v for k, v in record.items() if k not in ("phone", "copy_of")})
        (env.home / "gates").mkdir()
        for gate_id, records in by_gate.items():
            store = stores[gate_id] = GateStore(env.home / "gates" / f"{gate_id}.sqlite3")
            with store.transaction():
                for record in records:
                    store.add_record(record)
        codes_s = round(time.perf_counter() - generated, 1)
        rng = random.Random(args.seed + 1)
        late = set(rng.sample(sorted(stores), max(1, len(stores) // 20)))
        on_time = {g: s for g, s in stores.items() if g not in late}
        served = env.start_server()
        assert env.server is not None
        server_pids = settled(env.server.pid)
        cpu_before = cpu_seconds_of(set(server_pids))
        records_total = len(city.records)
        bar = progress(records_total, "upload")
        t0 = time.perf_counter()
        copy_ids = {r["record_id"] for _, r in city.records if "copy_of" in r}
        lost = set(rng.sample(sorted(on_time), max(1, len(on_time) // 10)))
        first = upload(on_time, keys, operators, f"http://127.0.0.1:{env.port}", args.concurrency, bar, lost, copy_ids)
        upload_first_s = time.perf_counter() - t0
        first_clearing = clearing_child(env.env, day, sorted(city.gates))
        t1 = time.perf_counter()
        later = upload({g: stores[g] for g in late}, keys, operators, f"http://127.0.0.1:{env.port}",
                       args.concurrency, bar, set(), copy_ids)
        upload_late_s = time.perf_counter() - t1
        bar.close()
        upload_s = upload_first_s + upload_late_s + 0.0
        server_cpu_s = cpu_seconds_of(set(server_pids)) - cpu_before
        server_rss = tree_peak_rss_mb(env.server.pid)
        env.stop_server()
        clearing = clearing_child(env.env, day, sorted(city.gates))
        with services.db.session() as session:
            held = session.execute(sa.text(
                "SELECT count(*), count(*) FILTER (WHERE evidence IS NOT NULL), "
                "count(DISTINCT credential_id) FROM gate_records")).one()
    uploaded = first + later
    stored, with_code, credentials = int(held[0]), int(held[1]), int(held[2])
    workers = max(1, len(server_rss) - 1)
    # each stored record with a code had its device signature checked; each credential at most once a worker
    signatures = with_code + min(with_code, credentials * workers)
    per_record = signatures / max(1, stored)
    cores = len(os.sched_getaffinity(0))
    floor = cores * 1e6 / (doc["raw_verify_us"] * per_record)
    problems: list[dict[str, Any]] = []
    for operator in sorted(city.gates):
        want = city.expected.summary(operator)
        got = clearing["statements"][operator]
        if {k: got[k] for k in want} != want:
            problems.append({"operator": operator, "expected": want,
                             "statement": {k: got[k] for k in want}})
    if uploaded["rejected"] or stored != records_total:
        problems.append({"uploaded": dict(uploaded), "stored": stored, "generated": records_total})
    copies = sum(city.expected.by_operator[o]["duplicates"] for o in city.gates)
    pending = sum(store.counts()["pending"] + store.counts()["rejected"] for store in stores.values())
    # every record resent after a lost answer comes back a duplicate; so does every copy of a code, once
    if uploaded["duplicates"] != copies + uploaded["lost_answers"] - uploaded["lost_copies"] or pending:
        problems.append({"duplicates_answered": uploaded["duplicates"], "copies": copies,
                         "resent_after_lost_answers": uploaded["lost_answers"], "left_pending_or_rejected": pending})
    upload_rate = records_total / upload_s
    doc.update({
        "taps": city.taps, "records": records_total, "gates": len(stores), "phones": len(city.phones),
        "operators": sorted(city.gates), "service_day": day.isoformat(),
        "server": served, "concurrency": args.concurrency, "server_workers": workers,
        "codes_s_untimed": codes_s, "codes_from_cache": codes_cached,
        "upload_s": round(upload_s, 1), "upload_records_per_s": round(upload_rate),
        "upload_late_gates": len(late), "upload_late_s": round(upload_late_s, 1),
        "server_cpu_s": round(server_cpu_s, 1),
        "server_cpu_us_per_record": round(server_cpu_s * 1e6 / records_total),
        "retries": {"gates_whose_answer_was_lost": len(lost), "resent": uploaded["lost_answers"],
                    "code_copies": copies, "duplicates_answered": uploaded["duplicates"]},
        "signatures_verified": signatures,
        "signatures_verified_note": "device signatures: one per stored record with a code (exact); "
                                    "credential signatures: at most one per credential per server worker (bound)",
        "floor_records_per_s": round(floor),
        "upload_over_floor": round(upload_rate / floor, 3),
        "clearing_s": clearing["seconds"], "clearing_cpu_s": clearing["cpu_s"],
        "clearing_first_run_s": first_clearing["seconds"],
        "total_s": round(upload_s + clearing["seconds"], 1),
        "total_s_at_60us": round((upload_s + clearing["seconds"]) * 60 / doc["raw_verify_us"], 1),
        "peak_rss_mb": {"server_processes": server_rss, "server_total": sum(server_rss.values()),
                        "clearing": clearing["peak_rss_mb"]},
        "statements": clearing["statements"],
        "totals_match": not problems,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "duration_s": round(time.perf_counter() - started_all, 1),
    })
    if problems:
        doc["problems"] = problems
    emit(doc, args.out)
    if problems:
        print("bench.cityday: the statements differ from the recomputation", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
