// The check-in page's camera: getUserMedia, then the browser's BarcodeDetector where it has one, else jsQR
// (static/vendor/jsQR.js, 1.4.0) on frames drawn into a canvas. The first QR text read fills the form and sends it:
// the server then shows the venue and what will be recorded, and nothing is recorded before the resident confirms.
(function () {
  "use strict";
  var t = window.CityI18n.t;
  var start = document.getElementById("scanner-start");
  var video = document.getElementById("scanner-video");
  var canvas = document.getElementById("scanner-canvas");
  var status = document.getElementById("scanner-status");
  var form = document.getElementById("checkin-form");
  var field = document.getElementById("checkin-code");
  if (!start || !video || !form) return;
  var stream = null;
  var detector = null;
  var done = false;

  function stop() {
    if (stream) stream.getTracks().forEach(function (track) { track.stop(); });
    stream = null;
    video.hidden = true;
  }

  function found(text) {
    if (done || !text) return;
    done = true;
    stop();
    status.textContent = t("Code read. Checking it…");
    field.value = text;
    form.submit();
  }

  function withJsQR() {
    if (typeof window.jsQR !== "function" || !video.videoWidth) return;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    var context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    var image = context.getImageData(0, 0, canvas.width, canvas.height);
    var result = window.jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
    if (result && result.data) found(result.data);
  }

  function frame() {
    if (done || !stream) return;
    if (detector) {
      detector.detect(video).then(function (codes) {
        if (codes.length) found(codes[0].rawValue);
        else window.requestAnimationFrame(frame);
      }, function () { detector = null; window.requestAnimationFrame(frame); });
      return;
    }
    withJsQR();
    if (!done) window.requestAnimationFrame(frame);
  }

  start.addEventListener("click", function () {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      status.textContent = t("This browser cannot use the camera here. Paste the code's text below.");
      return;
    }
    if ("BarcodeDetector" in window) {
      try { detector = new window.BarcodeDetector({ formats: ["qr_code"] }); } catch (error) { detector = null; }
    }
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (s) {
      stream = s;
      video.srcObject = s;
      video.hidden = false;
      start.hidden = true;
      status.textContent = t("Point the camera at the code the venue has posted.");
      return video.play().then(function () { window.requestAnimationFrame(frame); });
    }).catch(function () {
      status.textContent = t("The camera could not be opened. Allow it, or paste the code's text below.");
    });
  });
}());
