// The server's API as the page uses it. Every call checks the answer's status and throws an
// Error carrying the server's one-line message; a call given an AbortSignal throws an
// AbortError once it is cancelled.

async function checked(response) {
  if (response.ok) return response;
  let message = `the server answered ${response.status}`;
  try {
    message = (await response.json()).error || message;
  } catch { /* not JSON: keep the status */ }
  throw new Error(message);
}

async function call(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error("cannot reach the server; is python run.py --mode serve running?");
  }
  return checked(response);
}

export async function runInfo() {
  return (await call("/api/run")).json();
}

// The square framing each face in the photo, [left, top, side, degrees] in photo pixels: it
// may reach beyond the photo, and turns with a tilted head.
export async function findFaces(file, signal) {
  const form = new FormData();
  form.append("photo", file, file.name || "photo");
  const answer = await (await call("/api/faces", { method: "POST", body: form, signal })).json();
  return answer.faces.map((face) => face.square);
}

// A training hole at the model's side, white = hole.
export async function hole(kind, signal) {
  return (await call(`/api/hole/${kind}`, { signal })).blob();
}

// The restored photo (PNG) and what the server says of it.
export async function inpaint({ photo, name, mask, squares, poisson, fill, ticket }, signal) {
  const form = new FormData();
  form.append("photo", photo, name);
  form.append("mask", mask, "mask.png");
  form.append("crop", squares.map((s) => [s.left, s.top, s.side, ...(s.angle ? [s.angle] : [])]
    .join(",")).join(";"));
  form.append("poisson", String(poisson));
  form.append("fill", fill);
  form.append("ticket", ticket);
  const response = await call("/api/inpaint", { method: "POST", body: form, signal });
  const header = (name) => response.headers.get(name);
  return { blob: await response.blob(), epoch: header("X-Checkpoint-Epoch"),
           step: header("X-Checkpoint-Step"), squares: header("X-Squares") || "",
           note: header("X-Note") };
}

// How many restorations are ahead of the one sent with `ticket` (null: not queued).
export async function queuePosition(ticket, signal) {
  return (await (await call(`/api/queue/${ticket}`, { signal })).json()).ahead;
}
