"""A gate process killed with SIGKILL at random moments while it scans and uploads, restarted again and again:
at the end the service holds every scan the gate recorded exactly once, and no code opened the gate twice.

The gate is the real simulator (``citycode gate run``, the SDK's store and uploader) uploading over HTTP to
the service on PostgreSQL. The service answers each upload a little late, so that many kills land after it
has stored a batch and before the gate has seen the acknowledgement.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from werkzeug.serving import make_server

from codeservice.clients.service import add_api_client
from codeservice.identity.residents import list_residents
from codeservice.transit.models import GateRecord
from codeservice.transit.service import register_device
from issuers.rides import make_ride_code
from sdk.gate import GateStore
from tests.conftest import clear_database, make_settings

CITYCODE = str(Path(sys.executable).with_name("citycode"))
RESTARTS = 24


class SlowAnswers:
    """WSGI middleware: uploads are stored at once but answered 0.2 s later; counts duplicate answers.

    With ``kill_next`` set, the next upload is stored and then the gate is killed before it hears back: the
    window that a kill at a random moment hits only now and then (rarely on a loaded machine)."""

    def __init__(self, app) -> None:
        self.app = app
        self.duplicates_answered = 0
        self.kill_next = None

    def __call__(self, environ, start_response):
        body = b"".join(self.app(environ, start_response))
        if environ["PATH_INFO"] == "/api/v1/gate/records":
            with contextlib.suppress(ValueError):
                self.duplicates_answered += len(json.loads(body).get("duplicates", []))
            kill, self.kill_next = self.kill_next, None
            if kill is not None:
                kill()
            time.sleep(0.2)
        return [body]


@pytest.mark.slow
def test_gate_killed_at_random_loses_nothing_and_duplicates_nothing(tmp_path, postgres_database, request):
    from codeservice.app import create_app

    home = tmp_path / "home"
    settings = make_settings(home, postgres_database, None, ride_code_validity=300)
    app = create_app(settings)
    services = app.extensions["citycode"]
    # the worker's database is shared with the tests that follow: leave it empty, also when this one fails
    request.addfinalizer(lambda: (clear_database(services.db.engine), services.db.dispose()))
    with services.db.session() as s:
        _client, device_key = add_api_client(s, "fault gate", "device", operator="qd-bus")
        pids = [r.pid for r in list_residents(s)]
    phones = []
    for pid in pids:
        key = ec.generate_private_key(ec.SECP256R1())
        with services.db.session() as s:
            cred = register_device(s, services.keyring, pid, key.public_key(), label="t", fare_limit=2000,
                                   lifetime=86400, validity=300, status_list_size=settings.status_list_size,
                                   now=time.time())
        phones.append((key, cred.credential))

    wsgi = SlowAnswers(app)
    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
           "CITYCODE_HOME": str(home), "CITYCODE_DATABASE_URL": postgres_database,
           "CITYCODE_RIDE_CODE_VALIDITY": "300", "CITYCODE_DEVICE_KEY": device_key}
    store_path = tmp_path / "gate.sqlite3"
    command = [CITYCODE, "gate", "run", "--operator", "qd-bus", "--gate-id", "bus-301-front", "--line", "301",
               "--store", str(store_path), "--upload", url, "--upload-every", "2"]
    rng = random.Random(1128)
    fed: list[str] = []  # every code text handed to the gate, in order (a re-fed code appears again)
    decided: set[str] = set()
    announced: list[str] = []  # record ids of the decisions the gate printed
    kills = 0
    try:
        for run in range(RESTARTS + 1):
            last = run == RESTARTS
            process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True, bufsize=1)
            killer = None
            if not last:
                in_window = run % 3 == 0  # killed right after the service stored a batch
                if in_window:
                    wsgi.kill_next = lambda p=process: p.send_signal(signal.SIGKILL)
                killer = threading.Timer(rng.uniform(8.0, 10.0) if in_window else rng.uniform(1.0, 4.0),
                                         process.send_signal, (signal.SIGKILL,))
                killer.start()
            try:
                for _ in range(12 if not last else 6):
                    key, cred = rng.choice(phones)
                    undecided = [c for c in fed[-3:] if c not in decided]
                    code = undecided[0] if undecided and rng.random() < 0.5 else make_ride_code(key, cred)
                    if rng.random() < 0.1 and decided:
                        code = rng.choice(sorted(decided))  # a passenger scanning a used code again
                    fed.append(code)
                    process.stdin.write(code + "\n")
                    process.stdin.flush()
                    while True:
                        line = process.stdout.readline()
                        if not line or "opened" in line:
                            break
                    if not line:
                        break
                    decided.add(code)
                    announced.append(json.loads(line)["record_id"])
                if last:
                    process.stdin.close()
                    process.wait(timeout=60)
                    assert process.returncode in (0, 1)
                else:
                    process.wait(timeout=30)
                    kills += process.returncode == -signal.SIGKILL
            except (BrokenPipeError, OSError):
                process.wait(timeout=30)
                kills += process.returncode == -signal.SIGKILL
            finally:
                wsgi.kill_next = None
                if killer is not None:
                    killer.cancel()
                if process.poll() is None:
                    process.kill()
                    process.wait()
        drained = subprocess.run([CITYCODE, "gate", "upload", "--store", str(store_path), "--upload", url],
                                 env=env, capture_output=True, text=True, timeout=60)
        assert drained.returncode == 0, drained.stdout + drained.stderr
    finally:
        server.shutdown()

    store = GateStore(store_path)
    on_gate = store.records()
    store.close()
    with services.db.session() as s:
        held = s.execute(select(GateRecord.record_id, GateRecord.code_id, GateRecord.accepted)).all()
    services.db.dispose()

    assert kills >= RESTARTS // 2, f"only {kills} of {RESTARTS} runs were killed"
    assert wsgi.duplicates_answered > 0  # some kills fell between storing and acknowledging
    assert all(r["upload_state"] == "sent" for r in on_gate)
    assert sorted(r["record_id"] for r in on_gate) == sorted(r.record_id for r in held)  # each exactly once
    opened = [r.code_id for r in held if r.accepted]
    assert len(opened) == len(set(opened)), "a code opened the gate twice"
    assert set(announced) <= {r.record_id for r in held} and len(announced) > RESTARTS  # every printed decision
