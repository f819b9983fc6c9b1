// The clerk's console: the purpose's fields, the code read by a USB scanner or the camera (a scanner's Enter
// never sends half a request), then the request's status,
// and receive the approved certificates once (JSON post carrying the page's CSRF token in a header).
(function () {
  "use strict";
  var t = window.CityI18n.t;
  var root = document.getElementById("console");
  if (!root) return;
  var csrf = root.dataset.csrf;

  // A scanner types the code and presses Enter: send only once a purpose and a field are chosen.
  var form = document.getElementById("request-form");
  var scan = document.getElementById("scan");
  var purpose = document.getElementById("purpose");

  // The purpose names what may be asked: show and send only its certificates and fields.
  function showPurposeAsks() {
    if (!purpose) return;
    var chosen = purpose.value;
    var first = document.getElementById("purpose-first");
    if (first) first.hidden = !!chosen;
    Array.prototype.forEach.call(document.querySelectorAll(".purpose-asks"), function (group) {
      var active = group.dataset.purpose === chosen;
      group.hidden = !active;
      Array.prototype.forEach.call(group.querySelectorAll("input[name=fields]"), function (box) {
        box.disabled = !active;
        if (!active) box.checked = false;
      });
    });
  }
  if (purpose) {
    purpose.addEventListener("change", showPurposeAsks);
    showPurposeAsks();
  }

  // What a code read does next, typed by a USB scanner (its Enter) or read by the camera alike: send the request
  // when a purpose and a field are chosen, else take the clerk to what is missing. True when it may be sent.
  function readyToSend() {
    var ticked = form.querySelector("input[name=fields]:checked:not(:disabled)");
    if (!purpose.value) { purpose.focus(); return false; }
    if (!ticked) {
      var first = form.querySelector("input[name=fields]:not(:disabled)");
      if (first) first.focus();
      return false;
    }
    return true;
  }

  if (form && scan && purpose) {
    scan.addEventListener("keydown", function (event) {
      if (event.key !== "Enter") return;
      if (!readyToSend()) event.preventDefault();
    });
  }

  // The camera: getUserMedia, decoded by the browser's BarcodeDetector where it reads QR codes, else by the
  // vendored jsQR (static/vendor/), loaded only then. A code read goes into the field as a scanner would type it.
  var cameraButton = document.getElementById("camera-button");
  var cameraBox = document.getElementById("camera");
  var video = document.getElementById("camera-video");
  var cameraStatus = document.getElementById("camera-status");
  var cameraStop = document.getElementById("camera-stop");
  var stream = null;
  var looking = false;
  var canvas = document.createElement("canvas");

  function loadJsQR() {
    return new Promise(function (resolve, reject) {
      if (window.jsQR) { resolve(window.jsQR); return; }
      var script = document.createElement("script");
      script.src = root.dataset.jsqrUrl;
      script.onload = function () { if (window.jsQR) resolve(window.jsQR); else reject(new Error("jsQR")); };
      script.onerror = function () { reject(new Error("jsQR")); };
      document.head.appendChild(script);
    });
  }

  function jsqrDecoder() {
    return loadJsQR().then(function (jsQR) {
      root.dataset.decoder = "jsqr";
      var context = canvas.getContext("2d", { willReadFrequently: true });
      return function (frame) {
        var width = frame.videoWidth, height = frame.videoHeight;
        if (!width || !height) return Promise.resolve(null);
        canvas.width = width;
        canvas.height = height;
        context.drawImage(frame, 0, 0, width, height);
        var found = jsQR(context.getImageData(0, 0, width, height).data, width, height,
                         { inversionAttempts: "dontInvert" });
        return Promise.resolve(found ? found.data : null);
      };
    });
  }

  function makeDecoder() {
    if (!("BarcodeDetector" in window)) return jsqrDecoder();
    return window.BarcodeDetector.getSupportedFormats().then(function (formats) {
      if (formats.indexOf("qr_code") < 0) return jsqrDecoder();
      var detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      root.dataset.decoder = "barcode-detector";
      return function (frame) {
        return detector.detect(frame).then(function (found) { return found.length ? found[0].rawValue : null; });
      };
    }, jsqrDecoder);
  }

  function stopCamera() {
    looking = false;
    if (stream) stream.getTracks().forEach(function (track) { track.stop(); });
    stream = null;
    video.srcObject = null;
    cameraBox.hidden = true;
    cameraButton.hidden = false;
  }

  function read(text) {
    stopCamera();
    scan.value = text.trim();
    root.dataset.scanned = "camera";
    scan.focus();
    if (readyToSend()) form.requestSubmit();
  }

  function look(decode) {
    if (!looking) return;
    decode(video).then(function (text) {
      if (!looking) return;
      if (text) { read(text); return; }
      setTimeout(function () { look(decode); }, 150);
    }, function () { setTimeout(function () { look(decode); }, 300); });
  }

  function startCamera() {
    cameraButton.hidden = true;
    cameraBox.hidden = false;
    cameraStatus.textContent = t("Opening the camera…");
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false })
      .then(function (opened) {
        stream = opened;
        video.srcObject = opened;
        return video.play().then(makeDecoder);
      })
      .then(function (decode) {
        cameraStatus.textContent = t("Hold the resident’s code in front of the camera.");
        looking = true;
        look(decode);
      })
      .catch(function (error) {
        stopCamera();
        cameraBox.hidden = false;
        cameraStop.hidden = true;
        cameraStatus.textContent = t("The camera cannot be used ({reason}); scan the code with the USB scanner or type it.",
                                     { reason: (error && error.name) || "error" });
        scan.focus();
      });
  }

  if (cameraButton && scan && form && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    cameraButton.hidden = false;
    cameraButton.addEventListener("click", function () { cameraStop.hidden = false; startCamera(); });
    cameraStop.addEventListener("click", function () { stopCamera(); scan.focus(); });
  }

  var panel = document.getElementById("progress");
  if (!panel || !panel.dataset.requestId) return;
  var statusLine = document.getElementById("request-status");
  var approvedBox = document.getElementById("approved");
  var button = document.getElementById("receive-button");
  var errorBox = document.getElementById("receive-error");
  var received = document.getElementById("received");
  var timer = null;
  var done = false;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The city's time of day (24-hour), as every page shows it.
  var clock = window.CityI18n.clock;

  function describe(items) {
    return items.map(function (i) {
      return i.type_name + ": " + i.fields.map(function (f) { return f.label; }).join(", ");
    });
  }

  function setStatus(state, text) {
    statusLine.dataset.status = state;
    statusLine.className = "request-status status-" + state;
    statusLine.textContent = text;
  }

  function showApproved(data) {
    approvedBox.textContent = "";
    if (!data.approved) { approvedBox.hidden = true; return; }
    approvedBox.appendChild(el("p", "label", t("The resident approved:")));
    var list = el("ul");
    describe(data.approved).forEach(function (line) { list.appendChild(el("li", "", line)); });
    approvedBox.appendChild(list);
    approvedBox.hidden = false;
  }

  function render(data) {
    showApproved(data);
    button.hidden = !data.can_receive;
    switch (data.status) {
      case "pending":
        setStatus("pending", t("Waiting for the resident to answer on their phone (until {time})…", { time: clock(data.answer_by) }));
        return true;
      case "approved":
        if (data.can_receive) {
          setStatus("approved", t("Approved. Receive it before {time}; it can be received once.", { time: clock(data.fetch_by) }));
          button.focus();
          return true;
        }
        setStatus("closed", t("Approved, but the time to receive it has passed."));
        return false;
      case "refused":
        setStatus("refused", t("The resident refused. Nothing was shared."));
        return false;
      case "expired":
        setStatus("expired", t("The request expired unanswered."));
        return false;
      case "fetched":
        setStatus("fetched", t("Received already; it cannot be received again."));
        return false;
      default:
        setStatus(data.status, data.status);
        return false;
    }
  }

  function schedule(seconds) {
    clearTimeout(timer);
    timer = setTimeout(poll, seconds * 1000);
  }

  function poll() {
    if (done) return;
    fetch(panel.dataset.statusUrl, { credentials: "same-origin", cache: "no-store",
                                     headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location = "/console/signin"; throw new Error("signed out"); }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (done) return;
        // Keep polling while approved too: the window to receive closes by itself.
        if (render(data)) schedule(data.status === "approved" ? 5 : 1.5);
      })
      .catch(function () {
        if (done) return;
        setStatus("offline", t("No connection — retrying…"));
        schedule(3);
      });
  }

  function showReceived(items) {
    received.textContent = "";
    items.forEach(function (item) {
      var card = el("article", "received-cert" + (item.verified ? " verified" : " unverified"));
      card.dataset.type = item.type;
      var head = el("header");
      head.appendChild(el("h3", "", item.type_name));
      head.appendChild(el("span", "badge " + (item.verified ? "badge-ok" : "badge-bad"),
                          item.verified ? t("verified ✓") : t("not verified ✗")));
      card.appendChild(head);
      if (!item.verified) {
        card.appendChild(el("p", "error", t("Do not use: {problem}.", { problem: item.problem || t("the signature did not verify") })));
        received.appendChild(card);
        return;
      }
      card.appendChild(el("p", "issuer", t("Signed by {issuer}", { issuer: item.issuer_name })));
      var list = el("dl", "received-fields");
      item.fields.forEach(function (f) {
        var dt = el("dt", "", f.label);
        var dd = el("dd", "", f.text);
        dd.dataset.field = f.name;
        list.appendChild(dt);
        list.appendChild(dd);
      });
      card.appendChild(list);
      card.appendChild(el("p", "hint", t("Keep until {time}, then delete it.", { time: clock(item.keep_until) })));
      var details = el("details", "sd-jwt");
      details.appendChild(el("summary", "", t("Signed certificate (SD-JWT) for your records system")));
      var text = el("textarea");
      text.readOnly = true;
      text.rows = 4;
      text.value = item.sd_jwt;
      details.appendChild(text);
      card.appendChild(details);
      received.appendChild(card);
    });
    received.hidden = false;
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    errorBox.hidden = true;
    fetch(panel.dataset.receiveUrl, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
    })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          return { ok: response.ok, status: response.status, data: data };
        });
      })
      .then(function (answer) {
        if (!answer.ok) {
          errorBox.textContent = t("Not received: {reason}.", { reason: answer.data.message || "HTTP " + answer.status });
          errorBox.hidden = false;
          if (answer.status >= 500) { button.disabled = false; return; }
          button.hidden = true;
          done = false;
          poll();
          return;
        }
        done = true;
        clearTimeout(timer);
        button.hidden = true;
        setStatus("received", t("Received. Only what the resident approved is shown below."));
        showReceived(answer.data.received || []);
        var next = document.getElementById("next-link");
        if (next) next.focus();
      })
      .catch(function () {
        errorBox.textContent = t("No connection; try again.");
        errorBox.hidden = false;
        button.disabled = false;
      });
  });

  poll();
})();
