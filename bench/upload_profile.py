"""Where an upload's time goes: ``python -m bench.upload_profile [--records 5000] [--phones N] [--top 25]``.

``POST /api/v1/gate/records`` in process, through Flask's test client (no HTTP, no gunicorn), on a throw-away
PostgreSQL database and Redis (``bench.transit.Environment``: ``citycode init``, the demo operators), batches of
100 records as a gate's uploader sends them: the records ``sdk.gate.Gate._record`` makes of accepted ride
scans at ``qd-bus`` readers, each carrying its ride code, which the service verifies. ``--phones`` (default: as
many as records, so that every record brings a credential the service has not checked yet, as in bench.cityday
where a phone's two or three taps of a day reach different server workers) sets how many phones make them.

It runs the batches twice over fresh records: once timed (wall and CPU of this process; PostgreSQL's own CPU is
not in it) and once under cProfile, and prints one JSON document: per record, the wall and CPU microseconds,
the share of the profiled time spent in each part of the path (``parts``: cumulative time of the named
functions, which overlap where one calls another), and the functions of most own time (``top``). The ride
codes are made before timing. Asserts no timing; checks that every record was stored.

``--insert-compare`` times instead the INSERT alone, 100 rows a transaction as ``_record_row`` makes them, the
service's statement (``codeservice.transit.service._insert_new``: the batch as one JSON parameter) against the
one it used before (one array a column, ``unnest``), interleaved over 12 rounds of 20 batches (the first two
rounds left out): medians of wall and CPU microseconds a row in this process.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import pstats
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.dialects import postgresql

from bench.run import emit, machine
from bench.transit import BUS_OPERATOR, Environment, bus_records, make_gates
from codeservice.app import create_app
from codeservice.config import Settings
from codeservice.transit.models import GateRecord
from codeservice.transit.service import _insert_new
from issuers.rides import issue_credential
from sdk.claims import CARD_TYPE_IDS

BATCH = 100

#: (label, file suffix, function name) of the parts of the path, as pstats names them.
PARTS = [
    ("request, whole (test client)", "werkzeug/test.py", "open"),
    ("contract check of the body (codeservice/contract.py)", "codeservice/contract.py", "check_request"),
    ("ingest_records", "transit/service.py", "ingest_records"),
    ("  _record_row (checks of each record's fields)", "transit/service.py", "_record_row"),
    ("  _held (SELECT of the ids already held)", "transit/service.py", "_held"),
    ("  check_evidence (each record's code verified)", "transit/service.py", "check_evidence"),
    ("    Verifier._check_credential (credential: parse, signature)", "sdk/verifier.py", "_check_credential"),
    ("    verify_es256 (both signatures)", "sdk/keys.py", "verify_es256"),
    ("  _store (code keys, INSERT)", "transit/service.py", "_store"),
    ("    _insert_new (the INSERT)", "transit/service.py", "_insert_new"),
    ("commit", "sqlalchemy/orm/session.py", "commit"),
    ("psycopg: execute (waits on PostgreSQL)", "psycopg/cursor.py", "execute"),
    ("json: response (jsonify)", "flask/json/__init__.py", "jsonify"),
]


def make_phones(env: Environment, count: int, rng: random.Random, now: float) -> list[tuple[Any, bytes]]:
    assert env.services is not None
    signer = env.services.keyring.signer("city-transit")
    cards = list(CARD_TYPE_IDS)
    phones = []
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        phones.append((key, issue_credential(signer, account=rng.randbytes(10), device_key=key.public_key(),
                                             card_type=rng.choice(cards), fare_limit=2000, status_index=index,
                                             validity=60, lifetime=86400, now=now - 7200)))
    return phones


def batches_of(env: Environment, gate: Any, records: int, phones: int, rng: random.Random,
               ) -> list[list[dict[str, Any]]]:
    now = time.time()
    made = []
    for key, credential in make_phones(env, phones, rng, now):
        made.extend(bus_records(gate, max(1, records // phones), rng, now, [(key, credential)]))
    rng.shuffle(made)
    made = made[:records]
    return [made[i:i + BATCH] for i in range(0, len(made), BATCH)]


def unnest_insert() -> tuple[Any, list[str]]:
    """The INSERT the service used before: one bound array a column, ``unnest``ed."""
    table: Any = GateRecord.__table__
    dialect = postgresql.dialect()
    names = [column.name for column in table.columns]
    arrays = ", ".join(f"CAST(:{name} AS {column.type.compile(dialect=dialect)}[])"
                       for name, column in zip(names, table.columns, strict=True))
    return sa.text(f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays}) "
                   "ON CONFLICT DO NOTHING RETURNING record_id"), names


def insert_compare(env: Environment) -> dict[str, Any]:
    assert env.services is not None
    services = env.services
    device = env.device("insert bench", BUS_OPERATOR)[0]
    rng = random.Random(3)
    now = time.time()
    unnest, names = unnest_insert()

    def rows() -> list[dict[str, Any]]:
        out = []
        for _ in range(BATCH):
            at = dt.datetime.fromtimestamp(now - rng.uniform(0, 3600), dt.UTC)
            out.append({"record_id": uuid.uuid4().hex, "device_id": device.id, "operator_id": BUS_OPERATOR,
                        "gate_id": "qd-bus-r1", "scene": "bus", "station": None, "line": "301", "direction": None,
                        "at": at, "service_day": at.date(), "accepted": True, "reason": "ok", "kind": "ride",
                        "account": "abcdefghijklmnop", "card_type": "adult", "fare_limit": 2000,
                        "credential_id": os.urandom(8).hex(), "code_id": os.urandom(24).hex(), "entitlement": None,
                        "online": False, "received_at": at, "evidence": "CC1:" + "X" * 431,
                        "code_key": os.urandom(32).hex(), "duplicate_of": None})
        return out

    timings: dict[str, list[tuple[float, float]]] = {"json": [], "unnest": []}
    for round_ in range(12):
        for which in ("json", "unnest") if round_ % 2 == 0 else ("unnest", "json"):
            batches = [rows() for _ in range(20)]
            wall, cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                with services.db.session() as session:
                    if which == "json":
                        inserted = _insert_new(session, batch)
                    else:
                        inserted = set(session.scalars(unnest, {n: [row.get(n) for row in batch] for n in names}))
                if len(inserted) != BATCH:
                    raise SystemExit(f"bench: {len(inserted)} of {BATCH} rows inserted")
            count = BATCH * len(batches)
            timings[which].append(((time.perf_counter() - wall) * 1e6 / count,
                                   (time.process_time() - cpu) * 1e6 / count))
    out: dict[str, Any] = {}
    for which, values in timings.items():
        out[which] = {"wall_us_per_row": round(statistics.median(v[0] for v in values[2:]), 1),
                      "cpu_us_per_row": round(statistics.median(v[1] for v in values[2:]), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upload_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="records a pass (default 5000)")
    parser.add_argument("--phones", type=int, help="phones that made them (default: one a record)")
    parser.add_argument("--no-cprofile", action="store_true",
                        help="only the timed pass (to sample it from outside, e.g. with py-spy)")
    parser.add_argument("--insert-compare", action="store_true",
                        help="time the INSERT alone: the service's (JSON) against the one before (unnest)")
    parser.add_argument("--top", type=int, default=25, help="functions of most own time to list (default 25)")
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", type=Path, help="also write the JSON document here")
    args = parser.parse_args(argv)
    rng = random.Random(9)
    doc: dict[str, Any] = {"benchmark": "citycode upload profile", "machine": machine(),
                           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    with Environment(args.postgres, args.redis, None, 1) as env:
        assert env.services is not None
        if args.insert_compare:
            emit({**doc, "insert": insert_compare(env),
                  "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}, args.out)
            return 0
        gate = make_gates(env, 1)[0]  # (makes the transit key as of a day ago, once)
        timed = batches_of(env, gate, args.records, args.phones or args.records, rng)
        profiled = batches_of(env, gate, args.records, args.phones or args.records, rng)
        app = create_app(Settings.from_env(env.env))
        headers = {"Authorization": f"Bearer {env.device('profiled gate', BUS_OPERATOR)[1]}"}
        client = app.test_client()

        def send(batches: list[list[dict[str, Any]]]) -> int:
            stored = 0
            for batch in batches:
                answer = client.post("/api/v1/gate/records", json={"records": batch}, headers=headers)
                assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
                stored += len(answer.get_json()["stored"])
            return stored

        send(batches_of(env, gate, 300, 300, rng))  # warm-up: imports, the statement caches, the verifier
        wall, cpu = time.perf_counter(), time.process_time()
        stored = send(timed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        records = sum(map(len, timed))
        if stored != records:
            raise SystemExit(f"bench: {stored} of {records} records stored")
        if args.no_cprofile:
            emit({**doc, "records": records, "wall_us_per_record": round(wall * 1e6 / records, 1),
                  "cpu_us_per_record": round(cpu * 1e6 / records, 1)}, args.out)
            return 0
        profile = cProfile.Profile()
        profile.enable()
        send(profiled)
        profile.disable()
    stats = pstats.Stats(profile)
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    parts = {}
    for label, suffix, name in PARTS:
        cumulative = sum(v[3] for (file, _line, func), v in raw.items() if file.endswith(suffix) and func == name)
        parts[label] = {"share": round(cumulative / total, 3),
                        "us_per_record": round(cumulative * 1e6 / sum(map(len, profiled)), 1)}
    own = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:args.top]
    top = [{"function": f"{os.path.relpath(file) if file.startswith('/') else file}:{line}({func})",
            "calls": v[1], "own_share": round(v[2] / total, 3), "cumulative_share": round(v[3] / total, 3)}
           for (file, line, func), v in own]
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(0)
    doc.update({
        "records": records, "batches": len(timed), "batch": BATCH, "phones": args.phones or args.records,
        "wall_us_per_record": round(wall * 1e6 / records, 1), "cpu_us_per_record": round(cpu * 1e6 / records, 1),
        "waiting_share": round(max(0.0, wall - cpu) / wall, 3),
        "profiled_s": round(total, 2), "parts": parts, "top": top,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    })
    emit(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
