// A QR code encoder (ISO/IEC 18004) for what this product shows: alphanumeric mode (the base45 text of a
// citycode), error correction level M, versions 1 to 20. The phone draws its own ride code with it, also
// offline. tests/test_qr_js.py checks it against zxing-cpp and the qrcode package's choice of version.
(function (root) {
  "use strict";

  var ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
  // Level M: [blocks, codewords a block, data codewords a block] per group, versions 1 to 20.
  var BLOCKS_M = [
    [[1, 26, 16]], [[1, 44, 28]], [[1, 70, 44]], [[2, 50, 32]], [[2, 67, 43]], [[4, 43, 27]], [[4, 49, 31]],
    [[2, 60, 38], [2, 61, 39]], [[3, 58, 36], [2, 59, 37]], [[4, 69, 43], [1, 70, 44]],
    [[1, 80, 50], [4, 81, 51]], [[6, 58, 36], [2, 59, 37]], [[8, 59, 37], [1, 60, 38]],
    [[4, 64, 40], [5, 65, 41]], [[5, 65, 41], [5, 66, 42]], [[7, 73, 45], [3, 74, 46]],
    [[10, 74, 46], [1, 75, 47]], [[9, 69, 43], [4, 70, 44]], [[3, 70, 44], [11, 71, 45]],
    [[3, 67, 41], [13, 68, 42]]
  ];
  var ALIGNMENT = [
    [], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34], [6, 22, 38], [6, 24, 42], [6, 26, 46], [6, 28, 50],
    [6, 30, 54], [6, 32, 58], [6, 34, 62], [6, 26, 46, 66], [6, 26, 48, 70], [6, 26, 50, 74], [6, 30, 54, 78],
    [6, 30, 56, 82], [6, 30, 58, 86], [6, 34, 62, 90]
  ];
  var MAX_VERSION = BLOCKS_M.length;

  // -- Reed-Solomon over GF(256), primitive polynomial 0x11d -----------------------------------------------
  var EXP = new Array(512), LOG = new Array(256);
  (function () {
    var x = 1;
    for (var i = 0; i < 255; i++) {
      EXP[i] = x; LOG[x] = i;
      x <<= 1;
      if (x & 0x100) x ^= 0x11d;
    }
    for (i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
  })();

  function multiply(a, b) { return a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]]; }

  function generator(degree) {
    var poly = [1];
    for (var i = 0; i < degree; i++) {
      var next = new Array(poly.length + 1).fill(0);
      for (var j = 0; j < poly.length; j++) {
        next[j] ^= poly[j];
        next[j + 1] ^= multiply(poly[j], EXP[i]);
      }
      poly = next;
    }
    return poly;
  }

  function remainder(data, degree) {
    var gen = generator(degree), rest = new Array(degree).fill(0);
    for (var i = 0; i < data.length; i++) {
      var factor = data[i] ^ rest[0];
      rest.shift(); rest.push(0);
      for (var j = 0; j < degree; j++) rest[j] ^= multiply(gen[j + 1], factor);
    }
    return rest;
  }

  // -- data codewords ------------------------------------------------------------------------------------------
  function dataCapacity(version) {
    return BLOCKS_M[version - 1].reduce(function (sum, g) { return sum + g[0] * g[2]; }, 0);
  }

  function countBits(version) { return version <= 9 ? 9 : version <= 26 ? 11 : 13; }

  function encodeData(text) {
    for (var k = 0; k < text.length; k++) {
      if (ALPHANUMERIC.indexOf(text[k]) < 0) throw new Error("not QR alphanumeric text");
    }
    var version = 0, bits = null;
    for (var v = 1; v <= MAX_VERSION; v++) {
      var needed = 4 + countBits(v) + 11 * Math.floor(text.length / 2) + 6 * (text.length % 2);
      if (needed <= dataCapacity(v) * 8) { version = v; break; }
    }
    if (!version) throw new Error("text too long for version " + MAX_VERSION + "-M");
    bits = [];
    function put(value, length) { for (var i = length - 1; i >= 0; i--) bits.push((value >>> i) & 1); }
    put(2, 4);
    put(text.length, countBits(version));
    for (var i = 0; i + 1 < text.length; i += 2) {
      put(ALPHANUMERIC.indexOf(text[i]) * 45 + ALPHANUMERIC.indexOf(text[i + 1]), 11);
    }
    if (text.length % 2) put(ALPHANUMERIC.indexOf(text[text.length - 1]), 6);
    var capacity = dataCapacity(version) * 8;
    put(0, Math.min(4, capacity - bits.length));
    while (bits.length % 8) bits.push(0);
    var bytes = [];
    for (i = 0; i < bits.length; i += 8) {
      var byte = 0;
      for (var j = 0; j < 8; j++) byte = (byte << 1) | bits[i + j];
      bytes.push(byte);
    }
    for (var pad = 0xec; bytes.length < capacity / 8; pad ^= 0xec ^ 0x11) bytes.push(pad);
    return { version: version, data: bytes };
  }

  function interleave(version, data) {
    var blocks = [], offset = 0;
    BLOCKS_M[version - 1].forEach(function (group) {
      for (var b = 0; b < group[0]; b++) {
        var chunk = data.slice(offset, offset + group[2]);
        offset += group[2];
        blocks.push({ data: chunk, ecc: remainder(chunk, group[1] - group[2]) });
      }
    });
    var out = [], longest = Math.max.apply(null, blocks.map(function (b) { return b.data.length; }));
    for (var i = 0; i < longest; i++) {
      blocks.forEach(function (b) { if (i < b.data.length) out.push(b.data[i]); });
    }
    for (i = 0; i < blocks[0].ecc.length; i++) blocks.forEach(function (b) { out.push(b.ecc[i]); });
    return out;
  }

  // -- the matrix --------------------------------------------------------------------------------------------
  function Matrix(version) {
    this.size = 17 + 4 * version;
    this.dark = [];
    this.fixed = [];
    for (var y = 0; y < this.size; y++) {
      this.dark.push(new Array(this.size).fill(false));
      this.fixed.push(new Array(this.size).fill(false));
    }
  }
  Matrix.prototype.set = function (x, y, dark) { this.dark[y][x] = dark; this.fixed[y][x] = true; };

  function drawFunctionPatterns(m, version) {
    var size = m.size, i, j;
    for (i = 0; i < size; i++) { m.set(6, i, i % 2 === 0); m.set(i, 6, i % 2 === 0); }
    [[3, 3], [size - 4, 3], [3, size - 4]].forEach(function (c) {
      for (var dy = -4; dy <= 4; dy++) {
        for (var dx = -4; dx <= 4; dx++) {
          var x = c[0] + dx, y = c[1] + dy, d = Math.max(Math.abs(dx), Math.abs(dy));
          if (x >= 0 && x < size && y >= 0 && y < size) m.set(x, y, d !== 2 && d !== 4);
        }
      }
    });
    var positions = ALIGNMENT[version - 1], n = positions.length;
    for (i = 0; i < n; i++) {
      for (j = 0; j < n; j++) {
        if ((i === 0 && j === 0) || (i === 0 && j === n - 1) || (i === n - 1 && j === 0)) continue;
        for (var ay = -2; ay <= 2; ay++) {
          for (var ax = -2; ax <= 2; ax++) {
            m.set(positions[i] + ax, positions[j] + ay, Math.max(Math.abs(ax), Math.abs(ay)) !== 1);
          }
        }
      }
    }
    drawFormatBits(m, 0);  // reserve; redrawn with the chosen mask
    if (version >= 7) {
      var rem = version;
      for (i = 0; i < 12; i++) rem = (rem << 1) ^ ((rem >>> 11) * 0x1f25);
      var bits = (version << 12) | rem;
      for (i = 0; i < 18; i++) {
        var bit = ((bits >>> i) & 1) === 1, a = size - 11 + (i % 3), b = Math.floor(i / 3);
        m.set(a, b, bit); m.set(b, a, bit);
      }
    }
  }

  function drawFormatBits(m, mask) {
    var data = (0 << 3) | mask, rem = data, i;  // level M is 00
    for (i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
    var bits = ((data << 10) | rem) ^ 0x5412, size = m.size;
    function bit(k) { return ((bits >>> k) & 1) === 1; }
    for (i = 0; i <= 5; i++) m.set(8, i, bit(i));
    m.set(8, 7, bit(6)); m.set(8, 8, bit(7)); m.set(7, 8, bit(8));
    for (i = 9; i < 15; i++) m.set(14 - i, 8, bit(i));
    for (i = 0; i < 8; i++) m.set(size - 1 - i, 8, bit(i));
    for (i = 8; i < 15; i++) m.set(8, size - 15 + i, bit(i));
    m.set(8, size - 8, true);
  }

  function drawCodewords(m, codewords) {
    var i = 0, total = codewords.length * 8, size = m.size;
    for (var right = size - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      for (var vert = 0; vert < size; vert++) {
        for (var j = 0; j < 2; j++) {
          var x = right - j, upward = ((right + 1) & 2) === 0, y = upward ? size - 1 - vert : vert;
          if (!m.fixed[y][x]) {
            m.dark[y][x] = i < total && ((codewords[i >>> 3] >>> (7 - (i & 7))) & 1) === 1;
            i++;
          }
        }
      }
    }
  }

  var MASKS = [
    function (x, y) { return (x + y) % 2 === 0; },
    function (x, y) { return y % 2 === 0; },
    function (x, y) { return x % 3 === 0; },
    function (x, y) { return (x + y) % 3 === 0; },
    function (x, y) { return (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0; },
    function (x, y) { return (x * y) % 2 + (x * y) % 3 === 0; },
    function (x, y) { return ((x * y) % 2 + (x * y) % 3) % 2 === 0; },
    function (x, y) { return ((x + y) % 2 + (x * y) % 3) % 2 === 0; }
  ];

  function applyMask(m, mask) {
    for (var y = 0; y < m.size; y++) {
      for (var x = 0; x < m.size; x++) if (!m.fixed[y][x] && MASKS[mask](x, y)) m.dark[y][x] = !m.dark[y][x];
    }
  }

  function penalty(m) {
    var size = m.size, score = 0, dark = 0, x, y;
    function line(get) {
      var s = 0, run = 1, seq = [];
      for (var i = 0; i < size; i++) seq.push(get(i));
      for (i = 1; i <= size; i++) {
        if (i < size && seq[i] === seq[i - 1]) { run++; continue; }
        if (run >= 5) s += 3 + (run - 5);
        run = 1;
      }
      // 1:1:3:1:1 finder-like runs with four light modules on either side
      for (i = 0; i + 6 < size; i++) {
        if (seq[i] && !seq[i + 1] && seq[i + 2] && seq[i + 3] && seq[i + 4] && !seq[i + 5] && seq[i + 6]) {
          var before = i >= 4 && !seq[i - 1] && !seq[i - 2] && !seq[i - 3] && !seq[i - 4];
          var after = i + 10 < size && !seq[i + 7] && !seq[i + 8] && !seq[i + 9] && !seq[i + 10];
          if (before || after) s += 40;
        }
      }
      return s;
    }
    for (y = 0; y < size; y++) score += line(function (i) { return m.dark[y][i]; });
    for (x = 0; x < size; x++) score += line(function (i) { return m.dark[i][x]; });
    for (y = 0; y + 1 < size; y++) {
      for (x = 0; x + 1 < size; x++) {
        var c = m.dark[y][x];
        if (c === m.dark[y][x + 1] && c === m.dark[y + 1][x] && c === m.dark[y + 1][x + 1]) score += 3;
      }
    }
    for (y = 0; y < size; y++) for (x = 0; x < size; x++) if (m.dark[y][x]) dark++;
    score += 10 * Math.floor(Math.abs(dark * 100 / (size * size) - 50) / 5);
    return score;
  }

  // encode(text) -> {version, size, modules: rows of booleans (true = dark)}; mask: force one (0-7) for tests
  function encode(text, forcedMask) {
    var coded = encodeData(text), codewords = interleave(coded.version, coded.data);
    var best = null, bestScore = Infinity;
    var masks = forcedMask === undefined ? [0, 1, 2, 3, 4, 5, 6, 7] : [forcedMask];
    masks.forEach(function (mask) {
      var m = new Matrix(coded.version);
      drawFunctionPatterns(m, coded.version);
      drawCodewords(m, codewords);
      applyMask(m, mask);
      drawFormatBits(m, mask);
      var score = penalty(m);
      if (score < bestScore) { best = m; bestScore = score; }
    });
    return { version: coded.version, size: best.size, modules: best.dark };
  }

  // Draws *text* on *canvas*, with the 4-module quiet zone, as large as the canvas allows (whole pixels).
  function draw(canvas, text) {
    var qr = encode(text), cells = qr.size + 8, scale = Math.max(1, Math.floor(canvas.width / cells));
    var ctx = canvas.getContext("2d"), offset = Math.floor((canvas.width - scale * cells) / 2) + 4 * scale;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#000";
    for (var y = 0; y < qr.size; y++) {
      for (var x = 0; x < qr.size; x++) if (qr.modules[y][x]) ctx.fillRect(offset + x * scale, offset + y * scale, scale, scale);
    }
    return qr;
  }

  var api = { encode: encode, draw: draw, MAX_VERSION: MAX_VERSION };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.CityQR = api;
})(this);
