"""Transit on PostgreSQL: gate records ingested through the upload API, and daily clearing of a metro day.

    python -m bench.transit [--trips 1000000] [--records 20000] [--out FILE]
    python -m bench.transit --quick            # small sizes for trying (about a minute)

Needs PostgreSQL (``--postgres``, an existing database used only to create and drop a throw-away one) and
Redis (``--redis``). Prints one JSON document (bench/README.md explains every figure):

a. ``upload``: records per second through ``POST /api/v1/gate/records`` served by ``citycode serve``
   (gunicorn, gthread workers) on PostgreSQL and Redis, in batches of 100 records as ``sdk.upload.Uploader``
   sends them (``citycode gate`` uses batch_size 100), from ``--concurrency`` client threads; then the same
   batches sent again (every record a duplicate). Baselines in the same run, interleaved round by round:
   ``GET /api/v1/health`` requests per second through the same server and client, and the same number of
   rows inserted directly with SQLAlchemy (batches of 100, one transaction each, same concurrency).
b. ``clearing``: ``codeservice.clearing.run_clearing`` for one operator and day of ``--trips`` metro trips
   (two records each, written with COPY), in a child process that reports its time and peak memory;
   baseline: the same SELECT that clearing runs (same columns, filter and order), fetched whole, in a child
   process, before and after clearing.

Nothing here asserts a timing; it checks the counts it depends on (every record stored once, every
resent record a duplicate, the statement's trips) and reports the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from bench.http import Client
from bench.run import emit, machine
from codeservice.clients.service import add_api_client
from codeservice.config import Settings
from codeservice.demo import DEMO_OPERATORS
from codeservice.services import Services
from codeservice.transit.clearing import _RECORD_COLUMNS, run_clearing
from codeservice.transit.models import GateRecord
from codeservice.transit.partitions import ensure_partitions
from codeservice.transit.service import _record_row
from issuers.rides import issue_credential, make_ride_code
from issuers.trustlist import sign_trust_list
from sdk import Reason, TrustList, Verifier, load_anchor
from sdk.citytime import CITY_TZ, DAY_START_HOUR
from sdk.claims import CARD_TYPE_IDS, subject_to_text
from sdk.gate import Gate, GateConfig, GateStore
from sdk.result import refused_like
from verifiers.scenes import SCENES

CITYCODE = str(Path(sys.executable).with_name("citycode"))
BATCH = 100  # what `citycode gate` uploads at a time (codeservice/cli_transit.py)
BUS_OPERATOR, METRO_OPERATOR = "qd-bus", "qd-metro"
BUS_LINES = ("1", "11", "26", "301")
_METRO_FARES: Any = next(o for o in DEMO_OPERATORS if o["id"] == METRO_OPERATOR)["fares"]
METRO_STATIONS = sorted({station for line in _METRO_FARES["lines"].values() for station, _position in line})
#: Of the uploaded records, this share are refusals (gates upload those too), as a stale code would be.
REFUSED_SHARE = 0.02
GATE_RECORD_COLUMNS = (
    "record_id", "device_id", "operator_id", "gate_id", "scene", "station", "line", "direction", "at", "service_day",
    "accepted", "reason", "kind", "account", "card_type", "fare_limit", "credential_id", "code_id", "entitlement",
    "online", "received_at",
)


# -- environment ----------------------------------------------------------------------------------------
class Environment:
    """A throw-away database and data directory, ``citycode init`` (demo operators), and gunicorn."""

    def __init__(self, postgres: str, redis_url: str, workers: int | None, threads: int) -> None:
        self.admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
        self.dbname = f"citycode_bench_{uuid.uuid4().hex[:8]}"
        self.database_url = postgres.rsplit("/", 1)[0] + "/" + self.dbname
        self.home = Path(tempfile.mkdtemp(prefix="citycode-transit-"))
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
                    "CITYCODE_HOME": str(self.home), "CITYCODE_DATABASE_URL": self.database_url,
                    "CITYCODE_REDIS_URL": redis_url, "CITYCODE_REDIS_PREFIX": f"bench:{uuid.uuid4().hex}:"}
        self.workers, self.threads = workers, threads
        self.server: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.services: Services | None = None

    def __enter__(self) -> Environment:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.dbname}"'))
        try:
            subprocess.run([CITYCODE, "init"], env=self.env, check=True, capture_output=True)
            self.services = Services(Settings.from_env(self.env))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_server()
        if self.services is not None:
            self.services.db.dispose()
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'))
        self.admin.dispose()
        shutil.rmtree(self.home, ignore_errors=True)

    def start_server(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [CITYCODE, "serve", "--port", str(self.port), "--threads", str(self.threads)]
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        self.server = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        probe = Client(self.port, {})
        deadline = time.time() + 30
        while True:
            try:
                if probe.call("GET", "/api/v1/health")[0] == 200:
                    break
            except OSError:
                probe.local = threading.local()
            if self.server.poll() is not None or time.time() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        return " ".join(["citycode", *command[1:3], "<port>", *command[4:]])

    def stop_server(self) -> None:
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(20)
            self.server = None

    def device(self, name: str, operator: str) -> tuple[Any, str]:
        assert self.services is not None
        with self.services.db.session() as session:
            client, key = add_api_client(session, name, "device", operator=operator)
            session.expunge(client)
        return client, key


# -- a. upload ----------------------------------------------------------------------------------------------
PHONES = 200


def make_gates(env: Environment, count: int) -> list[Gate]:
    """Bus readers of qd-bus, each with a real (throw-away) store; only their record format is used. The
    transit platform's key is made as of a day ago, so that the bench's credentials may be hours old."""
    assert env.services is not None
    keyring = env.services.keyring
    keyring.rotate("city-transit", grace=0, now=time.time() - 86400)
    trust = TrustList.load(sign_trust_list(keyring, validity=3600), load_anchor(keyring.anchor_public_pem()))
    gates = []
    for n in range(count):
        config = GateConfig(gate_id=f"qd-bus-r{n + 1}", operator=BUS_OPERATOR, kind="bus", scene=SCENES["bus"],
                            line=BUS_LINES[n % len(BUS_LINES)])
        gates.append(Gate(config, Verifier(trust), GateStore(env.home / f"gate-{n + 1}.sqlite3")))
    return gates


def make_phones(env: Environment, rng: random.Random, now: float) -> list[tuple[ec.EllipticCurvePrivateKey, bytes]]:
    """Software phones: real device keys with credentials of the service's transit key, issued two hours ago."""
    assert env.services is not None
    signer = env.services.keyring.signer("city-transit")
    cards = list(CARD_TYPE_IDS)
    phones = []
    for index in range(PHONES):
        key = ec.generate_private_key(ec.SECP256R1())
        phones.append((key, issue_credential(signer, account=rng.randbytes(10), device_key=key.public_key(),
                                             card_type=rng.choice(cards), fare_limit=2000, status_index=index,
                                             validity=60, lifetime=86400, now=now - 7200)))
    return phones


def bus_records(gate: Gate, count: int, rng: random.Random, now: float,
                phones: Sequence[tuple[ec.EllipticCurvePrivateKey, bytes]]) -> list[dict[str, Any]]:
    """Records of *count* scans of real ride codes at *gate* within the last hour, made by ``Gate._record``
    from what the SDK finds in each code (accepted, carrying the code, or refused as stale)."""
    out = []
    for _ in range(count):
        at = now - rng.uniform(0, 3600)
        key, credential = rng.choice(phones)
        code = make_ride_code(key, credential, now=at)
        result = gate.verifier.evidence(code, at=at)
        assert result.accepted, result.detail
        if rng.random() < REFUSED_SHARE:
            result = refused_like(result, Reason.CODE_STALE)
        out.append(gate._record(result, at, code))
    return out


def _timed_pool(fn: Callable[[Any], Any], jobs: Sequence[Any], concurrency: int) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(fn, jobs))
    return time.perf_counter() - start, results


def summary(values: Sequence[float], digits: int = 1) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float]:
    """As bench.run.ratio: of the medians, and the median of the per-round ratios."""
    return {
        "of_medians": round(statistics.median(numerator) / statistics.median(denominator), 3),
        "median_per_round": round(statistics.median(n / d for n, d in zip(numerator, denominator, strict=True)), 3),
    }


def bench_upload(env: Environment, *, records: int, rounds: int, concurrency: int, health_per_round: int,
                 seed: int = 5) -> dict[str, Any]:
    assert env.services is not None
    rng = random.Random(seed)
    now = time.time()
    per_round = -(-records // rounds // BATCH) * BATCH
    gates = make_gates(env, concurrency)
    phones = make_phones(env, rng, now)
    # One device key a gate; batches go out in order, each from one gate (as its uploader sends them).
    keys = [env.device(f"Bench reader {g.config.gate_id}", BUS_OPERATOR)[1] for g in gates]
    direct_client, _key = env.device("Bench direct inserts", BUS_OPERATOR)
    command = env.start_server()
    clients = [Client(env.port, {"Authorization": f"Bearer {key}"}) for key in keys]
    health = Client(env.port, {})
    for _ in range(4 * concurrency):  # every worker and thread once, every connection opened
        health.call("GET", "/api/v1/health")

    def upload(job: tuple[int, list[dict[str, Any]]]) -> tuple[int, int, int, int]:
        gate, batch = job
        status, answer = clients[gate].call("POST", "/api/v1/gate/records", {"records": batch})
        if status != 200:
            return status, 0, 0, len(batch)
        return status, len(answer["stored"]), len(answer["duplicates"]), len(answer["rejected"])

    def insert(batch: list[dict[str, Any]]) -> int:
        assert env.services is not None
        with env.services.db.session() as session:
            session.execute(sa.insert(GateRecord), batch)
        return len(batch)

    samples: dict[str, list[float]] = {"health": [], "upload": [], "resend": [], "direct": []}
    counts = {"uploaded": 0, "stored": 0, "resent": 0, "duplicates": 0, "rejected": 0, "errors": 0, "direct": 0}
    warm = [(g, bus_records(gates[g], BATCH, rng, now, phones)) for g in range(len(gates))]
    _timed_pool(upload, warm, concurrency)  # warm the upload path in every worker
    _timed_pool(insert, [[_record_row(r, direct_client, now) for r in bus_records(gates[0], BATCH, rng, now, phones)]],
                1)
    def run_health(_jobs: list[Any], _rows: list[Any]) -> None:
        seconds, statuses = _timed_pool(lambda _: health.call("GET", "/api/v1/health")[0],
                                        range(health_per_round), concurrency)
        counts["errors"] += sum(s != 200 for s in statuses)
        samples["health"].append(health_per_round / seconds)

    def run_upload(jobs: list[Any], _rows: list[Any]) -> None:
        seconds, answers = _timed_pool(upload, jobs, concurrency)
        samples["upload"].append(per_round / seconds)
        counts["uploaded"] += per_round
        counts["stored"] += sum(a[1] for a in answers)
        counts["rejected"] += sum(a[3] for a in answers)
        counts["errors"] += sum(a[0] != 200 for a in answers)
        seconds, answers = _timed_pool(upload, jobs, concurrency)  # the same batches again
        samples["resend"].append(per_round / seconds)
        counts["resent"] += per_round
        counts["duplicates"] += sum(a[2] for a in answers)
        counts["errors"] += sum(a[0] != 200 for a in answers)

    def run_direct(_jobs: list[Any], rows: list[Any]) -> None:
        seconds, inserted = _timed_pool(insert, rows, concurrency)
        samples["direct"].append(per_round / seconds)
        counts["direct"] += sum(inserted)

    steps = [run_health, run_upload, run_direct]
    for r in range(rounds):
        jobs = [(i % len(gates), bus_records(gates[i % len(gates)], BATCH, rng, now, phones))
                for i in range(per_round // BATCH)]
        direct_rows = [[_record_row(rec, direct_client, now) for rec in bus_records(gates[0], BATCH, rng, now, phones)]
                       for _ in range(per_round // BATCH)]
        for step in steps if r % 2 == 0 else reversed(steps):
            step(jobs, direct_rows)
    env.stop_server()
    with env.services.db.session() as session:
        held = session.scalar(sa.select(sa.func.count()).select_from(GateRecord))
    expected = counts["uploaded"] + counts["direct"] + len(warm) * BATCH + BATCH
    refused_by_service = counts["uploaded"] - counts["stored"]
    if counts["errors"] or refused_by_service or counts["duplicates"] != counts["resent"] or held != expected:
        raise SystemExit(f"bench: upload counts do not add up: {counts}, {held} rows held, {expected} expected")
    return {
        "what": "POST /api/v1/gate/records, 100 records a request (Gate._record of ride scans at qd-bus readers, "
                f"{REFUSED_SHARE:.0%} of them refusals), {concurrency} client threads, one device key a reader; "
                "resend = the same batches again (all duplicates). Baselines: GET /api/v1/health through the same "
                "server and client; the same number of rows inserted with SQLAlchemy (insert(GateRecord), 100 "
                "rows a transaction, same threads)",
        "server": command + " (gunicorn gthread), PostgreSQL, Redis",
        "client": f"{concurrency} threads, keep-alive, on the same machine",
        "rounds": rounds,
        "records_per_round": per_round,
        "batch": BATCH,
        "health_requests_per_round": health_per_round,
        "counts": counts,
        "upload_records_per_s": summary(samples["upload"]),
        "upload_batches_per_s": summary([s / BATCH for s in samples["upload"]]),
        "resend_records_per_s": summary(samples["resend"]),
        "health_requests_per_s": summary(samples["health"]),
        "direct_insert_rows_per_s": summary(samples["direct"]),
        "upload_over_direct_insert": ratios(samples["upload"], samples["direct"]),
        "upload_batches_over_health_requests": ratios([s / BATCH for s in samples["upload"]], samples["health"]),
        "resend_over_upload": ratios(samples["resend"], samples["upload"]),
        "rounds_raw": {name: [round(v, 1) for v in values] for name, values in samples.items()},
    }


# -- b. clearing --------------------------------------------------------------------------------------------
def operating_day(now: float) -> dt.date:
    """Yesterday's operating day in city time (a day that is over, as clearing runs)."""
    return (dt.datetime.fromtimestamp(now, CITY_TZ) - dt.timedelta(days=1, hours=DAY_START_HOUR)).date()


def metro_day_copy(trips: int, day: dt.date, device_id: int, rng: random.Random, counts: dict[str, int],
                   chunk: int = 1 << 20) -> Iterator[bytes]:
    """COPY text of *trips* paired metro trips (an entry and an exit record each) on *day*, riders taking one
    to three trips between 05:00 and 23:00, about *chunk* bytes at a time; counts the accounts in *counts*."""
    start = dt.datetime.combine(day, dt.time(DAY_START_HOUR), CITY_TZ).timestamp()
    service_day = day.isoformat()
    received = dt.datetime.fromtimestamp(start + 86400 + 3600, dt.UTC).isoformat()
    cards = list(CARD_TYPE_IDS)
    limits = (2000, 2000, 2000, 2000, 350, 150)
    stations = METRO_STATIONS
    out = io.StringIO()
    made = 0
    randbytes, uniform, choice, randint = rng.randbytes, rng.uniform, rng.choice, rng.randint

    def iso(at: float) -> str:
        return dt.datetime.fromtimestamp(round(at, 3), dt.UTC).isoformat()

    while made < trips:
        counts["accounts"] = counts.get("accounts", 0) + 1
        account = subject_to_text(randbytes(10))
        card, limit, credential = choice(cards), choice(limits), randbytes(8).hex()
        # operator, gate, scene, station, line (none at a metro gate), direction, at, service day, accepted,
        # reason, kind, account, card type, fare limit, credential id, code id, entitlement (none), online
        common = f"{METRO_OPERATOR}\t%s\tmetro-gate\t%s\t\\N\t%s\t%s\t{service_day}\tt\tok\tride\t{account}\t" \
                 f"{card}\t{limit}\t{credential}\t%s\t\\N\tf\t{received}\n"
        at = start + uniform(3600, 8 * 3600)  # 05:00 to 12:00
        for _ in range(min(randint(1, 3), trips - made)):
            origin, destination = choice(stations), choice(stations)
            leave = at + uniform(300, 3600)
            for station, direction, moment in ((origin, "in", at), (destination, "out", leave)):
                out.write(f"{randbytes(16).hex()}\t{device_id}\t")
                out.write(common % (f"qd-metro-{station}-{direction}", station, direction, iso(moment),
                                    randbytes(16).hex()))
            made += 1
            at = leave + uniform(1800, 4 * 3600)
        if out.tell() >= chunk:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


def fill_metro_day(env: Environment, trips: int, day: dt.date, seed: int = 1_000_000) -> dict[str, Any]:
    """Write the day's records with COPY as they are generated (one transaction), then ANALYZE."""
    import psycopg

    device, _key = env.device("Bench metro gates", METRO_OPERATOR)
    assert env.services is not None
    ensure_partitions(env.services.db.engine, day, 1)  # the day's partitions (migration 0015), as an upload would
    url = env.database_url.replace("postgresql+psycopg://", "postgresql://")
    counts: dict[str, int] = {}
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY gate_records ({', '.join(GATE_RECORD_COLUMNS)}) FROM STDIN") as copy:
            for data in metro_day_copy(trips, day, device.id, random.Random(seed), counts):
                copy.write(data)
        conn.commit()
        filled = time.perf_counter() - started
        cur.execute("ANALYZE gate_records")
        conn.commit()
        cur.execute("SELECT count(*) FROM gate_records WHERE operator_id = %s AND service_day = %s",
                    (METRO_OPERATOR, day))
        row = cur.fetchone()
    records = row[0] if row else 0
    return {"records": records, "accounts": counts["accounts"], "generate_and_copy_s": round(filled, 1),
            "rows_per_s": round(records / filled)}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def child(kind: str, env: dict[str, str], day: dt.date) -> dict[str, Any]:
    """Run one measurement in a fresh process (so that its peak memory is its own)."""
    out = subprocess.run([sys.executable, "-m", "bench.transit", "--child", kind, "--day", day.isoformat()],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench: the {kind} child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def run_child(kind: str, day: dt.date) -> dict[str, Any]:
    services = Services(Settings.from_env(os.environ))
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    result: dict[str, Any]
    with services.db.session() as session:
        if kind == "select":
            rows = session.execute(
                sa.select(*_RECORD_COLUMNS).where(GateRecord.operator_id == METRO_OPERATOR,
                                                  GateRecord.service_day == day, GateRecord.accepted.is_(True))
                .order_by(GateRecord.account, GateRecord.at, GateRecord.record_id)
            ).all()
            result = {"rows": len(rows)}
        else:
            statement = run_clearing(session, METRO_OPERATOR, day)
            result = {"records": statement.records, "trips": statement.trips, "by_status": statement.by_status,
                      "charged_total": statement.charged_total, "digest": statement.digest}
    seconds = time.perf_counter() - started
    services.db.dispose()
    return {**result, "seconds": round(seconds, 2), "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before}


def bench_clearing(env: Environment, trips: int) -> dict[str, Any]:
    day = operating_day(time.time())
    filled = fill_metro_day(env, trips, day)
    if filled["records"] != 2 * trips:
        raise SystemExit(f"bench: {filled['records']} records written for {trips} trips")
    first = child("select", env.env, day)
    clearing = child("clearing", env.env, day)
    second = child("select", env.env, day)
    if clearing["trips"] != trips or clearing["by_status"] != {"paired": trips} or first["rows"] != 2 * trips:
        raise SystemExit(f"bench: clearing made {clearing['trips']} trips ({clearing['by_status']}) of {trips}")
    baseline = [first["seconds"], second["seconds"]]
    return {
        "what": "codeservice.clearing.run_clearing(session, 'qd-metro', day) and its commit, in a child process; "
                "baseline: the SELECT it runs (same columns, filter, order) fetched whole with SQLAlchemy, in a "
                "child process, before and after clearing",
        "operator": METRO_OPERATOR,
        "service_day": day.isoformat(),
        "trips": trips,
        "fill": filled,
        "clearing_s": clearing["seconds"],
        "clearing_peak_rss_mb": clearing["peak_rss_mb"],
        "trips_per_s": round(trips / clearing["seconds"]),
        "baseline_select_s": baseline,
        "baseline_select_peak_rss_mb": max(first["peak_rss_mb"], second["peak_rss_mb"]),
        "child_start_rss_mb": clearing["rss_before_mb"],
        "clearing_over_select": round(clearing["seconds"] / statistics.mean(baseline), 2),
        "statement": {k: clearing[k] for k in ("records", "trips", "by_status", "charged_total", "digest")},
    }


# -- main ---------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transit", description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, help="metro trips to clear (default 1000000; --quick 20000)")
    parser.add_argument("--records", type=int, help="records to upload (default 20000; --quick 3000)")
    parser.add_argument("--rounds", type=int, help="interleaved upload rounds (default 5; --quick 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: as citycode serve)")
    parser.add_argument("--threads", type=int, default=8, help="threads a worker (default 8, as citycode serve)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for trying")
    parser.add_argument("--out", type=Path, help="also write the JSON document here")
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child", choices=("select", "clearing"), help=argparse.SUPPRESS)
    parser.add_argument("--day", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, dt.date.fromisoformat(args.day))))
        return 0
    trips = args.trips if args.trips is not None else 20_000 if args.quick else 1_000_000
    records = args.records if args.records is not None else 3_000 if args.quick else 20_000
    rounds = args.rounds if args.rounds is not None else 3 if args.quick else 5

    started = time.perf_counter()
    doc: dict[str, Any] = {
        "benchmark": "citycode transit",
        "command": "python -m bench.transit " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }
    with Environment(args.postgres, args.redis, args.workers, args.threads) as env:
        with env.admin.connect() as conn:
            doc["machine"]["postgresql"] = conn.execute(sa.text("SHOW server_version")).scalar()
        doc["upload"] = bench_upload(env, records=records, rounds=rounds, concurrency=args.concurrency,
                                     health_per_round=max(200, records // rounds // BATCH * 10))
        doc["clearing"] = bench_clearing(env, trips)
    doc["duration_s"] = round(time.perf_counter() - started, 1)
    emit(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
