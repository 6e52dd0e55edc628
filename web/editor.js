// The photo being edited: its view (zoom and pan), the hole painted at the photo's full
// resolution, and the squares the model sees.
//
// The hole is not kept as pictures but as the list of operations that drew it (strokes, a
// training hole on the squares, an uploaded mask, "continue from a result"): undo and redo
// move a cursor in that list and draw it again, so memory does not grow with the photo's
// size times the history's length.

const $ = (id) => document.getElementById(id);
const viewport = $("viewport");
const world = $("world"); // the canvases and squares, in photo pixels, moved by a CSS transform
const photoCanvas = $("photo-canvas");
const maskCanvas = $("mask-canvas");
const mask = maskCanvas.getContext("2d", { willReadFrequently: true });
const cursor = $("brush-cursor");
const HOLE_COLOUR = "rgb(255, 40, 90)"; // shown at the canvas's opacity; any opaque pixel is hole
const MAX_ZOOM = 32; // screen pixels per photo pixel

export const photo = { file: null, name: "photo", width: 0, height: 0 };
let ops = []; // ops[0] is always the photo opened; ops.slice(0, done) are in effect
let done = 0;
let shownPhoto = null; // the photo op drawn on photoCanvas
let drawing = Promise.resolve(); // redraws in order: an uploaded mask decodes asynchronously
const view = { scale: 1, x: 0, y: 0 };
let squares = []; // {left, top, side, angle (degrees, about its centre), box} in photo pixels
let selected = 0;
let onChange = () => {};

export function listen(callback) {
  onChange = callback; // told when undo or redo become possible or not, or the view changes
}

export const hasPhoto = () => photo.file !== null;
export const canUndo = () => done > 1 && !gesture.stroke;
export const canRedo = () => done < ops.length;

// ------------------------------------------------------------------ the photo

async function decode(blob) {
  return createImageBitmap(blob, { imageOrientation: "from-image" });
}

// Shows a decoded photo with an empty hole; its first operation in a new history.
export function open(file, name, bitmap) {
  ops = [{ type: "photo", file, name }];
  done = 1;
  shownPhoto = ops[0];
  show(file, name, bitmap);
  fit();
}

function show(file, name, bitmap) {
  Object.assign(photo, { file, name, width: bitmap.width, height: bitmap.height });
  for (const canvas of [photoCanvas, maskCanvas]) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  viewport.style.setProperty("--aspect", bitmap.height / bitmap.width); // a phone's view height
  world.style.width = `${bitmap.width}px`;
  world.style.height = `${bitmap.height}px`;
  photoCanvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  mask.clearRect(0, 0, photo.width, photo.height);
  viewport.classList.remove("empty");
}

// A restored result becomes the photo being edited; undo goes back to the photo before it.
export async function continueFrom(blob, name) {
  push({ type: "photo", file: blob, name });
  await redraw();
}

// ------------------------------------------------------------------ operations, undo, redo

function push(op) {
  ops.length = done;
  ops.push(op);
  done = ops.length;
  onChange();
}

// Draws the operations in effect again: the latest photo, then the hole drawn since it.
function redraw() {
  drawing = drawing.then(async () => {
    let first = done - 1;
    while (ops[first].type !== "photo") first -= 1;
    const current = ops[first];
    if (current !== shownPhoto) {
      show(current.file, current.name, await decode(current.file));
      shownPhoto = current;
    }
    mask.clearRect(0, 0, photo.width, photo.height);
    for (const op of ops.slice(first + 1, done)) await apply(op);
  });
  onChange();
  return drawing;
}

async function apply(op) {
  if (op.type === "stroke") drawStroke(op, 0);
  else if (op.type === "clear") mask.clearRect(0, 0, photo.width, photo.height);
  else if (op.type === "picture") { // it replaces what was painted before it
    const image = await createImageBitmap(op.picture);
    mask.clearRect(0, 0, photo.width, photo.height);
    for (const box of op.boxes) drawAsHole(image, box);
    image.close();
  }
}

export function undo() {
  if (!canUndo()) return;
  done -= 1;
  redraw();
}

export function redo() {
  if (!canRedo()) return;
  done += 1;
  redraw();
}

export function clear() {
  if (!hasPhoto()) return;
  push({ type: "clear" });
  mask.clearRect(0, 0, photo.width, photo.height);
}

// A white-on-black picture drawn as hole into each box [left, top, width, height, degrees]
// of the photo (turned about its centre): a training hole on every square, turned with it,
// or an uploaded mask over the whole photo. `what` names it in a result's settings.
export function addPicture(picture, boxes, what) {
  const op = { type: "picture", picture, boxes, what };
  push(op);
  drawing = drawing.then(() => apply(op));
  return drawing;
}

function drawAsHole(image, [left, top, width, height, angle = 0]) {
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
  mask.save();
  mask.translate(left + width / 2, top + height / 2);
  mask.rotate((angle * Math.PI) / 180);
  mask.imageSmoothingEnabled = false; // the hole stays hole or not, as the server reads it
  mask.drawImage(scratch, -width / 2, -height / 2);
  mask.restore();
}

// What the hole was made with since the photo in effect: "painted", "Surgical mask"…
export function holeMadeWith() {
  let first = done - 1;
  while (ops[first].type !== "photo") first -= 1;
  const kinds = ops.slice(first + 1, done).map((op) => op.type === "stroke"
    ? (op.erase ? null : "painted") : op.what || null);
  return [...new Set(kinds.filter(Boolean))].join(" + ") || "painted";
}

// The painted hole as the server reads --mask: white where painted, black elsewhere, at the
// photo's size, as a PNG; null when nothing is painted.
export async function maskPicture() {
  await drawing;
  const pixels = mask.getImageData(0, 0, photo.width, photo.height);
  const data = pixels.data;
  let any = false;
  for (let i = 0; i < data.length; i += 4) {
    const hole = data[i + 3] > 127 ? 255 : 0;
    any ||= hole > 0;
    data[i] = data[i + 1] = data[i + 2] = hole;
    data[i + 3] = 255;
  }
  if (!any) return null;
  const canvas = document.createElement("canvas");
  canvas.width = photo.width;
  canvas.height = photo.height;
  canvas.getContext("2d").putImageData(pixels, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

// ------------------------------------------------------------------ the view

function place() {
  world.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
  world.style.setProperty("--scale", view.scale);
  $("zoom-value").textContent = `${Math.round(view.scale * 100)} %`;
  brushChanged();
  onChange();
}

function fitScale() {
  const box = viewport.getBoundingClientRect();
  return Math.min(box.width / photo.width, box.height / photo.height);
}

export function fit() {
  if (!hasPhoto()) return;
  const box = viewport.getBoundingClientRect();
  view.scale = fitScale();
  view.x = (box.width - photo.width * view.scale) / 2;
  view.y = (box.height - photo.height * view.scale) / 2;
  place();
}

// Zooms by `factor` keeping the photo point under (sx, sy), in viewport pixels, where it is.
export function zoomAt(sx, sy, factor) {
  if (!hasPhoto()) return;
  const scale = Math.min(MAX_ZOOM, Math.max(fitScale() / 4, view.scale * factor));
  view.x = sx - (sx - view.x) * scale / view.scale;
  view.y = sy - (sy - view.y) * scale / view.scale;
  view.scale = scale;
  place();
}

export function zoomBy(factor) {
  const box = viewport.getBoundingClientRect();
  zoomAt(box.width / 2, box.height / 2, factor);
}

function local(event) {
  const box = viewport.getBoundingClientRect();
  return { x: event.clientX - box.left, y: event.clientY - box.top };
}

function toPhoto({ x, y }) {
  return { x: (x - view.x) / view.scale, y: (y - view.y) / view.scale };
}

window.addEventListener("resize", fit);

viewport.addEventListener("wheel", (event) => {
  event.preventDefault(); // the page does not scroll under the photo: the wheel zooms it
  const lines = event.deltaMode === 1 ? 40 : 1;
  // a trackpad's pinch arrives as a wheel with ctrlKey and small steps
  const speed = event.ctrlKey ? 0.01 : 0.002;
  const { x, y } = local(event);
  zoomAt(x, y, Math.exp(-event.deltaY * lines * speed));
}, { passive: false });

// ------------------------------------------------------------------ the brush

const brushSize = $("brush-size");

export function brushChanged() {
  const screen = Number(brushSize.value);
  $("brush-size-value").textContent = screen;
  $("brush-photo").textContent = hasPhoto() ? `= ${(screen / view.scale).toFixed(1)} photo px` : "";
  cursor.style.width = cursor.style.height = `${screen}px`;
}

export function resizeBrush(factor) {
  brushSize.value = Math.round(Number(brushSize.value) * factor + Math.sign(factor - 1));
  brushChanged();
}

brushSize.addEventListener("input", brushChanged);

function tool() {
  return document.querySelector("input[name=tool]:checked").value;
}

function moveCursor(point) {
  const painting = hasPhoto() && tool() !== "square" && !panning();
  cursor.hidden = !painting;
  if (painting) cursor.style.transform = `translate(${point.x}px, ${point.y}px) translate(-50%, -50%)`;
}

function drawStroke(op, from) {
  mask.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
  mask.fillStyle = mask.strokeStyle = HOLE_COLOUR;
  mask.lineWidth = op.width;
  mask.lineCap = mask.lineJoin = "round";
  const points = op.points;
  if (from === 0) {
    mask.beginPath();
    mask.arc(points[0].x, points[0].y, op.width / 2, 0, 2 * Math.PI);
    mask.fill();
  }
  mask.beginPath();
  mask.moveTo(points[Math.max(0, from - 1)].x, points[Math.max(0, from - 1)].y);
  for (const point of points.slice(Math.max(1, from))) mask.lineTo(point.x, point.y);
  mask.stroke();
  mask.globalCompositeOperation = "source-over";
}

// ------------------------------------------------------------------ pointers: paint, pan, pinch

const pointers = new Map(); // pointerId: its position in viewport pixels
const gesture = { stroke: null, drag: null, pan: null, pinch: null, afterPinch: false };
let spaceHeld = false;

export function holdSpace(held) {
  spaceHeld = held;
  viewport.classList.toggle("panning", held);
}

const panning = () => spaceHeld || gesture.pan !== null;

function startPinch() {
  if (gesture.stroke) { // the first finger began painting: that was not a stroke
    ops.length = done - 1;
    done -= 1;
    gesture.stroke = null;
    redraw();
  }
  gesture.drag = null;
  const [a, b] = [...pointers.values()];
  gesture.pinch = { distance: Math.hypot(a.x - b.x, a.y - b.y) || 1,
                    middle: toPhoto({ x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 }),
                    scale: view.scale };
  gesture.afterPinch = true;
  cursor.hidden = true;
}

function pinch() {
  const [a, b] = [...pointers.values()];
  const scale = Math.min(MAX_ZOOM, Math.max(fitScale() / 4,
    gesture.pinch.scale * Math.hypot(a.x - b.x, a.y - b.y) / gesture.pinch.distance));
  // the photo point first between the fingers stays between them: zoom and pan in one
  view.x = (a.x + b.x) / 2 - gesture.pinch.middle.x * scale;
  view.y = (a.y + b.y) / 2 - gesture.pinch.middle.y * scale;
  view.scale = scale;
  place();
}

viewport.addEventListener("pointerdown", (event) => {
  if (!hasPhoto() || event.target.closest("button")) return;
  const point = local(event);
  pointers.set(event.pointerId, point);
  viewport.setPointerCapture(event.pointerId);
  if (pointers.size === 2) {
    startPinch();
    return;
  }
  if (pointers.size > 2 || gesture.afterPinch) return;
  if (event.button === 1 || (event.button === 0 && spaceHeld)) {
    event.preventDefault();
    gesture.pan = { from: point, x: view.x, y: view.y };
    return;
  }
  if (event.button !== 0) return;
  const at = toPhoto(point);
  if (tool() === "square") {
    // the last square under the pointer (drawn on top), else the selected one
    const under = squares.findLastIndex((s) => at.x >= s.left && at.x < s.left + s.side &&
                                                at.y >= s.top && at.y < s.top + s.side);
    if (under >= 0) select(under);
    const { left, top, side, angle } = squares[selected];
    gesture.drag = { from: at, square: { left, top, side, angle } };
    return;
  }
  gesture.stroke = { type: "stroke", erase: tool() === "eraser",
                     width: Number(brushSize.value) / view.scale, points: [at] };
  push(gesture.stroke);
  drawStroke(gesture.stroke, 0);
});

viewport.addEventListener("pointermove", (event) => {
  const point = local(event);
  if (!pointers.has(event.pointerId)) {
    if (event.pointerType === "mouse") moveCursor(point);
    return;
  }
  pointers.set(event.pointerId, point);
  if (gesture.pinch && pointers.size === 2) {
    pinch();
  } else if (gesture.pan) {
    view.x = gesture.pan.x + point.x - gesture.pan.from.x;
    view.y = gesture.pan.y + point.y - gesture.pan.from.y;
    place();
  } else if (gesture.drag) {
    const at = toPhoto(point);
    const { left, top, side, angle } = gesture.drag.square;
    setSquare(selected, { left: left + at.x - gesture.drag.from.x,
                          top: top + at.y - gesture.drag.from.y, side, angle });
  } else if (gesture.stroke) {
    gesture.stroke.points.push(toPhoto(point));
    drawStroke(gesture.stroke, gesture.stroke.points.length - 1);
  }
  if (event.pointerType === "mouse") moveCursor(point);
});

for (const end of ["pointerup", "pointercancel"]) {
  viewport.addEventListener(end, (event) => {
    pointers.delete(event.pointerId);
    if (pointers.size < 2) gesture.pinch = null;
    if (pointers.size === 0) {
      Object.assign(gesture, { stroke: null, drag: null, pan: null, afterPinch: false });
      onChange();
    }
  });
}

viewport.addEventListener("pointerleave", (event) => {
  if (event.pointerType === "mouse") cursor.hidden = true;
});

// ------------------------------------------------------------------ the squares the model sees

export function squaresInEffect() {
  return squares.map(({ left, top, side, angle }) => ({ left, top, side, angle }));
}

export function setSquares(crops) {
  world.querySelectorAll(".square").forEach((box) => box.remove());
  squares = crops.map(([left, top, side, angle = 0]) => {
    const box = document.createElement("div");
    box.className = "square";
    world.append(box);
    return { left, top, side, angle, box };
  });
  const slider = $("square-side");
  const shortest = Math.min(photo.width, photo.height);
  slider.min = Math.min(shortest, 32);
  slider.max = Math.max(shortest, ...squares.map((s) => s.side)); // a face larger than the photo
  select(squares.length - 1);
  squares.forEach((square, index) => setSquare(index, square));
}

function select(index) {
  selected = index;
  squares.forEach((square, i) => square.box.classList.toggle("selected", i === index));
  $("square-side").value = squares[index].side;
  $("square-side-value").textContent = squares[index].side;
  $("square-count").textContent = squares.length > 1
    ? `(square ${index + 1} of ${squares.length})` : "";
}

// A square may reach beyond the photo (the server pads the photo there, so a face at the
// edge keeps its framing) as long as its centre stays on the photo.
function setSquare(index, { left, top, side, angle = 0 }) {
  side = Math.round(side);
  left = Math.max(-Math.floor(side / 2), Math.min(Math.round(left), photo.width - Math.ceil(side / 2)));
  top = Math.max(-Math.floor(side / 2), Math.min(Math.round(top), photo.height - Math.ceil(side / 2)));
  const square = squares[index];
  Object.assign(square, { left, top, side, angle });
  Object.assign(square.box.style, { left: `${left}px`, top: `${top}px`, width: `${side}px`,
                                    height: `${side}px`, transform: `rotate(${angle}deg)` });
  if (index === selected) $("square-side-value").textContent = side;
}

$("square-side").addEventListener("input", (event) => {
  if (!squares.length) return;
  const { left, top, side, angle } = squares[selected];
  const next = Number(event.target.value);
  setSquare(selected, { left: left + (side - next) / 2, top: top + (side - next) / 2, side: next,
                        angle });
});

document.querySelectorAll("input[name=tool]").forEach((input) => input.addEventListener("change",
  () => viewport.classList.toggle("square-tool", tool() === "square")));
