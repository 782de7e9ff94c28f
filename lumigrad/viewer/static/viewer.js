// lumigrad viewer: a tiny WebGL renderer for meshes and camera frusta (no libraries).
// Polls /api/version and reloads /api/scene when the watched files change.
// Falls back to a Canvas 2D painter's-algorithm renderer when WebGL is unavailable.
"use strict";
(function () {
  const canvas = document.getElementById("view");
  const info = document.getElementById("info");
  const BG = [0.118, 0.129, 0.153];
  const MESH_COLORS = [[0.95, 0.62, 0.25], [0.35, 0.7, 0.95], [0.55, 0.85, 0.45], [0.9, 0.45, 0.7]];
  const CAM_COLOR = [0.9, 0.9, 0.35];

  // ---- 4x4 column-major matrices -------------------------------------------------
  function mul(a, b) {
    const o = new Float32Array(16);
    for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
      o[c * 4 + r] = s;
    }
    return o;
  }
  function perspective(fovy, aspect, near, far) {
    const f = 1 / Math.tan(fovy / 2), o = new Float32Array(16);
    o[0] = f / aspect; o[5] = f; o[10] = (far + near) / (near - far); o[11] = -1; o[14] = 2 * far * near / (near - far);
    return o;
  }
  function sub(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
  function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
  function norm(a) { const l = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / l, a[1] / l, a[2] / l]; }
  function lookAt(eye, target, up) {
    const z = norm(sub(eye, target)), x = norm(cross(up, z)), y = cross(z, x);
    return new Float32Array([x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0,
      -(x[0] * eye[0] + x[1] * eye[1] + x[2] * eye[2]), -(y[0] * eye[0] + y[1] * eye[1] + y[2] * eye[2]),
      -(z[0] * eye[0] + z[1] * eye[1] + z[2] * eye[2]), 1]);
  }

  // ---- orbit camera ------------------------------------------------------------------
  const orbit = { yaw: 0.6, pitch: 0.35, dist: 3, target: [0, 0, 0], radius: 1, framed: false };
  function eyePos() {
    const cp = Math.cos(orbit.pitch);
    return [orbit.target[0] + orbit.dist * cp * Math.sin(orbit.yaw), orbit.target[1] + orbit.dist * Math.sin(orbit.pitch),
      orbit.target[2] + orbit.dist * cp * Math.cos(orbit.yaw)];
  }
  function viewProj() {
    const aspect = canvas.width / Math.max(1, canvas.height);
    const near = Math.max(orbit.dist - 4 * orbit.radius, orbit.dist * 1e-3), far = orbit.dist + 4 * orbit.radius;
    return mul(perspective(0.8, aspect, near, far), lookAt(eyePos(), orbit.target, [0, 1, 0]));
  }

  // ---- scene -> triangle soup and line lists -----------------------------------------
  let scene = { tris: [], lines: null, version: null };
  function decode(b64, Type) {  // base64 little-endian -> typed array
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }
  function buildScene(data) {
    const tris = [];
    let lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    data.meshes.forEach(function (m, mi) {
      const v = decode(m.verts, Float32Array), f = decode(m.faces, Uint32Array), n = f.length / 3;
      const pos = new Float32Array(n * 9), nrm = new Float32Array(n * 9);
      for (let t = 0; t < n; t++) {
        const a = f[3 * t] * 3, b = f[3 * t + 1] * 3, c = f[3 * t + 2] * 3;
        const pa = [v[a], v[a + 1], v[a + 2]], pb = [v[b], v[b + 1], v[b + 2]], pc = [v[c], v[c + 1], v[c + 2]];
        const fn = norm(cross(sub(pb, pa), sub(pc, pa)));
        [pa, pb, pc].forEach(function (p, k) {
          for (let i = 0; i < 3; i++) {
            pos[t * 9 + k * 3 + i] = p[i]; nrm[t * 9 + k * 3 + i] = fn[i];
            lo[i] = Math.min(lo[i], p[i]); hi[i] = Math.max(hi[i], p[i]);
          }
        });
      }
      tris.push({ name: m.name, pos: pos, nrm: nrm, count: n * 3, color: MESH_COLORS[mi % MESH_COLORS.length] });
    });
    const lines = [];
    const depth = 0.15 * (isFinite(lo[0]) ? Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) : 1);
    data.cameras.forEach(function (c) {
      const M = c.cam_to_world;  // row-major 4x4, OpenCV camera frame
      const w = function (x, y, z) {
        return [0, 1, 2].map(function (r) { return M[r][0] * x + M[r][1] * y + M[r][2] * z + M[r][3]; });
      };
      const o = w(0, 0, 0);
      const corners = [[0, 0], [c.width, 0], [c.width, c.height], [0, c.height]].map(function (uv) {
        return w((uv[0] - c.cx) / c.fx * depth, (uv[1] - c.cy) / c.fy * depth, depth);
      });
      for (let i = 0; i < 4; i++) lines.push(o, corners[i], corners[i], corners[(i + 1) % 4]);
      const top = w((c.width / 2 - c.cx) / c.fx * depth, (-0.25 * c.height - c.cy) / c.fy * depth, depth);  // "up" tick
      lines.push(corners[0], top, top, corners[1]);
      for (let i = 0; i < 3; i++) { lo[i] = Math.min(lo[i], o[i]); hi[i] = Math.max(hi[i], o[i]); }
    });
    scene = { tris: tris, lines: lines.length ? new Float32Array([].concat.apply([], lines)) : null, version: data.version };
    if (isFinite(lo[0]) && !orbit.framed) frame(lo, hi);
    const nt = tris.reduce(function (s, t) { return s + t.count / 3; }, 0);
    info.textContent = data.meshes.map(function (m) { return m.name + ": " + m.num_verts + " verts, " + m.num_faces + " faces"; }).join("\n") +
      (data.cameras.length ? "\n" + data.cameras.length + " cameras" : "") +
      (data.meshes.length || data.cameras.length ? "" : "nothing to show yet (waiting for meshes)") +
      (data.errors.length ? "\n" + data.errors.join("\n") : "") + "\nrenderer: " + renderer.kind;
    document.title = "lumigrad view (" + nt + " triangles)";
    window.lumigradViewer = { version: data.version, triangles: nt, cameras: data.cameras.length, renderer: renderer.kind };
  }
  function frame(lo, hi) {
    orbit.target = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2];
    orbit.radius = Math.max(1e-6, Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) / 2);
    orbit.dist = orbit.radius / Math.sin(0.4) * 1.1;
    orbit.framed = true;
  }

  // ---- WebGL renderer ----------------------------------------------------------------
  function makeGL() {
    const gl = canvas.getContext("webgl", { antialias: true, preserveDrawingBuffer: true });
    if (!gl) return null;
    function prog(vs, fs) {
      const p = gl.createProgram();
      [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]].forEach(function (s) {
        const sh = gl.createShader(s[0]);
        gl.shaderSource(sh, s[1]); gl.compileShader(sh);
        if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(sh));
        gl.attachShader(p, sh);
      });
      gl.linkProgram(p);
      if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
      return p;
    }
    const meshProg = prog(
      "attribute vec3 pos; attribute vec3 nrm; uniform mat4 vp; varying vec3 n; varying vec3 p;" +
      "void main() { n = nrm; p = pos; gl_Position = vp * vec4(pos, 1.0); }",
      "precision mediump float; varying vec3 n; varying vec3 p; uniform vec3 color; uniform vec3 eye;" +
      "void main() { vec3 l = normalize(eye - p); float d = abs(dot(normalize(n), l));" +
      " gl_FragColor = vec4(color * (0.25 + 0.75 * d), 1.0); }");
    const lineProg = prog(
      "attribute vec3 pos; uniform mat4 vp; void main() { gl_Position = vp * vec4(pos, 1.0); }",
      "precision mediump float; uniform vec3 color; void main() { gl_FragColor = vec4(color, 1.0); }");
    const buffers = [];
    function buf(data) { const b = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, b); gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW); buffers.push(b); return b; }
    function attrib(p, name, b) {
      const loc = gl.getAttribLocation(p, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, b); gl.enableVertexAttribArray(loc); gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
      return loc;
    }
    let uploaded = null, gpu = [];
    return {
      kind: "webgl",
      draw: function () {
        if (uploaded !== scene) {
          buffers.splice(0).forEach(function (b) { gl.deleteBuffer(b); });
          gpu = scene.tris.map(function (t) { return { pos: buf(t.pos), nrm: buf(t.nrm), count: t.count, color: t.color }; });
          gpu.lines = scene.lines ? { pos: buf(scene.lines), count: scene.lines.length / 3 } : null;
          uploaded = scene;
        }
        gl.viewport(0, 0, canvas.width, canvas.height);
        gl.clearColor(BG[0], BG[1], BG[2], 1); gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
        gl.enable(gl.DEPTH_TEST);
        const vp = viewProj();
        gl.useProgram(meshProg);
        gl.uniformMatrix4fv(gl.getUniformLocation(meshProg, "vp"), false, vp);
        gl.uniform3fv(gl.getUniformLocation(meshProg, "eye"), eyePos());
        gpu.forEach(function (g) {
          const a = attrib(meshProg, "pos", g.pos), b = attrib(meshProg, "nrm", g.nrm);
          gl.uniform3fv(gl.getUniformLocation(meshProg, "color"), g.color);
          gl.drawArrays(gl.TRIANGLES, 0, g.count);
          gl.disableVertexAttribArray(a); gl.disableVertexAttribArray(b);
        });
        if (gpu.lines) {
          gl.useProgram(lineProg);
          gl.uniformMatrix4fv(gl.getUniformLocation(lineProg, "vp"), false, vp);
          gl.uniform3fv(gl.getUniformLocation(lineProg, "color"), CAM_COLOR);
          const a = attrib(lineProg, "pos", gpu.lines.pos);
          gl.drawArrays(gl.LINES, 0, gpu.lines.count);
          gl.disableVertexAttribArray(a);
        }
      },
    };
  }

  // ---- Canvas 2D fallback (painter's algorithm, flat shading) --------------------------
  function make2D() {
    const ctx = canvas.getContext("2d");
    const rgb = function (c, s) { return "rgb(" + Math.round(255 * c[0] * s) + "," + Math.round(255 * c[1] * s) + "," + Math.round(255 * c[2] * s) + ")"; };
    return {
      kind: "canvas2d",
      draw: function () {
        const W = canvas.width, H = canvas.height, vp = viewProj(), eye = eyePos();
        ctx.fillStyle = rgb(BG, 1); ctx.fillRect(0, 0, W, H);
        const proj = function (x, y, z) {
          const cx = vp[0] * x + vp[4] * y + vp[8] * z + vp[12], cy = vp[1] * x + vp[5] * y + vp[9] * z + vp[13];
          const cw = vp[3] * x + vp[7] * y + vp[11] * z + vp[15];
          return [(cx / cw + 1) * W / 2, (1 - cy / cw) * H / 2, cw];
        };
        const list = [];
        scene.tris.forEach(function (t) {
          for (let i = 0; i < t.count; i += 3) {
            const q = [0, 1, 2].map(function (k) { return proj(t.pos[(i + k) * 3], t.pos[(i + k) * 3 + 1], t.pos[(i + k) * 3 + 2]); });
            if (q[0][2] <= 0 || q[1][2] <= 0 || q[2][2] <= 0) continue;
            const n = [t.nrm[i * 3], t.nrm[i * 3 + 1], t.nrm[i * 3 + 2]];
            const l = norm(sub(eye, [t.pos[i * 3], t.pos[i * 3 + 1], t.pos[i * 3 + 2]]));
            list.push({ q: q, z: q[0][2] + q[1][2] + q[2][2], fill: rgb(t.color, 0.25 + 0.75 * Math.abs(n[0] * l[0] + n[1] * l[1] + n[2] * l[2])) });
          }
        });
        list.sort(function (a, b) { return b.z - a.z; });
        list.forEach(function (t) {
          ctx.beginPath(); ctx.moveTo(t.q[0][0], t.q[0][1]); ctx.lineTo(t.q[1][0], t.q[1][1]); ctx.lineTo(t.q[2][0], t.q[2][1]); ctx.closePath();
          ctx.fillStyle = t.fill; ctx.strokeStyle = t.fill; ctx.fill(); ctx.stroke();
        });
        if (scene.lines) {
          ctx.strokeStyle = rgb(CAM_COLOR, 1); ctx.beginPath();
          for (let i = 0; i < scene.lines.length; i += 6) {
            const a = proj(scene.lines[i], scene.lines[i + 1], scene.lines[i + 2]), b = proj(scene.lines[i + 3], scene.lines[i + 4], scene.lines[i + 5]);
            if (a[2] > 0 && b[2] > 0) { ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); }
          }
          ctx.stroke();
        }
      },
    };
  }

  let renderer = null;
  const force2d = /[?&]renderer=2d/.test(location.search);  // ?renderer=2d: the fallback, on purpose
  try { renderer = force2d ? null : makeGL(); } catch (e) { console.warn("lumigrad view: WebGL failed, using canvas 2D:", e); renderer = null; }
  if (!renderer) renderer = make2D();

  let pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; resize(); renderer.draw(); });
  }
  function resize() {
    const r = window.devicePixelRatio || 1, w = Math.round(canvas.clientWidth * r), h = Math.round(canvas.clientHeight * r);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  }

  // ---- input ---------------------------------------------------------------------------
  let drag = null;
  canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  canvas.addEventListener("mousedown", function (e) { drag = { x: e.clientX, y: e.clientY, pan: e.shiftKey || e.button === 2 }; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    if (drag.pan) {
      const s = orbit.dist / canvas.clientHeight, cy = Math.cos(orbit.yaw), sy = Math.sin(orbit.yaw);
      orbit.target[0] -= s * dx * cy; orbit.target[2] += s * dx * sy; orbit.target[1] += s * dy;
    } else {
      orbit.yaw -= dx * 0.008;
      orbit.pitch = Math.max(-1.55, Math.min(1.55, orbit.pitch + dy * 0.008));
    }
    redraw();
  });
  canvas.addEventListener("wheel", function (e) { e.preventDefault(); orbit.dist *= Math.exp(e.deltaY * 0.001); redraw(); }, { passive: false });
  window.addEventListener("keydown", function (e) { if (e.key === "f") { orbit.framed = false; load(); } });
  window.addEventListener("resize", redraw);

  // ---- polling -------------------------------------------------------------------------
  function load() {
    return fetch("/api/scene", { cache: "no-store" }).then(function (r) { return r.json(); })
      .then(function (data) { buildScene(data); redraw(); })
      .catch(function (e) { info.textContent = "cannot load scene: " + e; });
  }
  function poll() {
    fetch("/api/version", { cache: "no-store" }).then(function (r) { return r.json(); })
      .then(function (v) {
        const next = function () { setTimeout(poll, v.poll_ms || 1000); };
        if (v.version !== scene.version) load().then(next); else next();
      })
      .catch(function () { info.textContent = "server stopped"; });
  }
  resize();
  load().then(function () { setTimeout(poll, 1000); });
})();
