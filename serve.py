"""The web page over a trained run (`python run.py --mode serve`): a local FastAPI server that
restores uploaded photos the way --mode inpaint does, through the same inpaint.py code, and
serves the page in web/ that paints the hole.

It only reads the run folder: it takes no lock and writes nothing there, so it can serve a
run that is still training, and it moves to a newer checkpoint when one appears."""
import asyncio
import contextlib
import ctypes
import errno
import io
import ipaddress
import os
import socket
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import tensorflow as tf
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

import faces
import holes
import inpaint
import model
import photo_io
import run_folder

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
MAX_UPLOAD_BYTES = 50 * 2**20  # a request's body: a 24-megapixel PNG and its mask fit
MAX_PIXELS = 50_000_000  # a photo's width x height; the Poisson solve of a hole grows with it
HOLES = ("center", "facemask", "random")  # what --hole and the page's presets name
FILLS = ("model", "telea")  # the run's model, or OpenCV's Telea to compare it with
CHECK_EVERY = 2.0  # seconds between looks for a newer checkpoint
# Backpressure: restorations (and face searches) run whole, from decoding to the PNG, at most
# WORKERS at once, and at most QUEUE more wait; past that a request gets a 503 with
# RETRY_AFTER at once. Set by memory: a 50-megapixel photo's restoration peaks at 2.75 GB
# (docs/serve.md), so two and the model fit in 8 GB; a third would only share the cores.
WORKERS = 2
QUEUE = 8
RETRY_AFTER = 10  # seconds: about what the queue takes to drain for 9-megapixel photos
BODY_SECONDS = 60  # an upload must arrive within this, or the connection is closed


class RequestError(Exception):
    """Something the client sent that cannot be restored: answered with `status` and one line."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class ServeError(Exception):
    """The server cannot start; run.py prints it as one line and exits with 2."""


class Abandoned(Exception):
    """The client of a request went away (a closed tab, the page's Cancel): its work stops
    at the next stage and nothing is answered."""


def _stop_if(cancelled):
    if cancelled is not None and cancelled.is_set():
        raise Abandoned


def _release_memory():
    """Gives the freed heap back to the system: glibc keeps what a restoration's large
    arrays freed in its arenas (the server's memory stayed 1.7 GB above its start after a
    burst) unless asked. Elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _upload(data, field):
    buffer = io.BytesIO(data)
    buffer.name = field  # what inpaint.py's errors call it
    return buffer


class Model:
    """The run's averaged generator: the latest complete checkpoint when the server starts,
    and a newer one when the run being trained saves it, looked for every CHECK_EVERY
    seconds beside the requests, so that neither a request nor /api/run waits for a load."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.config = model.load_config(out_dir)
        self.generator = model.build_generator(self.config)
        self.spare = model.build_generator(self.config)  # loaded into, then copied over
        self.restore = model.contract(self.generator, self.config)
        self.lock = threading.Lock()  # one forward pass or weight copy at a time
        self.checkpoint = self.epoch = self.step = self.refused = None
        for attempt in range(3):  # a checkpoint the trainer rotates away while it is read
            try:
                self._load()
                break
            except model.Vanished:
                if attempt == 2:
                    raise
        size = self.config.img_size
        self.restore(np.zeros((1, size, size, 3), np.uint8),  # traced before the first request
                     np.full((1, size, size, 1), 255, np.uint8))
        threading.Thread(target=self._watch, daemon=True).start()

    def _load(self):
        """Loads the latest checkpoint if it is newer than the one in use and not one already
        refused. Raises LoadError."""
        latest = tf.train.latest_checkpoint(model.checkpoint_dir(self.out_dir))
        if latest in (self.checkpoint, self.refused) and latest is not None:
            return
        path, progress = model.load_generator(self.out_dir, self.spare, self.config.img_size)
        with self.lock:
            self.generator.set_weights(self.spare.get_weights())
            self.checkpoint, self.epoch = path, int(progress["epoch"])
            self.step = int(path.rsplit("-", 1)[1])  # checkpoints are numbered by global step
        print(f"restoring with {path} (epoch {self.epoch}, step {self.step})", flush=True)

    def _watch(self):
        """Looks for a newer checkpoint until the process ends. One that cannot be used is
        said once and never retried; the last good weights go on serving."""
        while True:
            time.sleep(CHECK_EVERY)
            try:
                self._load()
            except model.Vanished:
                pass  # removed by the trainer's rotation: the next look finds the newer one
            except model.LoadError as error:
                self.refused = tf.train.latest_checkpoint(model.checkpoint_dir(self.out_dir))
                print(f"warning: {error}; still restoring with {self.checkpoint}", flush=True)

    def run_info(self):
        """What the page shows of the run: the checkpoint in use and the last test scores."""
        data = self.config.data
        info = {"run": os.path.basename(os.path.abspath(self.out_dir)),
                "checkpoint": os.path.basename(self.checkpoint), "step": self.step,
                "epoch": self.epoch, "epochs": self.config.epoch,
                "img_size": self.config.img_size,
                # the folder by its name, not where it lies on this machine
                "data": data and {**data, **({"folder": os.path.basename(data["folder"])}
                                             if "folder" in data else {})},
                "trained_on": data and model.describe(data),
                "notice": model.real_faces_advice(data)}
        rows = run_folder.read_csv(os.path.join(self.out_dir, "metrics.csv"))
        last = rows[-1] if rows else {}
        info.update({"metrics_epoch": last.get("epoch"),
                     "test_hole_psnr": last.get("test_hole_psnr"),
                     "telea_hole_psnr": last.get("telea_hole_psnr"),
                     "holes": HOLES, "max_hole": inpaint.MAX_HOLE,
                     "max_upload_bytes": MAX_UPLOAD_BYTES, "max_pixels": MAX_PIXELS})
        return info

    def inpaint(self, photo, mask, hole, crop, poisson, fill="model", cancelled=None):
        """The restored photo as PNG bytes, with the checkpoint's epoch and step, the
        squares restored and a note, exactly as --mode inpaint writes it for the same photo,
        mask (or hole) and crop. Only the forward pass holds the lock. Between its stages
        (read, forward pass, each square's blend, PNG) it stops once `cancelled` is set."""
        _check_photo(photo)
        job = inpaint.Job(_upload(photo, "photo"),
                          None if mask is None else _upload(mask, "mask"), "photo")
        plan = inpaint.plan(job, self.config, crop, hole)
        if not plan.squares:
            raise RequestError("mask: it has no white pixel; paint the hole to restore")
        squares = [s.crop for s in plan.squares]
        _stop_if(cancelled)
        if fill == "telea":  # no model: it neither waits for the lock nor names a checkpoint
            return (photo_io.encode_png(inpaint.paste_telea(plan), plan.meta), None, None,
                    squares, plan.note)
        with self.lock:
            _stop_if(cancelled)
            [fills] = inpaint.fill_squares(self.restore, [plan])
            epoch, step = self.epoch, self.step
        result, blend_note = inpaint.paste(plan, fills, self.config, poisson,
                                           lambda: _stop_if(cancelled))
        _stop_if(cancelled)
        note = "; ".join(n for n in (plan.note, blend_note) if n) or None
        return photo_io.encode_png(result, plan.meta), epoch, step, squares, note

    def find_faces(self, photo, cancelled=None):
        """The faces found in the photo (upright, as the page shows it) and the square that
        frames each as the run's training faces were framed (turned when the head is)."""
        _check_photo(photo)
        image, _ = photo_io.read_photo(_upload(photo, "photo"))
        _stop_if(cancelled)
        framing = (faces.Framing(*self.config.framing) if self.config.framing
                   else faces.STANDARD)
        found = faces.find_faces(image)
        return {"width": image.width, "height": image.height,
                "faces": [{"square": faces.square_for(face, framing),
                           "box": [round(v) for v in face.box],
                           "confidence": round(face.confidence, 4),
                           "landmarks": {k: [round(v) for v in xy]
                                         for k, xy in face.landmarks.items()}}
                          for face in found]}


def _check_photo(photo):
    """Refuses a photo over MAX_PIXELS from its header, before its pixels are decoded."""
    try:
        with Image.open(_upload(photo, "photo")) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise RequestError(f"photo: not a photo Pillow can read ({type(error).__name__}); "
                           "send a JPEG, PNG or WebP") from None
    if width * height > MAX_PIXELS:
        raise RequestError(f"photo: {width}x{height} is {width * height / 1e6:.0f} "
                           f"megapixels, over this server's {MAX_PIXELS / 1e6:.0f}; "
                           "downscale it", 413)


def _error(status, message):
    return JSONResponse({"error": message}, status_code=status)


async def _until_gone(request, gone):
    """Sets `gone` once the request's client has closed its connection."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.1)
    gone.set()


class Gate:
    """The bounded stage and the queue before it (WORKERS, QUEUE). Requests wait in order of
    arrival, each named by its ticket for the page's progress line; one whose client goes
    away while it waits leaves the queue."""

    class Busy(Exception):
        pass

    def __init__(self, workers, queue):
        self.workers, self.limit = workers, workers + queue
        self.stage = asyncio.Semaphore(workers)  # first come, first served
        self.admitted = []  # tickets, in order of arrival: running, then waiting

    @contextlib.asynccontextmanager
    async def enter(self, request, ticket=None):
        """Yields a threading.Event set when the client goes: the work checks it between its
        stages. Raises Busy when the queue is full, Abandoned when the client went away
        while waiting."""
        if len(self.admitted) >= self.limit:
            raise self.Busy
        entry = ticket or object()
        self.admitted.append(entry)
        gone = threading.Event()
        watcher = asyncio.create_task(_until_gone(request, gone))
        acquire = asyncio.create_task(self.stage.acquire())
        try:
            await asyncio.wait({acquire, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not acquire.done():
                raise Abandoned  # gone while waiting: the finally gives up its place
            yield gone
        finally:
            if acquire.done() and not acquire.cancelled():
                self.stage.release()
                await asyncio.to_thread(_release_memory)
            else:  # asyncio's Semaphore hands on a wake-up a cancelled waiter cannot take
                acquire.cancel()
            watcher.cancel()
            self.admitted.remove(entry)

    def position(self, ticket):
        """How many requests must finish before `ticket`'s runs (0: running), or None when it
        is not here."""
        if ticket not in self.admitted:
            return None
        return max(0, self.admitted.index(ticket) - self.workers + 1)


class LimitBody:
    """Refuses a request body over `limit` bytes with a 413, by its Content-Length or, when
    it is sent in chunks, as soon as the bytes read pass the limit; and one that has not
    arrived within BODY_SECONDS with a 408 (a connection trickling a byte every few
    seconds would hold its slot for ever)."""

    class TooLarge(Exception):
        pass

    class TooSlow(Exception):
        pass

    def __init__(self, app, limit):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = _error(413, f"the upload is over this server's {self.limit // 2**20} MB; "
                                "send a smaller photo")
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit():
            return await _error(400, "Content-Length is not a number")(scope, receive, send)
        if int(length) > self.limit:
            return await too_large(scope, receive, send)
        seen, complete, deadline = 0, False, time.monotonic() + BODY_SECONDS

        async def counted():
            nonlocal seen, complete
            if complete:  # after the body: only the disconnect is waited for, without limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                raise self.TooSlow from None
            seen += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if seen > self.limit:
                raise self.TooLarge
            return message
        try:
            await self.app(scope, counted, send)
        except self.TooLarge:
            await too_large(scope, receive, send)
        except self.TooSlow:
            print(f"closed {scope['method']} {scope['path']}: its body did not arrive within "
                  f"{BODY_SECONDS} s", flush=True)
            await _error(408, f"the upload did not arrive within {BODY_SECONDS} s; send it "
                              "again over a faster connection")(scope, receive, send)


class ThisMachineOnly:
    """Answers only requests meant for this server by a page of its own: a Host header that
    is not an address it serves on (a DNS-rebinding page's) gets a 421, and a POST from a
    page of another site (its Origin) a 403. Scripts, which send no Origin, are served.
    `hosts`: the names it answers to (Django's ALLOWED_HOSTS)."""

    def __init__(self, app, hosts):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        try:
            name = urlsplit(f"//{host}").hostname
        except ValueError:  # "[::1" and the like: no name at all
            name = None
        if name not in self.hosts:
            return await _error(421, f"Host {host!r}: this server answers only requests for "
                                     f"{' or '.join(sorted(self.hosts))}")(scope, receive, send)
        origin = headers.get(b"origin")
        if (scope["method"] not in ("GET", "HEAD") and origin is not None
                and origin.decode("latin-1") != f"http://{host}"):
            return await _error(403, f"Origin {origin.decode('latin-1')}: only this server's "
                                     "own page may send it requests")(scope, receive, send)
        return await self.app(scope, receive, send)


def _field_text(form, name, default=None):
    value = form.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise RequestError(f"{name}: send it as a text field, not a file")
    return value.strip()


async def _file_bytes(form, name):
    value = form.get(name)
    if value is None or isinstance(value, str):
        return None
    return await value.read()


def _dropped(request, start, why):
    """One line for a request whose client went away (no traceback: nothing failed)."""
    print(f"dropped {request.method} {request.url.path} after {time.perf_counter() - start:.1f} s: "
          f"{why}", flush=True)
    return Response(status_code=400)


def _busy(gate):
    return JSONResponse(
        {"error": f"the server is busy: {len(gate.admitted)} restorations are running or "
                  f"waiting; try again in {RETRY_AFTER} s"},
        status_code=503, headers={"Retry-After": str(RETRY_AFTER)})


def create_app(model, ready, hosts):
    """The page and its API over one loaded run; `ready` is printed once uvicorn serves, when
    Ctrl-C already stops it cleanly; `hosts`: the names it answers to (ThisMachineOnly)."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        if ready:
            print(ready, flush=True)
        yield

    app = FastAPI(title="Context encoder: restore a photo", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    gate = Gate(WORKERS, QUEUE)
    app.add_middleware(LimitBody, limit=MAX_UPLOAD_BYTES)
    app.add_middleware(ThisMachineOnly, hosts=hosts)  # added last: runs first

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        if error.status_code == 400:  # Starlette's words for a torn or malformed multipart body
            return _error(400, f"the request is not a readable multipart form ({error.detail}); "
                               "send photo and mask as multipart/form-data")
        return _error(error.status_code, f"{request.method} {request.url.path}: {error.detail}")

    @app.exception_handler(Exception)
    async def server_error(request, error):  # the traceback goes to the server's console only
        return _error(500, f"the server failed on this request ({type(error).__name__}); it "
                           "is still running, and its console has the details")

    @app.get("/")
    async def page():
        return FileResponse(os.path.join(WEB_DIR, "index.html"))

    @app.get("/api/run")
    async def run_info():
        return await run_in_threadpool(model.run_info)

    @app.get("/api/hole/{kind}")
    async def hole(kind: str):
        """A training hole at the model's side, white = hole: the page's presets."""
        if kind not in HOLES:
            return _error(404, f"hole {kind!r}: choose one of {', '.join(HOLES)}")
        size = model.config.img_size
        mask = holes.make_masks(kind, 1, size, [0, 0]).numpy()[0, ..., 0]
        return Response(photo_io.encode_png(Image.fromarray(photo_io.to_uint8(mask))),
                        media_type="image/png")

    @app.post("/api/inpaint")
    async def restore(request: Request):
        start = time.perf_counter()
        try:
            form = await request.form(max_files=2, max_fields=9)
            photo = await _file_bytes(form, "photo")
            if not photo:
                raise RequestError("photo: missing; send the photo as a file field named photo")
            mask = await _file_bytes(form, "mask")
            hole = _field_text(form, "hole")
            if (mask is None) == (hole is None):
                raise RequestError("send exactly one of mask (an image of the photo's size, "
                                   f"white = hole) or hole ({', '.join(HOLES)})")
            if hole is not None and hole not in HOLES:
                raise RequestError(f"hole {hole!r}: choose one of {', '.join(HOLES)}")
            crop = inpaint.parse_crop(_field_text(form, "crop", "face"))
            poisson = _field_text(form, "poisson", "true").lower()
            if poisson not in ("true", "false"):
                raise RequestError(f"poisson {poisson!r}: send true or false")
            fill = _field_text(form, "fill", "model")
            if fill not in FILLS:
                raise RequestError(f"fill {fill!r}: choose one of {', '.join(FILLS)}")
            ticket = _field_text(form, "ticket")
            if ticket is not None and not 0 < len(ticket) <= 64:
                raise RequestError("ticket: send 1 to 64 characters, or leave it out")
            async with gate.enter(request, ticket) as gone:
                png, epoch, step, squares, note = await run_in_threadpool(
                    model.inpaint, photo, mask, hole, crop, poisson == "true", fill, gone)
        except Gate.Busy:
            return _busy(gate)
        except Abandoned:
            return _dropped(request, start, "its client went away")
        except ClientDisconnect:
            return _dropped(request, start, "its client went away during the upload")
        except RequestError as error:
            return _error(error.status, str(error))
        except photo_io.PhotoError as error:
            return _error(400, error.page)
        finally:
            await request.close()
        headers = {"X-Fill": fill, "X-Squares": ";".join(inpaint.crop_text(c) for c in squares),
                   "X-Restore-Seconds": f"{time.perf_counter() - start:.3f}"}
        if fill == "model":
            headers.update({"X-Checkpoint-Epoch": str(epoch), "X-Checkpoint-Step": str(step)})
        if note:
            headers["X-Note"] = note.encode("ascii", "replace").decode()
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/api/queue/{ticket}")
    async def queue(ticket: str):
        """Where the restoration sent with this ticket stands: the page's progress line."""
        return {"ahead": gate.position(ticket), "restorations": len(gate.admitted)}

    @app.post("/api/faces")
    async def find_faces(request: Request):
        """The faces in a photo and the square framing each, as JSON."""
        start = time.perf_counter()
        try:
            form = await request.form(max_files=1, max_fields=1)
            photo = await _file_bytes(form, "photo")
            if not photo:
                raise RequestError("photo: missing; send the photo as a file field named photo")
            async with gate.enter(request) as gone:
                return await run_in_threadpool(model.find_faces, photo, gone)
        except Gate.Busy:
            return _busy(gate)
        except Abandoned:
            return _dropped(request, start, "its client went away")
        except ClientDisconnect:
            return _dropped(request, start, "its client went away during the upload")
        except RequestError as error:
            return _error(error.status, str(error))
        except photo_io.PhotoError as error:
            return _error(400, error.page)
        finally:
            await request.close()

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _bind(host, port):
    """The listening socket, bound here so a busy port is one clear line."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name such as localhost
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ServeError(f"--port {port}: already in use on {host}; stop what uses it or "
                             "pass another --port") from None
        raise ServeError(f"--host {host} --port {port}: cannot listen there "
                         f"({error.strerror})") from None
    sock.listen(128)
    return sock


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def own_names():
    """The names and addresses this machine answers to: loopback, its host name and the
    addresses that name resolves to. A page on another site that rebinds its own name to
    this machine sends its own name as Host, which is none of these."""
    names = {"127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    try:
        names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass  # a host name that does not resolve: loopback and the names above
    return names


def serve(out_dir, host, port, allowed_hosts=()):
    """Serves the page until Ctrl-C; `allowed_hosts`: more names the page may be reached by
    (with a wildcard --host). Raises ServeError when it cannot start."""
    sock = _bind(host, port)
    try:
        if not _is_loopback(host):
            print(f"warning: --host {host}: anyone who can reach this machine on the network "
                  "can use this page and the run's model", flush=True)
        shown = f"[{host}]" if ":" in host else host
        hosts = {host, "localhost", *allowed_hosts}
        if host in ("0.0.0.0", "::"):  # every address: this machine's names and --allowed_hosts
            hosts |= own_names()
        app = create_app(Model(out_dir), f"serving {out_dir} at http://{shown}:"
                                         f"{sock.getsockname()[1]} (Ctrl-C stops it)",
                         hosts=hosts)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # before uvicorn took the signal over, or raised again by it once shut down
    finally:
        sock.close()
    print("stopped", flush=True)
