// The ride code, made on this phone (docs/rides.md). Once: a P-256 key pair is made with WebCrypto, its
// private key not extractable, kept in IndexedDB; the public key is registered by signing the service's
// challenge, and the service answers with a ride credential. Then, every few seconds and with no network:
// the credential, the time and a random nonce are signed with the device key and drawn as a QR code.
(function () {
  "use strict";
  var t = window.CityI18n.t;
  var PREFIX = "CC1:";
  var PROOF_PREFIX = new TextEncoder().encode("citycode-ride-device:");
  var BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
  var section = document.getElementById("ride");
  var canvas = document.getElementById("ride-canvas");
  var status = document.getElementById("ride-status");
  var network = document.getElementById("ride-network");
  var enable = document.getElementById("ride-enable");
  var remove = document.getElementById("ride-remove");
  var device = null;   // {id (the transit account), privateKey, deviceId, credential, issuedAt, expiresAt, ...}
  var account = null;  // whose phone this is: each resident signed in on this browser has a key of their own
  var timer = null;
  var madeAt = 0;

  // -- bytes, base64url, base45, CBOR (only what a ride code needs) ---------------------------------------------
  function b64uDecode(text) {
    var s = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    var out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function b64uEncode(bytes) {
    var s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function base45(bytes) {
    var out = "";
    for (var i = 0; i + 1 < bytes.length; i += 2) {
      var n = bytes[i] * 256 + bytes[i + 1];
      out += BASE45[n % 45] + BASE45[Math.floor(n / 45) % 45] + BASE45[Math.floor(n / 2025)];
    }
    if (bytes.length % 2) {
      var last = bytes[bytes.length - 1];
      out += BASE45[last % 45] + BASE45[Math.floor(last / 45)];
    }
    return out;
  }
  function concat(parts) {
    var length = parts.reduce(function (n, p) { return n + p.length; }, 0), out = new Uint8Array(length), at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }
  function head(major, value) {  // a CBOR item head, shortest form (values up to 2^32 - 1)
    var m = major << 5;
    if (value < 24) return new Uint8Array([m | value]);
    if (value < 0x100) return new Uint8Array([m | 24, value]);
    if (value < 0x10000) return new Uint8Array([m | 25, value >> 8, value & 255]);
    return new Uint8Array([m | 26, (value >>> 24) & 255, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]);
  }
  function uint(n) { return head(0, n); }
  function nint(n) { return head(1, -1 - n); }
  function bstr(bytes) { return concat([head(2, bytes.length), bytes]); }
  function tstr(text) { var b = new TextEncoder().encode(text); return concat([head(3, b.length), b]); }

  // ECDSA signatures are malleable: with (r, s), (r, n - s) verifies too. WebCrypto gives either; the code
  // carries the low one, s <= n/2, as every signer of ours does (sdk/cose.py low_s).
  var P256_ORDER = BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
  function lowS(signature) {
    var s = BigInt(0), i;
    for (i = 32; i < 64; i++) s = s * BigInt(256) + BigInt(signature[i]);
    if (s * BigInt(2) <= P256_ORDER) return signature;
    var out = new Uint8Array(signature), t = P256_ORDER - s;
    for (i = 63; i >= 32; i--) { out[i] = Number(t % BigInt(256)); t = t / BigInt(256); }
    return out;
  }

  // The ride code: COSE_Sign1 {alg: ES256} over {6: iat, 7: nonce, -65537: 3 (ride), -65540: credential}.
  async function rideCode(now) {
    var nonce = crypto.getRandomValues(new Uint8Array(8));
    var payload = concat([head(5, 4), uint(6), uint(now), uint(7), bstr(nonce), nint(-65537), uint(3),
                          nint(-65540), bstr(b64uDecode(device.credential))]);
    var protectedHeader = concat([head(5, 1), uint(1), nint(-7)]);
    var toBeSigned = concat([head(4, 4), tstr("Signature1"), bstr(protectedHeader), bstr(new Uint8Array(0)),
                             bstr(payload)]);
    var signature = lowS(new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" },
                                                                 device.privateKey, toBeSigned)));
    var message = concat([new Uint8Array([0xd2]), head(4, 4), bstr(protectedHeader), head(5, 0), bstr(payload),
                          bstr(signature)]);
    return PREFIX + base45(message);
  }

  // -- the device store (IndexedDB keeps the CryptoKey itself; its private part cannot be read out) -------------
  function openStore() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open("citycode-rides", 1);
      request.onupgradeneeded = function () { request.result.createObjectStore("devices", { keyPath: "id" }); };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }
  async function storeOp(mode, action) {
    var db = await openStore();
    return new Promise(function (resolve, reject) {
      var tx = db.transaction("devices", mode), request = action(tx.objectStore("devices"));
      tx.oncomplete = function () { resolve(request.result); db.close(); };
      tx.onerror = function () { reject(tx.error); db.close(); };
    });
  }
  function loadDevice() { return storeOp("readonly", function (s) { return s.get(account); }); }
  function saveDevice(d) { return storeOp("readwrite", function (s) { return s.put(d); }); }
  function forgetDevice() { return storeOp("readwrite", function (s) { return s.delete(account); }); }

  // -- talking to the service (only to register and renew; codes need no network) ------------------------------
  async function api(method, path, body) {
    var response = await fetch(path, {
      method: method, credentials: "same-origin", cache: "no-store",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined
    });
    if (response.status === 401) { window.location = "/signin"; throw new Error("signed out"); }
    var data = await response.json();
    if (!response.ok) { var e = new Error(data.message || ("HTTP " + response.status)); e.reason = data.error; throw e; }
    return data;
  }
  async function proof(privateKey) {
    var challenge = (await api("POST", "/api/v1/me/ride/challenge")).challenge;
    var signed = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey,
                                          concat([PROOF_PREFIX, b64uDecode(challenge)]));
    return b64uEncode(new Uint8Array(signed));
  }
  function keep(credential) {
    device.deviceId = credential.device_id;
    device.credential = credential.credential;
    device.issuedAt = credential.issued_at;
    device.expiresAt = credential.expires_at;
    device.validity = credential.code_validity;
    device.refresh = credential.refresh_seconds;
    return saveDevice(device);
  }
  async function register() {
    enable.disabled = true;
    status.textContent = t("Making this phone’s key…");
    try {
      var pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
      var raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
      device = { id: account, privateKey: pair.privateKey };
      var credential = await api("POST", "/api/v1/me/ride/devices",
                                 { public_key: b64uEncode(raw), proof: await proof(pair.privateKey), label: label() });
      await keep(credential);
      enable.hidden = true;
      start();
    } catch (error) {
      device = null;
      status.textContent = t("Could not turn on the ride code: {reason}", { reason: error.message });
      enable.disabled = false;
    }
  }
  function label() {
    var ua = navigator.userAgent;
    return (/Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iPhone" : "Browser") + " phone";
  }
  async function renewIfDue() {
    if (!device || !navigator.onLine) return;
    var now = Date.now() / 1000, life = device.expiresAt - device.issuedAt;
    if (device.expiresAt - now > life / 2) return;  // renew once half the authorisation is used
    try {
      await keep(await api("POST", "/api/v1/me/ride/devices/" + device.deviceId + "/credential",
                           { proof: await proof(device.privateKey) }));
    } catch (error) {
      if (error.reason === "not_found" || error.reason === "device_revoked") {
        await forgetDevice();
        device = null;
        stop(t("This phone was removed from your account."));
        enable.hidden = false;
        enable.disabled = false;
      }
    }
  }

  // -- drawing ---------------------------------------------------------------------------------------------------
  async function draw() {
    if (!device) return;
    var now = Math.floor(Date.now() / 1000);
    if (now > device.expiresAt) {
      section.dataset.state = "stale";
      status.textContent = t("Ride authorisation expired: connect once to renew it.");
      schedule(5);
      renewIfDue();
      return;
    }
    var text = await rideCode(now);
    CityQR.draw(canvas, text);
    madeAt = now;
    canvas.hidden = false;
    section.dataset.state = "ready";
    section.dataset.serial = String((Number(section.dataset.serial) || 0) + 1);
    section.dataset.madeAt = String(now);
    tick();
    schedule(device.refresh);
    renewIfDue();
  }
  function schedule(seconds) { clearTimeout(timer); timer = setTimeout(draw, Math.max(1, seconds) * 1000); }
  function stop(message) { clearTimeout(timer); canvas.hidden = true; status.textContent = message; }
  function tick() {
    if (device && madeAt) {
      var left = Math.max(0, madeAt + device.validity - Math.floor(Date.now() / 1000));
      status.textContent = t("Valid for {seconds} s · renews every {refresh} s", { seconds: left, refresh: device.refresh });
    }
    var online = navigator.onLine;
    network.textContent = online ? t("Online") : t("Offline — the code keeps working");
    network.classList.toggle("offline", !online);
  }
  function start() {
    remove.hidden = false;
    draw();
    showAccount();
  }

  async function showAccount(known) {
    try {
      var ride = known || await api("GET", "/api/v1/me/ride");
      document.getElementById("ride-card").textContent = ride.card_type;
      document.getElementById("ride-limit").textContent = "¥" + (ride.fare_limit / 100).toFixed(2);
      if (device) document.getElementById("ride-until").textContent = window.CityI18n.dateTime(device.expiresAt);
      document.getElementById("ride-account").hidden = false;
      var trips = (await api("GET", "/api/v1/me/trips")).trips, list = document.getElementById("trips");
      if (trips.length) {
        list.textContent = "";
        trips.slice(0, 20).forEach(function (trip) {
          var item = document.createElement("li"), where = document.createElement("span"),
              cost = document.createElement("span");
          where.textContent = trip.operator_name + " · " + (trip.line ? t("line {line}", { line: trip.line }) : (trip.origin || "") +
                              (trip.destination ? " → " + trip.destination : "")) + " · " + trip.service_day;
          cost.textContent = "¥" + (trip.charged / 100).toFixed(2);
          item.append(where, cost);
          list.append(item);
        });
      }
    } catch (error) { /* offline: the code needs none of this */ }
  }

  remove.addEventListener("click", async function () {
    if (!device || !window.confirm(t("Remove this phone? Its ride codes stop working at gates."))) return;
    try {
      await api("DELETE", "/api/v1/me/ride/devices/" + device.deviceId);
      await forgetDevice();
      device = null;
      remove.hidden = true;
      stop(t("This phone was removed."));
      enable.hidden = false;
      enable.disabled = false;
    } catch (error) { status.textContent = t("Could not remove this phone: {reason}", { reason: error.message }); }
  });
  enable.addEventListener("click", register);
  window.addEventListener("online", function () { tick(); renewIfDue(); showAccount(); });
  window.addEventListener("offline", tick);
  setInterval(tick, 1000);

  if (!window.crypto || !crypto.subtle || !window.indexedDB) {
    status.textContent = t("This browser cannot keep a ride key (it needs WebCrypto and IndexedDB over HTTPS).");
    return;
  }
  (async function boot() {
    var ride = null;
    try {
      ride = await api("GET", "/api/v1/me/ride");
      account = ride.account;
      localStorage.setItem("citycode-ride-account", account);
    } catch (error) {
      account = localStorage.getItem("citycode-ride-account");  // offline: the phone's last account
    }
    if (!account) { status.textContent = t("Connect once to turn on the ride code."); return; }
    try {
      var saved = await loadDevice();
      if (saved && saved.credential) { device = saved; start(); return; }
    } catch (error) {
      status.textContent = t("This browser keeps no data for this site.");
      return;
    }
    status.textContent = t("The ride code is not on this phone yet.");
    enable.hidden = false;
    if (ride) showAccount(ride);
  })();
})();
