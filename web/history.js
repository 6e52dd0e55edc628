// The results of this tab: each restoration as a thumbnail with its settings, shown large,
// compared with the photo it was restored from, downloaded, or continued from. They live in
// the tab alone; the server keeps nothing.

const $ = (id) => document.getElementById(id);
const THUMB_HEIGHT = 72;
// Results kept: each holds its full-size PNG and the photo it came from; older ones leave
// the strip (download what you want to keep).
export const MAX_RESULTS = 12;
const results = []; // {blob, url, before (blob), beforeUrl, caption, file name, number, item}
let shown = -1;
let made = 0; // results made since the photo was opened, numbering them
let generation = 0; // photos opened: a thumbnail made for an earlier one is dropped

async function thumbnail(blob) {
  // a small bitmap, not the full picture scaled by CSS: a 12-megapixel thumbnail would keep
  // its 48 MB decoded in the strip
  const bitmap = await createImageBitmap(blob, { resizeHeight: THUMB_HEIGHT, resizeQuality: "medium" });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  return canvas;
}

// Keeps a result and shows it. `before` is the photo it was restored from.
export async function add({ blob, before, caption, fileName }) {
  const mine = generation;
  const picture = await thumbnail(blob);
  if (mine !== generation) return; // a new photo was opened while it was made
  const result = { blob, before, caption, fileName, number: ++made, url: URL.createObjectURL(blob),
                   beforeUrl: URL.createObjectURL(before), item: document.createElement("li") };
  const button = document.createElement("button");
  button.type = "button";
  button.title = `${result.number}: ${caption}`;
  button.append(picture);
  button.addEventListener("click", () => show(results.indexOf(result)));
  result.item.append(button);
  $("history").append(result.item);
  results.push(result);
  if (results.length > MAX_RESULTS) drop(results.shift());
  show(results.length - 1);
}

function drop(result) {
  URL.revokeObjectURL(result.url);
  URL.revokeObjectURL(result.beforeUrl);
  result.item.remove();
}

export const count = () => made;

export function show(index) {
  shown = index;
  const result = results[index];
  $("result-image").src = result.url;
  $("result-caption").textContent = `${result.number} of ${made}: ${result.caption}`;
  $("download").href = result.url;
  $("download").download = result.fileName;
  compare(false);
  results.forEach((r, i) => r.item.classList.toggle("selected", i === index));
  $("result").hidden = false;
}

export const current = () => results[shown];

// Shows the photo the result was restored from (true) or the result (false).
export function compare(before) {
  const result = results[shown];
  if (!result) return;
  $("result-image").src = before ? result.beforeUrl : result.url;
  $("result-which").textContent = before ? "before (the photo it was restored from)"
                                         : "restored (hold the picture to see it before)";
  document.querySelector("[data-action=compare]").setAttribute("aria-pressed", String(before));
  document.querySelector("[data-action=compare]").textContent = before ? "Show after" : "Show before";
}

export const comparing = () =>
  document.querySelector("[data-action=compare]").getAttribute("aria-pressed") === "true";

// A new photo starts a new history.
export function forget() {
  results.forEach(drop);
  results.length = 0;
  shown = -1;
  made = 0;
  generation += 1;
  $("history").replaceChildren();
  $("result").hidden = true;
}

const image = $("result-image");
image.addEventListener("pointerdown", (event) => {
  image.setPointerCapture(event.pointerId);
  compare(true);
});
for (const end of ["pointerup", "pointercancel"]) image.addEventListener(end, () => compare(false));
