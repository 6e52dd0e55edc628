// The results of this tab: each restoration as a thumbnail with its settings, shown large,
// compared with the photo it was restored from, downloaded, or continued from. They live in
// the tab alone; the server keeps nothing.

const $ = (id) => document.getElementById(id);
const THUMB_HEIGHT = 72;
const results = []; // {blob, url, before (blob), beforeUrl, caption, file name}
let shown = -1;

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
  const result = { blob, before, caption, fileName, url: URL.createObjectURL(blob),
                   beforeUrl: URL.createObjectURL(before) };
  results.push(result);
  const index = results.length - 1;
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.title = `${index + 1}: ${caption}`;
  button.append(await thumbnail(blob));
  button.addEventListener("click", () => show(index));
  item.append(button);
  $("history").append(item);
  show(index);
}

export function show(index) {
  shown = index;
  const result = results[index];
  $("result-image").src = result.url;
  $("result-caption").textContent = `${index + 1} of ${results.length}: ${result.caption}`;
  $("download").href = result.url;
  $("download").download = result.fileName;
  compare(false);
  [...$("history").children].forEach((item, i) => item.classList.toggle("selected", i === index));
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
  for (const result of results) {
    URL.revokeObjectURL(result.url);
    URL.revokeObjectURL(result.beforeUrl);
  }
  results.length = 0;
  shown = -1;
  $("history").replaceChildren();
  $("result").hidden = true;
}

const image = $("result-image");
image.addEventListener("pointerdown", (event) => {
  image.setPointerCapture(event.pointerId);
  compare(true);
});
for (const end of ["pointerup", "pointercancel"]) image.addEventListener(end, () => compare(false));
