"""The ride code in a real headless Chromium: the page makes a device key with WebCrypto, registers it, then,
with the browser offline, keeps signing and drawing fresh codes; gates read them from screenshots.

The service is `citycode serve` on its embedded defaults, with a ride code valid 10 s and renewed every 5 s.
The gates are the SDK's (sdk/gate.py) with the trust list and the transit status list synced before the
phone went offline; two bus readers of one operator share the operator's guard.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codeservice.state import MemoryState
from sdk import Reason, TrustList, Verifier
from sdk.gate import Gate, GateConfig, GateStore
from sdk.statuslist import StatusCache
from tests import test_browser as base
from verifiers.scenes import SCENES
from verifiers.transit import StateSharedGuard

pytestmark = pytest.mark.browser

service = base.service
trust = base.trust
browser = base.browser
context = base.context

SERIAL = "() => document.getElementById('ride').dataset.serial"
KEY_LOCKED = """async () => {
  const db = await new Promise((ok, ko) => { const r = indexedDB.open("citycode-rides", 1);
                                             r.onsuccess = () => ok(r.result); r.onerror = () => ko(r.error); });
  const all = await new Promise((ok) => { const r = db.transaction("devices").objectStore("devices").getAll();
                                          r.onsuccess = () => ok(r.result); });
  const key = all[0].privateKey;
  try { await crypto.subtle.exportKey("pkcs8", key); return "exported"; }
  catch (e) { return key.extractable === false && key.algorithm.namedCurve === "P-256" ? "locked" : String(e); }
}"""


def _shot(page, path: Path) -> tuple[bytes, str]:
    """Screenshot of the ride code canvas; taken again if the page drew a new code meanwhile."""
    canvas = page.locator("#ride-canvas")
    png, serial = b"", ""
    for _ in range(3):
        serial = page.evaluate(SERIAL)
        png = bytes(canvas.screenshot(path=str(path), animations="disabled"))
        if page.evaluate(SERIAL) == serial:
            break
    return png, serial


def _bus(gate_id: str, verifier: Verifier, store: Path, shared=None, clock=None) -> Gate:
    config = GateConfig(gate_id=gate_id, operator="qd-bus", kind="bus", scene=SCENES["bus"], line="1",
                        fares={"adult": 200, "student": 100, "elderly": 0, "disabled": 0})
    if clock is None:
        return Gate(config, verifier, GateStore(store), shared=shared)
    return Gate(config, verifier, GateStore(store), shared=shared, clock=clock)


def test_ride_codes_keep_coming_offline_and_an_offline_gate_reads_them(
    context, service: base.Service, trust: TrustList, tmp_path: Path
) -> None:
    page = context.new_page()
    base._sign_in(page)
    page.locator("#rides-link").click()
    page.wait_for_url("**/rides")
    page.locator("#ride-enable").click()
    page.wait_for_function(f"() => ({SERIAL})() === '1'")
    account = context.request.get("/api/v1/me/ride").json()
    assert account["devices"][0]["status"] == "valid"
    assert page.evaluate(KEY_LOCKED) == "locked"  # the private key cannot leave the browser

    # The gate syncs while it has a network; then the phone goes offline (and stays so).
    status = StatusCache()
    status.load(base._get(service.url + "/api/v1/status/city-transit"), trust)
    context.set_offline(True)
    first_png, first_serial = _shot(page, tmp_path / "ride-1.png")
    page.wait_for_function(f"s => ({SERIAL})() !== s", arg=first_serial, timeout=base.RENEWAL_TIMEOUT * 1000)
    second_png, _ = _shot(page, tmp_path / "ride-2.png")
    assert "Offline" in page.locator("#ride-network").inner_text()
    page.screenshot(path=str(tmp_path / "rides-page-offline.png"), full_page=True)

    shared = StateSharedGuard(MemoryState())  # the bus company's guard, shared by its online readers
    front = _bus("bus-1-front", Verifier(trust, status=status), tmp_path / "front.sqlite3", shared)
    first = front.scan(first_png, image=True)
    second = front.scan(second_png, image=True)
    for decision in (first, second):
        assert decision.opened, decision.result.to_dict()
        assert decision.result.kind == "ride" and decision.result.subject == account["account"]
        assert decision.record["account"] == account["account"]
        assert decision.record["card_type"] == account["card_type"] == "elderly"  # the first demo resident
    assert second.result.code_id != first.result.code_id
    assert second.result.issued_at is not None and first.result.issued_at is not None
    assert 0 < second.result.issued_at - first.result.issued_at <= base.RIDE_REFRESH + 2

    # The same code shown at the operator's second reader is refused.
    rear = _bus("bus-1-rear", Verifier(trust, status=status), tmp_path / "rear.sqlite3", shared)
    again = rear.scan(second_png, image=True)
    assert again.result.reason is Reason.REPLAYED and not again.opened

    # A screenshot of the first code, shown after its validity (and the clock leeway), is stale.
    assert first.result.expires_at is not None
    late_at = first.result.expires_at + 30 + 1
    late = _bus("bus-26", Verifier(trust, status=status), tmp_path / "late.sqlite3", clock=lambda: late_at)
    stale = late.scan(first_png, image=True)
    assert stale.result.reason is Reason.CODE_STALE and not stale.opened
    assert [r["reason"] for r in late.store.records()] == ["code_stale"]
