// annorm serve: the page. Uses only the JSON/PNG API (/api/...); no build step.
"use strict";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- status, errors, requests
let busySince = null, busyTimer = null;

function setBusy(what) {
  const status = $("status");
  clearInterval(busyTimer);
  if (!what) { status.classList.remove("busy"); busySince = null; return; }
  busySince = performance.now();
  status.classList.add("busy");
  const tick = () => { status.textContent = `${what}… ${((performance.now() - busySince) / 1000).toFixed(1)} s`; };
  tick();
  busyTimer = setInterval(tick, 100);
}

function done(message) { setBusy(null); $("status").textContent = message || ""; }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options, what) {
  showError("");
  setBusy(what);
  const started = performance.now();
  try {
    const response = await fetch(path, options);
    if (!response.ok) {
      let detail = `The server answered ${response.status}.`;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(detail);
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    done(`${what}: done in ${seconds} s`);
    return response;
  } catch (error) {
    done("");
    showError(error.message === "Failed to fetch" ? "The server cannot be reached; is `annorm serve` still running?" : error.message);
    throw error;
  }
}

// ---------------------------------------------------------------- tabs
document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${tab.dataset.view}`; });
}));

// ---------------------------------------------------------------- models
async function loadModels() {
  const models = await (await api("/api/models", {}, "loading models")).json();
  done("");
  for (const model of models) {
    const option = new Option(model.name, model.name);
    if (model.task === "inpaint") $("inpaint-model").add(option);
    if (model.task === "class-conditional" && !$("generate-class").dataset.filled) {
      for (const name of model.classes || []) {
        $("generate-class").add(new Option(name, name));
        $("layout-class").add(new Option(name, name));
      }
      $("generate-class").dataset.filled = "1";
    }
  }
}

// ---------------------------------------------------------------- inpaint: photo and mask
const inpaint = {
  photo: null,        // Blob of the current photo (the last fill's result after a fill)
  before: null,       // ImageBitmap of the photo before the last fill
  bitmap: null,       // ImageBitmap of the current photo
  name: "photo",
  ops: [],            // mask operations: {kind: "path", erase, width, points} | {kind: "image", bitmap} | {kind: "clear"}
  undone: [],
  erase: false,
  fills: 0,
};
const photoCanvas = $("photo-canvas"), maskCanvas = $("mask-canvas");
const MASK_COLOUR = "rgb(255, 40, 40)";

async function openPhoto(blob, name) {
  let bitmap;
  try { bitmap = await createImageBitmap(blob); } catch (_) {
    showError(`'${name}' is not an image this browser can read.`); return;
  }
  showError("");
  inpaint.photo = blob; inpaint.bitmap = bitmap; inpaint.before = null;
  inpaint.name = (name || "photo").replace(/\.[^.]*$/, "");
  inpaint.ops = []; inpaint.undone = [];
  for (const canvas of [photoCanvas, maskCanvas]) { canvas.width = bitmap.width; canvas.height = bitmap.height; }
  drawPhoto(bitmap); redrawMask();
  $("canvases").hidden = false; $("drop-hint").hidden = true;
  $("download").hidden = true; $("before-after").disabled = true;
  updateButtons();
}

function drawPhoto(bitmap) { photoCanvas.getContext("2d").drawImage(bitmap, 0, 0); }

function redrawMask() {
  const context = maskCanvas.getContext("2d");
  context.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  for (const op of inpaint.ops) {
    if (op.kind === "clear") { context.clearRect(0, 0, maskCanvas.width, maskCanvas.height); continue; }
    if (op.kind === "image") { context.globalCompositeOperation = "source-over"; context.drawImage(op.bitmap, 0, 0); continue; }
    context.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
    context.strokeStyle = context.fillStyle = MASK_COLOUR;
    context.lineWidth = op.width; context.lineCap = context.lineJoin = "round";
    context.beginPath();
    const [first, ...rest] = op.points;
    context.arc(first[0], first[1], op.width / 2, 0, 2 * Math.PI);
    context.fill();
    if (rest.length) {
      context.beginPath(); context.moveTo(first[0], first[1]);
      for (const [x, y] of rest) context.lineTo(x, y);
      context.stroke();
    }
  }
  context.globalCompositeOperation = "source-over";
}

function updateButtons() {
  $("fill").disabled = !inpaint.photo || !inpaint.ops.length;
  $("undo").disabled = !inpaint.ops.length;
  $("redo").disabled = !inpaint.undone.length;
}

// The painted mask as a PNG the server reads: hole white, the rest black, at the photo's size
// (null when nothing is painted).
function exportMask() {
  const { width, height } = maskCanvas;
  const painted = maskCanvas.getContext("2d").getImageData(0, 0, width, height);
  const out = document.createElement("canvas");
  out.width = width; out.height = height;
  const context = out.getContext("2d");
  const pixels = context.createImageData(width, height);
  let holes = 0;
  for (let i = 0; i < painted.data.length; i += 4) {
    const value = painted.data[i + 3] >= 128 ? 255 : 0;
    holes += value;
    pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = value; pixels.data[i + 3] = 255;
  }
  if (!holes) return Promise.resolve(null);
  context.putImageData(pixels, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

// pointer events: mouse, pen and touch alike
let stroke = null;
function photoPoint(event) {
  const box = maskCanvas.getBoundingClientRect();
  return [(event.clientX - box.left) * maskCanvas.width / box.width, (event.clientY - box.top) * maskCanvas.height / box.height];
}
maskCanvas.addEventListener("pointerdown", (event) => {
  if (!inpaint.photo || event.button > 0) return;
  maskCanvas.setPointerCapture(event.pointerId);
  const screenToPhoto = maskCanvas.width / maskCanvas.getBoundingClientRect().width;
  stroke = { kind: "path", erase: inpaint.erase, width: Number($("brush-size").value) * screenToPhoto, points: [photoPoint(event)] };
  inpaint.ops.push(stroke); inpaint.undone = [];
  redrawMask(); updateButtons();
});
maskCanvas.addEventListener("pointermove", (event) => {
  if (!stroke) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) stroke.points.push(photoPoint(e));
  redrawMask();
});
for (const type of ["pointerup", "pointercancel"]) maskCanvas.addEventListener(type, () => { stroke = null; });

function setTool(erase) {
  inpaint.erase = erase;
  $("tool-brush").classList.toggle("on", !erase); $("tool-eraser").classList.toggle("on", erase);
}
$("tool-brush").onclick = () => setTool(false);
$("tool-eraser").onclick = () => setTool(true);
function undo() { if (inpaint.ops.length) { inpaint.undone.push(inpaint.ops.pop()); redrawMask(); updateButtons(); } }
function redo() { if (inpaint.undone.length) { inpaint.ops.push(inpaint.undone.pop()); redrawMask(); updateButtons(); } }
$("undo").onclick = undo;
$("redo").onclick = redo;
$("clear").onclick = () => { if (inpaint.ops.length) { inpaint.ops.push({ kind: "clear" }); inpaint.undone = []; redrawMask(); updateButtons(); } };
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") { event.preventDefault(); event.shiftKey ? redo() : undo(); }
  else if (event.key === "b") setTool(false);
  else if (event.key === "e") setTool(true);
});

// opening photos: picker, drag and drop, paste
$("photo-file").onchange = (event) => { const file = event.target.files[0]; if (file) openPhoto(file, file.name); event.target.value = ""; };
const stage = $("stage");
stage.addEventListener("dragover", (event) => { event.preventDefault(); stage.classList.add("dragging"); });
stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
stage.addEventListener("drop", (event) => {
  event.preventDefault(); stage.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) openPhoto(file, file.name);
});
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) openPhoto(item.getAsFile(), "pasted");
});

// a mask file: read by the server exactly as the CLI reads it, then shown as paint
$("mask-file").onchange = async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  if (!inpaint.photo) { showError("Open a photo before its mask."); return; }
  const form = new FormData();
  form.append("mask", file); form.append("width", maskCanvas.width); form.append("height", maskCanvas.height);
  const response = await api("/api/mask", { method: "POST", body: form }, "reading the mask");
  const white = await createImageBitmap(await response.blob());
  const tinted = new OffscreenCanvas(white.width, white.height), context = tinted.getContext("2d");
  context.drawImage(white, 0, 0);
  context.globalCompositeOperation = "source-in"; context.fillStyle = MASK_COLOUR;
  context.fillRect(0, 0, white.width, white.height);
  inpaint.ops.push({ kind: "image", bitmap: tinted.transferToImageBitmap() }); inpaint.undone = [];
  redrawMask(); updateButtons();
};

// fill, before/after, download
$("fill").onclick = async () => {
  const started = performance.now();
  const mask = await exportMask();
  if (!mask) { showError("Paint over what should go first: the mask is empty."); return; }
  const form = new FormData();
  form.append("image", inpaint.photo, `${inpaint.name}.png`);
  form.append("mask", mask, "mask.png");
  form.append("model", $("inpaint-model").value);
  form.append("seed", $("inpaint-seed").value || "0");
  $("fill").disabled = true;
  try {
    const response = await api("/api/inpaint", { method: "POST", body: form }, "filling");
    const result = await response.blob();
    inpaint.before = inpaint.bitmap;
    inpaint.photo = result; inpaint.bitmap = await createImageBitmap(result);
    inpaint.ops = []; inpaint.undone = []; inpaint.fills += 1;
    drawPhoto(inpaint.bitmap); redrawMask();
    inpaint.lastFillSeconds = (performance.now() - started) / 1000;     // click to the result on screen
    const link = $("download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(result); link.download = `${inpaint.name}-filled.png`; link.hidden = false;
    $("before-after").disabled = false;
  } finally { updateButtons(); }
};
const showBefore = (on) => { if (inpaint.before) drawPhoto(on ? inpaint.before : inpaint.bitmap); $("before-after").classList.toggle("on", on); };
$("before-after").addEventListener("pointerdown", () => showBefore(true));
for (const type of ["pointerup", "pointerleave"]) $("before-after").addEventListener(type, () => showBefore(false));

// ---------------------------------------------------------------- generate
$("generate").onclick = async () => {
  const truncation = $("generate-truncation").value;
  const body = {
    classes: [$("generate-class").value], seed: Number($("generate-seed").value || 0),
    count: Number($("generate-count").value || 1), truncation: truncation ? Number(truncation) : null,
  };
  const response = await api("/api/generate", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }, "generating");
  const grid = $("grid");
  grid.replaceChildren();
  for (const sample of (await response.json()).samples) {
    const figure = document.createElement("figure");
    const image = new Image();
    image.src = `data:image/png;base64,${sample.png}`;
    image.alt = `${sample.class}, seed ${sample.seed}`;
    const name = `${sample.class}-seed${String(sample.seed).padStart(4, "0")}.png`;
    figure.title = `Download ${name}`;
    figure.append(image, Object.assign(document.createElement("figcaption"), { textContent: `${sample.class} · ${sample.seed}` }));
    figure.onclick = () => {
      const link = Object.assign(document.createElement("a"), { href: image.src, download: name });
      document.body.append(link); link.click(); link.remove();
    };
    grid.append(figure);
  }
};

// ---------------------------------------------------------------- layouts
$("layout").onclick = async () => {
  const form = new FormData();
  if (document.querySelector("input[name=layout-source]:checked").value === "photo") {
    const mask = inpaint.photo ? await exportMask() : null;
    if (!mask) { showError("Open a photo and paint its hole on the Inpaint page first."); return; }
    form.append("image", inpaint.photo, `${inpaint.name}.png`);
    form.append("mask", mask, "mask.png");
  } else {
    form.append("class_name", $("layout-class").value);
    form.append("seed", $("layout-seed").value || "0");
  }
  const result = await (await api("/api/layouts", { method: "POST", body: form }, "recording layouts")).json();
  const container = $("layers");
  container.replaceChildren();
  for (const layer of result.layers) container.append(layerView(result, layer));
};

function layerView(result, layer) {
  const section = Object.assign(document.createElement("div"), { className: "layer" });
  section.append(Object.assign(document.createElement("h2"), { textContent: `AN layer ${layer.name}` }));
  const picture = Object.assign(document.createElement("div"), { className: "picture" });
  const base = Object.assign(new Image(), { src: `data:image/png;base64,${result.image}`, alt: "image" });
  const overlay = Object.assign(new Image(), { className: "overlay", src: `data:image/png;base64,${layer.blend}`, alt: "layout" });
  picture.append(base, overlay);
  const list = Object.assign(document.createElement("div"), { className: "entities" });
  const rows = new Map();
  let pinned = null;
  const show = (index) => {
    const entity = layer.entities.find((e) => e.index === index);
    overlay.src = `data:image/png;base64,${entity ? entity.heat : layer.blend}`;
    rows.forEach((row, i) => row.classList.toggle("on", i === index));
  };
  const hardRow = Object.assign(document.createElement("div"), { className: "entity", textContent: "hard layout (all entities)" });
  hardRow.onclick = () => { pinned = null; overlay.src = `data:image/png;base64,${layer.hard}`; rows.forEach((r) => r.classList.remove("on")); };
  list.append(hardRow);
  for (const entity of layer.entities) {
    const row = Object.assign(document.createElement("div"), { className: "entity" });
    const chip = Object.assign(document.createElement("span"), { className: "chip" });
    chip.style.background = `rgb(${layer.colours[entity.index].join(",")})`;
    row.append(chip, `entity ${entity.index} · ${(100 * entity.share).toFixed(1)}%`);
    row.onclick = () => { pinned = pinned === entity.index ? null : entity.index; show(pinned); };
    rows.set(entity.index, row);
    list.append(row);
  }
  picture.addEventListener("pointermove", (event) => {
    if (pinned !== null) return;
    const box = picture.getBoundingClientRect(), grid = layer.argmax;
    const row = Math.min(grid.length - 1, Math.floor((event.clientY - box.top) / box.height * grid.length));
    const column = Math.min(grid[0].length - 1, Math.floor((event.clientX - box.left) / box.width * grid[0].length));
    show(grid[Math.max(row, 0)][Math.max(column, 0)]);
  });
  picture.addEventListener("pointerleave", () => { if (pinned === null) show(null); });
  section.append(picture, list);
  return section;
}

// what the browser test reads back
window.annormPage = {
  inpaint,
  exportMask,
  async blobBase64(blob) {
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  },
};

loadModels().catch(() => {});
