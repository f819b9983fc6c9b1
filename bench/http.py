"""Consent requests, approvals and fetches per second through the HTTP API, served by gunicorn
(``citycode serve``) on PostgreSQL and Redis, as in production.

    python -m bench.http [--count 400] [--concurrency 8] [--workers 4]

Phases: online verify (scene service-window), consent requests, approvals, fetches; then ``citycode audit
verify`` (``audit_ok``; the command exits 1 when the log does not verify). Each phase also says what a request
cost in CPU (``cpu_ms_per_request``: the server's processes, and the PostgreSQL backends of the bench's
database), which other load on the machine barely changes, where requests a second do. Baseline in the same run:
``GET /api/v1/health`` per second (one database and one Redis round trip, no signing), through the same server
and client. Prints one JSON document; each phase has ``latency_ms_p99`` beside the median and p95.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from codeservice.config import Settings
from codeservice.identity.residents import list_residents
from codeservice.services import Services

CITYCODE = str(Path(sys.executable).with_name("citycode"))
ITEMS = [{"type": "LNYD", "fields": ["name", "age_over_60"]}]


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port, self.headers, self.local = port, headers, threading.local()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data is not None else {})}
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # gunicorn closes a keep-alive connection idle for 2 s (on a loaded machine, between rounds): the
            # request never reached a worker, so it goes again once, on a new connection
            conn.close()
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None


def rate(fn: Any, jobs: list[Any], concurrency: int, meter: CpuMeter | None = None) -> dict[str, Any]:
    latencies: list[float] = []
    before = meter.read() if meter else (0.0, 0.0)

    def one(job: Any) -> Any:
        start = time.perf_counter()
        out = fn(job)
        latencies.append(time.perf_counter() - start)
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, jobs))
    seconds = time.perf_counter() - start
    after = meter.read() if meter else (0.0, 0.0)
    cpu = {"service": round((after[0] - before[0]) * 1000 / len(jobs), 2),
           "database": round((after[1] - before[1]) * 1000 / len(jobs), 2)} if meter else {}
    return {"count": len(jobs), "seconds": round(seconds, 2), "per_second": round(len(jobs) / seconds, 1),
            **({"cpu_ms_per_request": cpu} if meter else {}),
            "latency_ms_median": round(statistics.median(latencies) * 1000, 1),
            "latency_ms_p95": round(sorted(latencies)[int(0.95 * len(latencies)) - 1] * 1000, 1),
            "latency_ms_p99": round(sorted(latencies)[max(0, int(0.99 * len(latencies)) - 1)] * 1000, 1),
            "results": results}


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User plus system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class CpuMeter:
    """CPU seconds spent by the server's processes (gunicorn's master and workers: its session) and by the
    PostgreSQL backends serving the bench's database: what a request costs whatever else the machine runs."""

    def __init__(self, session_id: int, admin: sa.Engine, dbname: str) -> None:
        self.session_id, self.admin, self.dbname = session_id, admin, dbname

    def read(self) -> tuple[float, float]:
        service = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.session_id:
                service += (int(fields[11]) + int(fields[12])) / TICKS
        with self.admin.connect() as conn:
            pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db"),
                                {"db": self.dbname}).scalars().all()
        return service, sum(cpu_of(pid) for pid in pids)


def sign_in_resident(port: int, pid: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/signin")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie", "").split(";")[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    conn.request("POST", "/signin/dev", body=urllib.parse.urlencode({"csrf": csrf, "resident": pid}),
                 headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    response = conn.getresponse()
    response.read()
    return response.getheader("Set-Cookie", cookie).split(";")[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--server-log", help="append the server's standard error (access log, errors) to this file")
    args = parser.parse_args()

    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    dbname = f"citycode_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    home = Path(tempfile.mkdtemp(prefix="citycode-http-"))
    env = {**os.environ, "CITYCODE_HOME": str(home),
           "CITYCODE_DATABASE_URL": args.postgres.rsplit("/", 1)[0] + "/" + dbname,
           "CITYCODE_REDIS_URL": args.redis, "CITYCODE_REDIS_PREFIX": f"bench:{uuid.uuid4().hex}:"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = None
    try:
        subprocess.run([CITYCODE, "init"], env=env, check=True, capture_output=True)
        clerk = json.loads(subprocess.run(
            [CITYCODE, "client", "add", "--role", "clerk", "--name", "Bench clerk", "--office", "central-hall-w3",
             "--rate", "100000"], env=env, check=True, capture_output=True, text=True).stdout)
        services = Services(Settings.from_env(env))

        with services.db.session() as session:
            elder = list_residents(session)[0].pid
        server = subprocess.Popen([CITYCODE, "serve", "--port", str(port), "--workers", str(args.workers),
                                   "--threads", "4"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(args.server_log, "a") if args.server_log else subprocess.DEVNULL,  # noqa: SIM115
                                  start_new_session=True)
        clerk_api = Client(port, {"Authorization": f"Bearer {clerk['key']}"})
        deadline = time.time() + 30
        while True:
            try:
                if clerk_api.call("GET", "/api/v1/health")[0] == 200:
                    break
            except OSError:
                clerk_api.local = threading.local()
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        resident_api = Client(port, {"Cookie": sign_in_resident(port, elder)})
        n, c = args.count, args.concurrency
        for _ in range(20):  # warm every worker
            clerk_api.call("GET", "/api/v1/health")

        meter = CpuMeter(server.pid, admin, dbname)
        health = rate(lambda _: clerk_api.call("GET", "/api/v1/health")[0], list(range(n)), c, meter)
        shown = [services.issue_identity_code(elder) for _ in range(n)]
        anonymous = Client(port, {})  # /verify takes a verifier's key or none: a clerk's would be refused
        verified = rate(lambda code: anonymous.call("POST", "/api/v1/verify",
                                                    {"code": code, "scene": "service-window"})[0], shown, c, meter)
        codes = [services.issue_identity_code(elder) for _ in range(n)]
        made = rate(lambda code: clerk_api.call("POST", "/api/v1/consent/requests",
                                                {"code": code, "purpose": "elderly allowance application",
                                                 "items": ITEMS}), codes, c, meter)
        ids = [body["id"] for status, body in made["results"] if status == 201]
        approved = rate(lambda rid: resident_api.call("POST", f"/api/v1/me/consent-requests/{rid}",
                                                      {"decision": "approve"})[0], ids, c, meter)
        fetched = rate(lambda rid: clerk_api.call("POST", f"/api/v1/consent/requests/{rid}/fetch")[0], ids, c,
                       meter)
        out: dict[str, Any] = {
            "benchmark": "consent over HTTP", "command": "python -m bench.http " + " ".join(sys.argv[1:]),
            "started_at": started, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "server": f"citycode serve --workers {args.workers} --threads 4 (gunicorn gthread), PostgreSQL, Redis",
            "client": f"{c} threads, keep-alive, on the same 2-core machine",
        }
        audit = subprocess.run([CITYCODE, "audit", "verify"], env=env, capture_output=True, text=True)
        try:
            audit_ok = audit.returncode == 0 and json.loads(audit.stdout).get("ok") is True
        except ValueError:
            audit_ok = False
        for name, result in (("health_baseline", health), ("verify", verified), ("requests", made),
                             ("approvals", approved), ("fetches", fetched)):
            statuses = [r[0] if isinstance(r, tuple) else r for r in result.pop("results")]
            result["statuses"] = {str(s): statuses.count(s) for s in sorted(set(statuses))}
            out[name] = result
        for name in ("verify", "requests", "approvals", "fetches"):
            out[name]["vs_health"] = round(out[name]["per_second"] / health["per_second"], 3)
        out["audit_ok"] = audit_ok  # the access log verified after the run: one chain, no gap, no fork
        print(json.dumps(out, indent=2))
        if not audit_ok:
            print(f"the access log does not verify after the run: {audit.stdout or audit.stderr}", file=sys.stderr)
            sys.exit(1)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(20)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
