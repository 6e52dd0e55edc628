// The page of `python run.py --mode serve`: open a photo, paint the hole, restore it through
// the API, keep the results. This file wires the page: buttons by their data-action, keys,
// opening photos, and the restoration in flight. Everything stays on this machine.

import * as api from "./api.js";
import * as editor from "./editor.js";
import * as history from "./history.js";

const $ = (id) => document.getElementById(id);

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
    const run = await api.runInfo();
    const score = run.test_hole_psnr == null ? "no test scores yet"
      : `test hole PSNR ${run.test_hole_psnr.toFixed(2)} dB against OpenCV Telea's ` +
        `${run.telea_hole_psnr.toFixed(2)} dB (epoch ${run.metrics_epoch})`;
    const seen = run.trained_on ? `, trained on ${run.trained_on}` : "";
    $("run").textContent = `${run.run}${seen}: checkpoint of epoch ${run.epoch} of ` +
      `${run.epochs} (step ${run.step}), ${run.img_size}x${run.img_size}; ${score}`;
    $("notice").textContent = run.notice ? `Note: ${run.notice}.` : "";
    $("notice").hidden = !run.notice;
  } catch (error) {
    $("run").textContent = `Cannot reach the server: ${error.message}`;
  }
}

// ------------------------------------------------------------------ requests in flight

// Opening a photo cancels everything about the one before; starting a restoration cancels
// the one running. A cancelled request's late answer is never shown. Every step that waits
// (a decode, a face search, a preset's fetch, a mask's decode) checks afterwards that its
// photo is still the current one: `opened` counts the photos opened.
let facesRequest = null;
let restoration = null; // {controller, timer}
let opened = 0;

function cancelRestoration() {
  if (!restoration) return;
  restoration.controller.abort();
  clearInterval(restoration.timer);
  restoration = null;
  $("cancel").hidden = true;
}

// ------------------------------------------------------------------ the photo

async function openPhoto(file) {
  if (!file) return;
  const mine = ++opened; // a photo opened after this one, even one decoded sooner, wins
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    if (mine !== opened) return;
    showError(`${file.name || "the pasted file"}: not an image the browser can open; ` +
              "choose a JPEG, PNG or WebP photo");
    return;
  }
  if (mine !== opened) return bitmap.close();
  cancelRestoration();
  facesRequest?.abort();
  showError("");
  history.forget();
  const name = (file.name || "photo").replace(/\.[^.]*$/, "");
  editor.open(file, name, bitmap);
  const { width, height } = editor.photo;
  const side = Math.min(width, height);
  // --mode inpaint's square when no face is found: the centred one, rounded down
  editor.setSquares([[Math.floor((width - side) / 2), Math.floor((height - side) / 2), side]]);
  $("restore").disabled = false;
  setStatus(`${name}: ${width}x${height}. Looking for faces…`);
  const controller = facesRequest = new AbortController();
  let found = [];
  try {
    found = await api.findFaces(file, controller.signal);
  } catch (error) {
    if (error.name === "AbortError") return; // another photo was opened meanwhile
    showError(`Finding faces failed (${error.message}); the model sees the centred square`);
  }
  if (controller !== facesRequest || mine !== opened) return;
  facesRequest = null;
  if (found.length) editor.setSquares(found);
  setStatus(`${name}: ${width}x${height}. ` +
    (found.length ? `${found.length} face${found.length > 1 ? "s" : ""} found, each framed ` +
                    "as the training faces were. Paint over what is hidden."
                  : "No face found: the model sees the centred square. Paint over what is hidden."));
}

$("photo-file").addEventListener("change", (event) => {
  openPhoto(event.target.files[0]);
  event.target.value = ""; // the same file chosen again opens again
});

document.addEventListener("dragover", (event) => {
  event.preventDefault();
  $("viewport").classList.add("dragging");
});
document.addEventListener("dragleave", () => $("viewport").classList.remove("dragging"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  $("viewport").classList.remove("dragging");
  openPhoto(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
  if (file) openPhoto(file);
});

// ------------------------------------------------------------------ the hole

const HOLE_NAMES = { center: "Centre square", facemask: "Surgical mask" };

// The training hole on every square: each face found gets it.
async function preset(kind) {
  if (!editor.hasPhoto()) return showError("Open a photo first");
  const mine = opened;
  try {
    const picture = await api.hole(kind);
    if (mine !== opened) return; // the hole was for the photo before this one
    const boxes = editor.squaresInEffect().map((s) => [s.left, s.top, s.side, s.side, s.angle]);
    await editor.addPicture(picture, boxes, HOLE_NAMES[kind]);
    showError("");
  } catch (error) {
    showError(`The ${HOLE_NAMES[kind]} hole could not be fetched (${error.message})`);
  }
}

$("mask-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  if (!editor.hasPhoto()) return showError("Open a photo first, then its mask");
  const { width, height } = editor.photo;
  const mine = opened;
  let size;
  try {
    const image = await createImageBitmap(file);
    size = [image.width, image.height];
    image.close();
  } catch {
    if (mine !== opened) return;
    return showError(`${file.name}: not an image the browser can open; give a PNG, white = hole`);
  }
  if (mine !== opened) return; // the mask was for the photo before this one
  if (size[0] !== width || size[1] !== height) {
    return showError(`${file.name}: the mask is ${size[0]}x${size[1]} but the photo is ` +
                     `${width}x${height}; a mask must have its photo's size`);
  }
  showError("");
  await editor.addPicture(file, [[0, 0, width, height]], "uploaded mask");
});

// ------------------------------------------------------------------ restoring

async function restore() {
  showError("");
  if (!editor.hasPhoto()) return showError("Open a photo first");
  cancelRestoration();
  const controller = new AbortController();
  const mine = restoration = { controller, timer: null };
  const ticket = `${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  const start = performance.now();
  const poisson = $("poisson").checked;
  const fill = document.querySelector("input[name=fill]:checked").value;
  const { file, name } = editor.photo;
  const squares = editor.squaresInEffect();
  const hole = editor.holeMadeWith();
  let ahead = null;
  const progress = () => {
    const seconds = ((performance.now() - start) / 1000).toFixed(0);
    setStatus(ahead ? `Waiting: ${ahead} restoration${ahead > 1 ? "s" : ""} ahead… ${seconds} s`
                    : `Restoring… ${seconds} s`);
  };
  mine.timer = setInterval(() => {
    progress();
    api.queuePosition(ticket, controller.signal).then((n) => { ahead = n; }, () => {});
  }, 1000);
  progress();
  $("cancel").hidden = false;
  try {
    const maskPng = await editor.maskPicture();
    if (!maskPng) throw new Error("Paint the hole first: nothing is painted");
    const answer = await api.inpaint({ photo: file, name, mask: maskPng, squares, poisson, fill,
                                       ticket }, controller.signal);
    if (mine !== restoration) return;
    const seconds = (performance.now() - start) / 1000;
    const count = answer.squares.split(";").filter(Boolean).length;
    const sides = answer.squares.split(";").filter(Boolean).map((s) => s.split(",")[2]);
    const made = fill === "telea" ? "OpenCV Telea"
      : `the model, ${poisson ? "Poisson blend" : "feathered"}`;
    const checkpoint = fill === "telea" ? ""
      : `, checkpoint of epoch ${answer.epoch}, step ${answer.step}`;
    const caption = `${made}, ${hole}, ` +
      `${count} square${count === 1 ? "" : "s"} (side ${sides.join(", ")}); ` +
      `${seconds.toFixed(2)} s${checkpoint}`;
    const number = history.count() + 1;
    const suffix = fill === "telea" ? "telea" : "restored";
    await history.add({ blob: answer.blob, before: file, caption,
                        fileName: `${name}_${suffix}${number > 1 ? `_${number}` : ""}.png` });
    setStatus((answer.note ? `${answer.note}. ` : "") +
              "Done. Paint more and restore again, continue from a result, or download.");
  } catch (error) {
    if (error.name === "AbortError" || mine !== restoration) return;
    showError(error.message);
    setStatus("");
  } finally {
    if (mine === restoration) cancelRestoration();
  }
}

// ------------------------------------------------------------------ wiring

function refreshButtons() {
  document.querySelector("[data-action=undo]").disabled = !editor.canUndo();
  document.querySelector("[data-action=redo]").disabled = !editor.canRedo();
}

editor.listen(refreshButtons);

const actions = {
  "zoom-in": () => editor.zoomBy(1.5),
  "zoom-out": () => editor.zoomBy(1 / 1.5),
  fit: () => editor.fit(),
  undo: () => editor.undo(),
  redo: () => editor.redo(),
  clear: () => editor.clear(),
  preset: (button) => preset(button.dataset.hole),
  restore,
  cancel: () => {
    cancelRestoration();
    setStatus("Cancelled.");
  },
  compare: () => history.compare(!history.comparing()),
  continue: async () => {
    const result = history.current();
    await editor.continueFrom(result.blob, editor.photo.name);
    $("viewport").scrollIntoView({ block: "nearest" }); // the results may have scrolled it away
    setStatus("Editing the result: paint the next hole and restore again (Undo goes back).");
  },
};

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-action]");
  if (button && !button.disabled && !button.hidden) actions[button.dataset.action](button);
});

// Controls keep their own keys: Space presses a focused button or ticks a focused checkbox.
const OWN_KEYS = "input[type=text], textarea";
const OWN_SPACE = "button, input, select, a[href], summary";

document.addEventListener("keydown", (event) => {
  if (event.target.closest(OWN_KEYS)) return;
  if (event.key === " " && event.target.closest(OWN_SPACE)) return;
  const key = event.key.toLowerCase(); // with Shift held, "z" arrives as "Z"
  if (event.ctrlKey || event.metaKey) {
    if (key === "z" && event.shiftKey) editor.redo();
    else if (key === "z") editor.undo();
    else if (key === "y") editor.redo();
    else return;
  } else if (event.key === "[") editor.resizeBrush(1 / 1.2);
  else if (event.key === "]") editor.resizeBrush(1.2);
  else if (event.key === "0") editor.fit();
  else if (event.key === " ") editor.holdSpace(true);
  else return;
  event.preventDefault();
});

document.addEventListener("keyup", (event) => {
  if (event.key === " ") editor.holdSpace(false);
});

// Telea fills the hole at the photo's resolution with no blend to choose
for (const choice of document.querySelectorAll("input[name=fill]")) {
  choice.addEventListener("change", () => { $("poisson").disabled = choice.value === "telea"; });
}

editor.brushChanged();
loadRun();
setInterval(loadRun, 10000);
