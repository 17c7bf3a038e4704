// The page of `python -m nfinpaint.serve`: open a picture, paint the hole, Fill, compare, download.
//
// The picture sent to the server is always the file itself (first the one opened, then the PNG
// the server returned), never a re-encoded canvas: what is outside the hole comes back exactly.
// The mask canvas has the picture's full size; the screen shows both scaled down.
"use strict";

const OVERLAY = "rgb(255, 30, 90)";   // stroke colour on screen; the mask sent is white where painted
// what the multipart form adds to the two files (boundaries, each part's headers, the method and the
// dilation: ~500 bytes), counted against the server's upload limit with room to spare
const FORM_BYTES = 1024;

const $ = (id) => document.getElementById(id);
const ui = {
  file: $("file"), brush: $("brush"), brushSize: $("brush-size"), undo: $("undo"), clear: $("clear"),
  fill: $("fill"), compare: $("compare"), download: $("download"), method: $("method"),
  dilation: $("dilation"), progress: $("progress"), status: $("status"), model: $("model"),
  canvases: $("canvases"), picture: $("picture"), mask: $("mask"), cursor: $("cursor"),
  dropHint: $("drop-hint"),
};

const state = {
  name: "picture",
  current: null,     // {blob, bitmap}: what is shown and what Fill sends
  before: null,      // {blob, bitmap} before the last fill (the Before toggle)
  strokes: [],       // [{size, points: [[x, y], ...]}] in picture pixels
  history: [],       // undo stack: {kind: "stroke"} | {kind: "fill", current, before, strokes}
  drawing: null,
  comparing: false,
  busy: false,
  opening: 0,        // pictures being decoded; the newest one opened wins (openPicture)
  opened: 0,         // how many were asked to open
  lastFill: null,    // {ms, serverSeconds, width, height}: shown, and read by the browser test
  limits: null,      // the server's (GET /api/info): said here rather than as a failed upload
};
window.nfinpaint = state;

// ------------------------------------------------------------------ status and buttons

function setStatus(text, kind = "") {
  ui.status.textContent = text;
  ui.status.className = kind;
}

// Download offers the picture on show, named after how many fills made it (after an Undo too).
function offerDownload() {
  if (ui.download.href.startsWith("blob:")) URL.revokeObjectURL(ui.download.href);
  ui.download.href = URL.createObjectURL(state.current.blob);
  const fills = state.history.filter((h) => h.kind === "fill").length;
  ui.download.download = `${state.name}-filled${fills > 1 ? `-${fills}` : ""}.png`;
}

function refresh() {
  const hasPicture = state.current !== null;
  ui.undo.disabled = state.busy || state.history.length === 0;
  ui.clear.disabled = state.busy || state.strokes.length === 0;
  // a fill started while a newer picture decodes would be drawn onto that picture
  ui.fill.disabled = state.busy || state.opening > 0 || state.strokes.length === 0;
  ui.file.disabled = state.busy;   // a picture opened during a fill would take that fill's result
  ui.compare.disabled = state.busy || state.before === null;
  ui.download.classList.toggle("disabled", state.busy || state.before === null);
  ui.canvases.hidden = !hasPicture;
  ui.dropHint.hidden = hasPicture;
  document.body.dataset.state = state.busy ? "filling" : !hasPicture ? "empty"
    : state.before ? "filled" : "ready";
}

// ------------------------------------------------------------------ pictures

// The widest or tallest canvas Chromium draws: a picture past it opened blank and failed at Fill.
const MAX_CANVAS_SIDE = 65535;

async function openPicture(blob, name) {
  const ticket = ++state.opened;
  state.opening += 1;
  refresh();
  let bitmap;
  try {
    // turned by its EXIF orientation where Chromium does (a JPEG, an AVIF, a PNG whose EXIF comes
    // before its pixels; not a WebP), as the server turns it (serve.shown_turned)
    bitmap = await createImageBitmap(blob);
  } catch (err) {
    bitmap = null;
  } finally {
    state.opening -= 1;
    refresh();
  }
  // a picture opened after this one, and decoded first, stays: the last one chosen is shown
  if (ticket !== state.opened) return;
  if (bitmap === null) {
    setStatus(`${name || "that file"} is not a picture this browser can open`, "error");
    return;
  }
  const limits = state.limits;
  if (limits && bitmap.width * bitmap.height > limits.max_pixels) {
    setStatus(`${name || "that picture"} is ${bitmap.width}x${bitmap.height}; this server fills at most ` +
              `${+(limits.max_pixels / 1e6).toPrecision(3)} megapixels`, "error");
    return;
  }
  if (Math.max(bitmap.width, bitmap.height) > MAX_CANVAS_SIDE) {
    setStatus(`${name || "that picture"} is ${bitmap.width}x${bitmap.height}; the page draws pictures of at ` +
              `most ${MAX_CANVAS_SIDE} px a side (the API takes it: see /docs)`, "error");
    return;
  }
  state.name = (name || "picture").replace(/\.[^.]*$/, "") || "picture";
  state.current = {blob, bitmap};
  state.before = null;
  state.strokes = [];
  state.history = [];
  state.lastFill = null;
  setComparing(false);
  for (const canvas of [ui.picture, ui.mask]) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  // the brush range follows the picture: 2 px to a quarter of its longer side
  const longest = Math.max(bitmap.width, bitmap.height);
  ui.brush.max = String(Math.max(50, Math.round(longest / 4)));
  showBrushSize();
  drawPicture();
  redrawMask();
  setStatus(`${bitmap.width}x${bitmap.height}: paint over what should go, then press Fill.`);
  refresh();
}

function drawPicture() {
  const shown = state.comparing && state.before ? state.before : state.current;
  const ctx = ui.picture.getContext("2d");
  ctx.clearRect(0, 0, ui.picture.width, ui.picture.height);
  ctx.drawImage(shown.bitmap, 0, 0);
}

// ------------------------------------------------------------------ the brush

function showBrushSize() {
  ui.brushSize.textContent = `${ui.brush.value} px`;
}

function toPicture(event) {
  const rect = ui.mask.getBoundingClientRect();
  return [(event.clientX - rect.left) * ui.mask.width / rect.width,
          (event.clientY - rect.top) * ui.mask.height / rect.height];
}

function paintStroke(ctx, stroke, from = 0) {
  ctx.strokeStyle = ctx.fillStyle = OVERLAY;
  ctx.lineWidth = stroke.size;
  ctx.lineCap = ctx.lineJoin = "round";
  const pts = stroke.points;
  if (from === 0) {
    // a dot: a path of points all at one place has no length, and the canvas draws nothing for it (a tap
    // whose pen sent a move without moving vanished from the mask at the next repaint)
    ctx.beginPath();
    ctx.arc(pts[0][0], pts[0][1], stroke.size / 2, 0, 2 * Math.PI);
    ctx.fill();
  }
  if (pts.length === 1) return;
  ctx.beginPath();
  ctx.moveTo(...pts[Math.max(0, from - 1)]);
  for (let i = Math.max(1, from); i < pts.length; i++) ctx.lineTo(...pts[i]);
  ctx.stroke();
}

function redrawMask() {
  const ctx = ui.mask.getContext("2d");
  ctx.clearRect(0, 0, ui.mask.width, ui.mask.height);
  for (const stroke of state.strokes) paintStroke(ctx, stroke);
}

function moveCursor(event) {
  const rect = ui.mask.getBoundingClientRect();
  const diameter = Number(ui.brush.value) * rect.width / ui.mask.width;
  Object.assign(ui.cursor.style, {
    width: `${diameter}px`, height: `${diameter}px`,
    left: `${event.clientX - rect.left - diameter / 2}px`, top: `${event.clientY - rect.top - diameter / 2}px`,
  });
  ui.cursor.hidden = false;
}

// One pointer draws at a time: a second finger (a pinch, a palm) added its points to the first's
// stroke, a band across the picture, and history fell out of step with the strokes.
let drawingPointer = null;

ui.mask.addEventListener("pointerdown", (event) => {
  if (state.busy || state.comparing || !state.current || event.button !== 0 || state.drawing) return;
  event.preventDefault();
  ui.mask.setPointerCapture(event.pointerId);
  drawingPointer = event.pointerId;
  state.drawing = {size: Number(ui.brush.value), points: [toPicture(event)]};
  state.strokes.push(state.drawing);
  paintStroke(ui.mask.getContext("2d"), state.drawing);
});

ui.mask.addEventListener("pointermove", (event) => {
  moveCursor(event);
  if (!state.drawing || event.pointerId !== drawingPointer) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  const start = state.drawing.points.length;
  for (const e of events.length ? events : [event]) state.drawing.points.push(toPicture(e));
  paintStroke(ui.mask.getContext("2d"), state.drawing, start);
});

function endStroke(event) {
  if (!state.drawing || event.pointerId !== drawingPointer) return;
  state.drawing = null;
  drawingPointer = null;
  state.history.push({kind: "stroke"});
  refresh();
}
ui.mask.addEventListener("pointerup", endStroke);
ui.mask.addEventListener("pointercancel", endStroke);
ui.mask.addEventListener("pointerleave", () => { ui.cursor.hidden = true; });

ui.brush.addEventListener("input", showBrushSize);

// ------------------------------------------------------------------ undo, clear, compare

function undo() {
  if (state.busy || state.drawing) return;
  const last = state.history.pop();
  if (!last) return;
  if (last.kind === "stroke") {
    state.strokes.pop();
  } else {   // a fill: back to the picture and the strokes it was made from
    state.current = last.current;
    state.before = last.before;
    state.strokes = last.strokes;
    setComparing(false);
    drawPicture();
    if (state.before !== null) offerDownload();   // the earlier fill now on show
    setStatus("Fill undone.");
  }
  redrawMask();
  refresh();
}

function clearStrokes() {
  if (state.busy || state.strokes.length === 0) return;
  // the strokes are the history entries after the last fill; the fills stay undoable
  const lastFill = state.history.map((h) => h.kind).lastIndexOf("fill");
  state.history.length = lastFill + 1;
  state.strokes = [];
  redrawMask();
  refresh();
}

function setComparing(on) {
  state.comparing = on && state.before !== null;
  ui.compare.setAttribute("aria-pressed", String(state.comparing));
  ui.compare.textContent = state.comparing ? "After" : "Before";
  ui.mask.style.visibility = state.comparing ? "hidden" : "visible";
  if (state.current) drawPicture();
}

ui.undo.addEventListener("click", undo);
ui.clear.addEventListener("click", clearStrokes);
ui.compare.addEventListener("click", () => setComparing(!state.comparing));
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  }
});

// ------------------------------------------------------------------ fill

function maskBlob() {
  // white where painted, with the brush's antialiased edge as alpha (the server's mask rule
  // counts a soft rim touching the stroke as hole, so the fill covers what the brush covered)
  const out = document.createElement("canvas");
  out.width = ui.mask.width;
  out.height = ui.mask.height;
  const ctx = out.getContext("2d");
  ctx.drawImage(ui.mask, 0, 0);
  ctx.globalCompositeOperation = "source-in";
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, out.width, out.height);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

function post(form, onUpload) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "api/inpaint");
    xhr.responseType = "blob";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onUpload(e.loaded / e.total); };
    xhr.upload.onload = () => onUpload(1);
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new Error("the server cannot be reached; is python -m nfinpaint.serve running?"));
    xhr.send(form);
  });
}

async function errorText(xhr) {
  try {
    return JSON.parse(await xhr.response.text()).error || `HTTP ${xhr.status}`;
  } catch (err) {
    return `HTTP ${xhr.status}`;
  }
}

async function fill() {
  if (state.busy || state.opening > 0 || !state.current || state.strokes.length === 0) return;
  const start = performance.now();
  state.busy = true;
  setComparing(false);
  refresh();
  ui.progress.hidden = false;
  ui.progress.value = 0;
  let phase = "Uploading";
  const tick = setInterval(() => {
    setStatus(`${phase}... ${((performance.now() - start) / 1000).toFixed(1)} s`);
  }, 100);
  try {
    const form = new FormData();
    form.append("image", state.current.blob, `${state.name}.png`);
    const mask = await maskBlob();
    const limit = state.limits ? state.limits.max_upload_bytes : Infinity;
    // the form around the two files (boundaries, field names, the method and dilation) counts too
    if (state.current.blob.size + mask.size + FORM_BYTES > limit) {
      throw new Error(`the picture and mask are ${((state.current.blob.size + mask.size) / 2 ** 20).toFixed(1)} MB; ` +
                      `this server takes at most ${+(limit / 2 ** 20).toPrecision(3)} MB`);
    }
    form.append("mask", mask, "mask.png");
    form.append("method", ui.method.value);
    form.append("dilation", String(Math.max(0, Math.round(Number(ui.dilation.value) || 0))));
    const xhr = await post(form, (fraction) => {
      ui.progress.value = fraction;
      if (fraction >= 1) {
        phase = "Filling";
        ui.progress.removeAttribute("value");   // indeterminate while the server fills
      }
    });
    if (xhr.status !== 200) throw new Error(await errorText(xhr));
    const blob = xhr.response;
    const bitmap = await createImageBitmap(blob);
    state.history.push({kind: "fill", current: state.current, before: state.before, strokes: state.strokes});
    state.before = state.current;
    state.current = {blob: new Blob([blob], {type: "image/png"}), bitmap};
    state.strokes = [];
    drawPicture();
    redrawMask();
    offerDownload();
    const ms = performance.now() - start;
    const server = Number(xhr.getResponseHeader("X-Fill-Seconds"));
    state.lastFill = {ms, serverSeconds: server, width: bitmap.width, height: bitmap.height};
    clearInterval(tick);
    setStatus(`Filled in ${(ms / 1000).toFixed(2)} s (the fill itself: ${server.toFixed(2)} s). ` +
              "Paint again to refine, Before to compare, Download PNG to keep it.", "done");
  } catch (err) {
    clearInterval(tick);
    setStatus(`Not filled: ${err.message}`, "error");
  } finally {
    clearInterval(tick);
    state.busy = false;
    ui.progress.hidden = true;
    refresh();
  }
}

ui.fill.addEventListener("click", fill);
ui.download.addEventListener("click", (event) => {
  if (ui.download.classList.contains("disabled")) event.preventDefault();
});

// ------------------------------------------------------------------ open and drop

ui.file.addEventListener("change", () => {
  const file = ui.file.files[0];
  if (file && !state.busy) openPicture(file, file.name);
  ui.file.value = "";   // the same file again is a fresh start
});

document.addEventListener("dragover", (event) => {
  event.preventDefault();
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  const file = [...(event.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"))
    || event.dataTransfer?.files?.[0];
  if (state.busy) return;
  if (file) openPicture(file, file.name);
});

// ------------------------------------------------------------------ what the server runs

fetch("api/info").then((r) => r.json()).then((info) => {
  const model = info.model ? `${info.model.preset || "generator"} (${info.model.file})` : "PatchMatch only";
  ui.model.textContent = `${model} on ${info.device}`;
  state.limits = info.limits;
  const labels = {auto: "auto", gan: "learned fill", "gan-detail": "learned fill + detail", patchmatch: "PatchMatch"};
  if (Array.isArray(info.methods) && info.methods.length) {   // whatever this server's registry holds
    ui.method.replaceChildren(...info.methods.map((name) => new Option(labels[name] || name, name,
                                                                       name === "auto", name === "auto")));
  }
}).catch(() => { ui.model.textContent = ""; });

refresh();
