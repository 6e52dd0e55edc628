"""The web page over a trained run (`python run.py --mode serve`): a local FastAPI server that
restores uploaded photos the way --mode inpaint does, through the same inpaint.py code, and
serves the page in web/ that paints the hole.

It only reads the run folder: it takes no lock and writes nothing there, so it can serve a
run that is still training, and it moves to a newer checkpoint when one appears."""
import contextlib
import errno
import io
import ipaddress
import os
import socket
import threading
import time

import numpy as np
import tensorflow as tf
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

import datamanager
import inpaint
import outputs
import tf_process

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
MAX_UPLOAD_BYTES = 50 * 2**20  # a request's body: a 24-megapixel PNG and its mask fit
MAX_PIXELS = 50_000_000  # a photo's width x height; the Poisson solve of a hole grows with it
HOLES = ("center", "facemask", "random")  # what --hole and the page's presets name
CHECK_EVERY = 2.0  # seconds between looks for a newer checkpoint


class RequestError(Exception):
    """Something the client sent that cannot be restored: answered with `status` and one line."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class ServeError(Exception):
    """The server cannot start; run.py prints it as one line and exits with 2."""


def _upload(data, field):
    buffer = io.BytesIO(data)
    buffer.name = field  # what inpaint.py's errors call it
    return buffer


class Model:
    """The run's averaged generator, loaded once per checkpoint: the latest complete one when
    the server starts, and a newer one when the run being trained saves it."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.config = tf_process.load_config(out_dir)
        self.generator = tf_process.build_generator(self.config)
        self.restore = tf_process.make_restore(self.generator, self.config)
        self.lock = threading.Lock()  # one restoration or load at a time; the rest queue
        self.checkpoint, self.epoch, self.step, self.checked = None, None, None, 0.0
        with self.lock:
            self._refresh()
        size = self.config.img_size
        self.restore(np.zeros((1, size, size, 3), np.uint8),  # traced before the first request
                     np.ones((1, size, size, 1), np.float32))

    def _refresh(self):
        """Loads the latest checkpoint if it is newer than the one in use; holding the lock."""
        now = time.monotonic()
        if self.checkpoint and now - self.checked < CHECK_EVERY:
            return
        self.checked = now
        latest = tf.train.latest_checkpoint(os.path.join(self.out_dir, "checkpoints"))
        if latest is None or latest == self.checkpoint:
            return
        try:
            path, progress = tf_process.load_trained_generator(self.out_dir, self.generator,
                                                               self.config.img_size)
        except tf_process.TrainingStopped:
            if self.checkpoint is None:
                raise
            return  # removed by the trainer's rotation while being read: the next look retries
        self.checkpoint, self.epoch = path, int(progress["epoch"])
        self.step = int(path.rsplit("-", 1)[1])  # checkpoints are numbered by global step
        print(f"restoring with {path} (epoch {self.epoch}, step {self.step})", flush=True)

    def run_info(self):
        """What the page shows of the run: the checkpoint in use and the last test scores."""
        with self.lock:
            self._refresh()
            info = {"out_dir": os.path.abspath(self.out_dir),
                    "checkpoint": os.path.basename(self.checkpoint), "step": self.step,
                    "epoch": self.epoch, "epochs": self.config.epoch,
                    "img_size": self.config.img_size}
        rows = outputs.read_csv(os.path.join(self.out_dir, "metrics.csv"))
        last = rows[-1] if rows else {}
        info.update({"metrics_epoch": last.get("epoch"),
                     "test_hole_psnr": last.get("test_hole_psnr"),
                     "telea_hole_psnr": last.get("telea_hole_psnr"),
                     "holes": HOLES, "max_hole": inpaint.MAX_HOLE,
                     "max_upload_bytes": MAX_UPLOAD_BYTES, "max_pixels": MAX_PIXELS})
        return info

    def inpaint(self, photo, mask, hole, crop, poisson):
        """The restored photo as PNG bytes, with the checkpoint's epoch and step, exactly as
        --mode inpaint writes it for the same photo, mask (or hole) and crop."""
        try:
            with Image.open(_upload(photo, "photo")) as image:
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise RequestError(f"photo: not a photo Pillow can read ({type(error).__name__}); "
                               "send a JPEG, PNG or WebP") from None
        if width * height > MAX_PIXELS:
            raise RequestError(f"photo: {width}x{height} is {width * height / 1e6:.0f} "
                               f"megapixels, over this server's {MAX_PIXELS / 1e6:.0f}; "
                               "downscale it", 413)
        job = inpaint.Job(_upload(photo, "photo"),
                          None if mask is None else _upload(mask, "mask"), "photo")
        plan = inpaint.plan(job, self.config, crop, hole)
        if plan.model_input is None:
            raise RequestError("mask: it has no white pixel; paint the hole to restore")
        with self.lock:
            self._refresh()
            [result] = inpaint.restore_plans(self.restore, self.config, [plan], poisson)
            epoch, step = self.epoch, self.step
        return outputs.encode_png(result), epoch, step


def _error(status, message):
    return JSONResponse({"error": message}, status_code=status)


class LimitBody:
    """Refuses a request body over `limit` bytes with a 413, by its Content-Length or, when
    it is sent in chunks, as soon as the bytes read pass the limit."""

    class TooLarge(Exception):
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
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self.TooLarge
            return message
        try:
            await self.app(scope, counted, send)
        except self.TooLarge:
            await too_large(scope, receive, send)


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


def create_app(model, ready=""):
    """The page and its API over one loaded run; `ready` is printed once uvicorn serves, when
    Ctrl-C already stops it cleanly."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        if ready:
            print(ready, flush=True)
        yield

    app = FastAPI(title="Context encoder: restore a photo", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.add_middleware(LimitBody, limit=MAX_UPLOAD_BYTES)

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
        mask = datamanager.make_masks(kind, 1, size, [0, 0]).numpy()[0, ..., 0]
        return Response(outputs.encode_png(Image.fromarray(outputs.to_uint8(mask))),
                        media_type="image/png")

    @app.post("/api/inpaint")
    async def restore(request: Request):
        start = time.perf_counter()
        try:
            form = await request.form(max_files=2, max_fields=8)
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
            crop = _field_text(form, "crop")
            crop = inpaint.parse_crop(crop) if crop else None
            poisson = _field_text(form, "poisson", "true").lower()
            if poisson not in ("true", "false"):
                raise RequestError(f"poisson {poisson!r}: send true or false")
            png, epoch, step = await run_in_threadpool(model.inpaint, photo, mask, hole, crop,
                                                       poisson == "true")
        except RequestError as error:
            return _error(error.status, str(error))
        except inpaint.InpaintError as error:
            return _error(400, str(error).replace("--crop", "crop"))
        finally:
            await request.close()
        return Response(png, media_type="image/png", headers={
            "X-Checkpoint-Epoch": str(epoch), "X-Checkpoint-Step": str(step),
            "X-Restore-Seconds": f"{time.perf_counter() - start:.3f}"})

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


def serve(out_dir, host, port):
    """Serves the page until Ctrl-C. Raises ServeError when it cannot start."""
    sock = _bind(host, port)
    try:
        if not _is_loopback(host):
            print(f"warning: --host {host}: anyone who can reach this machine on the network "
                  "can use this page and the run's model", flush=True)
        shown = f"[{host}]" if ":" in host else host
        app = create_app(Model(out_dir), f"serving {out_dir} at http://{shown}:"
                                         f"{sock.getsockname()[1]} (Ctrl-C stops it)")
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # before uvicorn took the signal over, or raised again by it once shut down
    finally:
        sock.close()
    print("stopped", flush=True)
