// The page of `python run.py --mode serve`: paint the hole on a photo, send photo and mask to
// POST /api/inpaint, show and download what comes back. Everything stays on this machine.
"use strict";

const $ = (id) => document.getElementById(id);
const photoCanvas = $("photo-canvas");
const maskCanvas = $("mask-canvas");
const mask = maskCanvas.getContext("2d", { willReadFrequently: true });
const stage = $("stage");
const HOLE_COLOUR = "rgb(255, 40, 90)"; // shown at the canvas's opacity; any opaque pixel is hole
const UNDO_DEPTH = 30;

const state = {
  file: null, // the photo as opened: sent as it is, so the server reads the same bytes as --input
  name: "photo",
  width: 0,
  height: 0,
  squares: [], // the squares the model sees: {left, top, side, box} in photo pixels
  selected: 0, // the square the side slider and "Move square" act on
  opened: 0, // counts photos opened, so a late answer about an earlier one is dropped
  undo: [],
  redo: [],
  urls: [],
};

// ------------------------------------------------------------------ messages

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

// ------------------------------------------------------------------ the run

async function loadRun() {
  try {
    const response = await fetch("/api/run");
    const run = await response.json();
    if (!response.ok) throw new Error(run.error);
    const score = run.test_hole_psnr == null ? "no test scores yet"
      : `test hole PSNR ${run.test_hole_psnr.toFixed(2)} dB against OpenCV Telea's ` +
        `${run.telea_hole_psnr.toFixed(2)} dB (epoch ${run.metrics_epoch})`;
    $("run").textContent = `${run.run}: checkpoint of epoch ${run.epoch} of ${run.epochs} ` +
      `(step ${run.step}), ${run.img_size}x${run.img_size}; ${score}`;
  } catch (error) {
    $("run").textContent = `Cannot reach the server: ${error.message}`;
  }
}

// ------------------------------------------------------------------ the photo

async function openPhoto(file) {
  if (!file) return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    showError(`${file.name || "the pasted file"}: not an image the browser can open; ` +
              "choose a JPEG, PNG or WebP photo");
    return;
  }
  showError("");
  Object.assign(state, { file, name: (file.name || "photo").replace(/\.[^.]*$/, ""),
                         width: bitmap.width, height: bitmap.height, undo: [], redo: [] });
  for (const canvas of [photoCanvas, maskCanvas]) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  photoCanvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  mask.clearRect(0, 0, state.width, state.height);
  const side = Math.min(state.width, state.height);
  const slider = $("square-side");
  slider.min = Math.min(side, 32);
  slider.max = side;
  $("brush-size").max = Math.max(2, Math.round(side / 3));
  stage.classList.remove("empty");
  $("restore").disabled = false;
  $("result").hidden = true;
  // --mode inpaint's square when no face is found: the centred one, rounded down
  setSquares([[Math.floor((state.width - side) / 2), Math.floor((state.height - side) / 2), side]]);
  setStatus(`${state.name}: ${state.width}x${state.height}. Looking for faces…`);
  const opened = ++state.opened;
  const found = await findFaces(file);
  if (opened !== state.opened) return; // another photo was opened meanwhile
  if (found.length) setSquares(found);
  setStatus(`${state.name}: ${state.width}x${state.height}. ` +
    (found.length ? `${found.length} face${found.length > 1 ? "s" : ""} found, each framed ` +
                    "as the training faces were. Paint over what is hidden."
                  : "No face found: the model sees the centred square. Paint over what is hidden."));
}

// The square framing each face the server finds, as the model saw its training faces.
async function findFaces(file) {
  const form = new FormData();
  form.append("photo", file, file.name || "photo");
  try {
    const response = await fetch("/api/faces", { method: "POST", body: form });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error);
    return answer.faces.map((face) => face.square);
  } catch (error) {
    showError(`Finding faces failed (${error.message}); the model sees the centred square`);
    return [];
  }
}

$("photo-file").addEventListener("change", (event) => openPhoto(event.target.files[0]));

document.addEventListener("dragover", (event) => {
  event.preventDefault();
  stage.classList.add("dragging");
});
document.addEventListener("dragleave", () => stage.classList.remove("dragging"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  stage.classList.remove("dragging");
  openPhoto(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (file) openPhoto(file);
});

// ------------------------------------------------------------------ the square the model sees

function setSquares(crops) {
  stage.querySelectorAll(".square").forEach((box) => box.remove());
  state.squares = crops.map(([left, top, side]) => {
    const box = document.createElement("div");
    box.className = "square";
    stage.append(box);
    return { left, top, side, box };
  });
  select(state.squares.length - 1);
  state.squares.forEach((_, index) => setSquare(index, state.squares[index]));
}

function select(index) {
  state.selected = index;
  state.squares.forEach((square, i) => square.box.classList.toggle("selected", i === index));
  const square = state.squares[index];
  $("square-side").value = square.side;
  $("square-side-value").textContent = square.side;
  $("square-count").textContent = state.squares.length > 1
    ? `(square ${index + 1} of ${state.squares.length})` : "";
}

function setSquare(index, { left, top, side }) {
  side = Math.min(side, state.width, state.height);
  left = Math.max(0, Math.min(Math.round(left), state.width - side));
  top = Math.max(0, Math.min(Math.round(top), state.height - side));
  const square = state.squares[index];
  Object.assign(square, { left, top, side });
  const scale = 100 / state.width;
  const vScale = 100 / state.height;
  Object.assign(square.box.style, { left: `${left * scale}%`, top: `${top * vScale}%`,
                                    width: `${side * scale}%`, height: `${side * vScale}%` });
  if (index === state.selected) $("square-side-value").textContent = side;
}

$("square-side").addEventListener("input", (event) => {
  const { left, top, side } = state.squares[state.selected];
  const next = Number(event.target.value);
  setSquare(state.selected, { left: left + (side - next) / 2, top: top + (side - next) / 2,
                              side: next });
});

// ------------------------------------------------------------------ painting

function tool() {
  return document.querySelector("input[name=tool]:checked").value;
}

document.querySelectorAll("input[name=tool]").forEach((input) =>
  input.addEventListener("change", () => stage.classList.toggle("square-tool", tool() === "square")));

$("brush-size").addEventListener("input", (event) => {
  $("brush-size-value").textContent = event.target.value;
});

function photoPoint(event) {
  const box = maskCanvas.getBoundingClientRect();
  return { x: (event.clientX - box.left) * state.width / box.width,
           y: (event.clientY - box.top) * state.height / box.height };
}

function remember() {
  state.undo.push(mask.getImageData(0, 0, state.width, state.height));
  if (state.undo.length > UNDO_DEPTH) state.undo.shift();
  state.redo = [];
}

function swap(from, to) {
  if (!from.length) return;
  to.push(mask.getImageData(0, 0, state.width, state.height));
  mask.putImageData(from.pop(), 0, 0);
}

let stroke = null;

maskCanvas.addEventListener("pointerdown", (event) => {
  if (!state.file || event.button !== 0) return;
  maskCanvas.setPointerCapture(event.pointerId);
  const point = photoPoint(event);
  if (tool() === "square") {
    // the last square under the pointer (drawn on top), else the selected one
    const under = state.squares.findLastIndex((s) => point.x >= s.left && point.x < s.left + s.side &&
                                                      point.y >= s.top && point.y < s.top + s.side);
    if (under >= 0) select(under);
    const { left, top, side } = state.squares[state.selected];
    stroke = { drag: true, from: point, square: { left, top, side } };
    return;
  }
  remember();
  stroke = { drag: false, last: point };
  mask.globalCompositeOperation = tool() === "eraser" ? "destination-out" : "source-over";
  mask.fillStyle = mask.strokeStyle = HOLE_COLOUR;
  mask.lineWidth = Number($("brush-size").value);
  mask.lineCap = mask.lineJoin = "round";
  mask.beginPath();
  mask.arc(point.x, point.y, mask.lineWidth / 2, 0, 2 * Math.PI);
  mask.fill();
});

maskCanvas.addEventListener("pointermove", (event) => {
  if (!stroke) return;
  const point = photoPoint(event);
  if (stroke.drag) {
    const { left, top, side } = stroke.square;
    setSquare(state.selected, { left: left + point.x - stroke.from.x,
                                top: top + point.y - stroke.from.y, side });
    return;
  }
  mask.beginPath();
  mask.moveTo(stroke.last.x, stroke.last.y);
  mask.lineTo(point.x, point.y);
  mask.stroke();
  stroke.last = point;
});

for (const end of ["pointerup", "pointercancel"]) {
  maskCanvas.addEventListener(end, () => {
    stroke = null;
    mask.globalCompositeOperation = "source-over";
  });
}

$("undo").addEventListener("click", () => swap(state.undo, state.redo));
$("redo").addEventListener("click", () => swap(state.redo, state.undo));
$("clear").addEventListener("click", () => {
  remember();
  mask.clearRect(0, 0, state.width, state.height);
});
document.addEventListener("keydown", (event) => {
  if (!(event.ctrlKey || event.metaKey)) return;
  if (event.key === "z") swap(state.undo, state.redo);
  else if (event.key === "y") swap(state.redo, state.undo);
  else return;
  event.preventDefault();
});

// A white-on-black picture as hole-coloured pixels on the mask, drawn into a box of the photo.
function drawAsHole(image, left, top, width, height) {
  const scratch = document.createElement("canvas");
  scratch.width = width;
  scratch.height = height;
  const context = scratch.getContext("2d");
  context.imageSmoothingEnabled = false; // the server resizes training holes with nearest
  context.drawImage(image, 0, 0, width, height);
  const pixels = context.getImageData(0, 0, width, height);
  const data = pixels.data;
  for (let i = 0; i < data.length; i += 4) {
    // as the server reads a mask: luminance over 127 where the pixel is not transparent
    const white = data[i + 3] > 127 &&
      0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2] > 127;
    data.set(white ? [255, 40, 90, 255] : [0, 0, 0, 0], i);
  }
  context.putImageData(pixels, 0, 0);
  mask.drawImage(scratch, left, top);
}

// The training hole on every square: each face found gets it.
async function preset(kind) {
  if (!state.file) return;
  let image;
  try {
    const response = await fetch(`/api/hole/${kind}`);
    if (!response.ok) throw new Error((await response.json()).error);
    image = await createImageBitmap(await response.blob());
  } catch (error) {
    showError(`The ${kind} hole could not be fetched (${error.message})`);
    return;
  }
  remember();
  mask.clearRect(0, 0, state.width, state.height);
  for (const { left, top, side } of state.squares) drawAsHole(image, left, top, side, side);
}

$("preset-center").addEventListener("click", () => preset("center"));
$("preset-facemask").addEventListener("click", () => preset("facemask"));

$("mask-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file || !state.file) return;
  let image;
  try {
    image = await createImageBitmap(file);
  } catch {
    showError(`${file.name}: not an image the browser can open; give a PNG, white = hole`);
    return;
  }
  if (image.width !== state.width || image.height !== state.height) {
    showError(`${file.name}: the mask is ${image.width}x${image.height} but the photo is ` +
              `${state.width}x${state.height}; a mask must have its photo's size`);
    return;
  }
  showError("");
  remember();
  mask.clearRect(0, 0, state.width, state.height);
  drawAsHole(image, 0, 0, state.width, state.height);
});

// ------------------------------------------------------------------ restoring

// The painted hole as the server reads --mask: white where painted, black elsewhere, at the
// photo's size. Also returns whether any pixel is hole.
function maskPicture() {
  const pixels = mask.getImageData(0, 0, state.width, state.height);
  const data = pixels.data;
  let any = false;
  for (let i = 0; i < data.length; i += 4) {
    const hole = data[i + 3] > 127 ? 255 : 0;
    any ||= hole > 0;
    data[i] = data[i + 1] = data[i + 2] = hole;
    data[i + 3] = 255;
  }
  const canvas = document.createElement("canvas");
  canvas.width = state.width;
  canvas.height = state.height;
  canvas.getContext("2d").putImageData(pixels, 0, 0);
  return { canvas, any };
}

// The photo with its hole blacked out, as the model is given it.
function maskedPreview(holes) {
  const canvas = document.createElement("canvas");
  canvas.width = state.width;
  canvas.height = state.height;
  const context = canvas.getContext("2d");
  const hole = holes.getContext("2d").getImageData(0, 0, state.width, state.height).data;
  const out = photoCanvas.getContext("2d").getImageData(0, 0, state.width, state.height);
  for (let i = 0; i < out.data.length; i += 4) {
    if (hole[i]) out.data.fill(0, i, i + 3);
  }
  context.putImageData(out, 0, 0);
  return canvas;
}

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

async function restore() {
  showError("");
  const { canvas, any } = maskPicture();
  if (!any) {
    showError("Paint the hole first: nothing is painted");
    return;
  }
  const button = $("restore");
  button.disabled = true;
  setStatus("Restoring…");
  const form = new FormData();
  form.append("photo", state.file, state.file.name || "photo");
  form.append("mask", await new Promise((done) => canvas.toBlob(done, "image/png")), "mask.png");
  form.append("crop", state.squares.map((s) => `${s.left},${s.top},${s.side}`).join(";"));
  form.append("poisson", $("poisson").checked ? "true" : "false");
  const start = performance.now();
  try {
    const response = await fetch("/api/inpaint", { method: "POST", body: form });
    if (!response.ok) {
      let message = `the server answered ${response.status}`;
      try { message = (await response.json()).error; } catch { /* not JSON */ }
      showError(message);
      setStatus("");
      return;
    }
    const restored = await response.blob();
    const seconds = (performance.now() - start) / 1000;
    state.urls.forEach((url) => URL.revokeObjectURL(url));
    state.urls = [];
    const original = objectUrl(state.file);
    const restoredUrl = objectUrl(restored);
    $("result-original").src = original;
    $("result-masked").src = maskedPreview(canvas).toDataURL("image/png");
    $("result-restored").src = restoredUrl;
    $("result-restored").dataset.after = restoredUrl;
    $("result-restored").dataset.before = original;
    $("before-after").setAttribute("aria-pressed", "false");
    $("before-after").textContent = "Show before";
    $("restored-caption").textContent = "restored";
    $("download").href = restoredUrl;
    $("download").download = `${state.name}_restored.png`;
    const epoch = response.headers.get("X-Checkpoint-Epoch");
    const step = response.headers.get("X-Checkpoint-Step");
    $("result-time").textContent = `Restored in ${seconds.toFixed(2)} s ` +
      `(${$("poisson").checked ? "Poisson blend" : "feathered"}; checkpoint of epoch ${epoch}, ` +
      `step ${step}), ${state.width}x${state.height} PNG`;
    $("result").hidden = false;
    setStatus("Done. Paint more and restore again, or download.");
  } catch (error) {
    showError(`Cannot reach the server (${error.message}); is python run.py --mode serve running?`);
    setStatus("");
  } finally {
    button.disabled = false;
  }
}

$("restore").addEventListener("click", restore);

$("before-after").addEventListener("click", (event) => {
  const image = $("result-restored");
  const before = event.target.getAttribute("aria-pressed") !== "true";
  event.target.setAttribute("aria-pressed", String(before));
  event.target.textContent = before ? "Show after" : "Show before";
  image.src = before ? image.dataset.before : image.dataset.after;
  $("restored-caption").textContent = before ? "before (original)" : "restored";
});

loadRun();
setInterval(loadRun, 10000);
