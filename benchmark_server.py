"""The server's measurements for benchmark.py: one page restoration end to end, a
12-megapixel phone photo alone and four at once, and a burst of large requests past the
server's queue; and the one memory sampler every peak-memory row uses."""
import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import requests
import tensorflow as tf
from PIL import Image

import model
import photo_io
import synthetic_faces

ROOT = os.path.dirname(os.path.abspath(__file__))


def _seconds(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def report(what, start):
    print(f"[{time.perf_counter() - start:4.0f} s] {what}", file=sys.stderr, flush=True)


PAGE_PHOTO, PAGE_HOLE = (1152, 864), 300  # about a megapixel, and the hole's side
PHONE_PHOTO, PHONE_FACE = (4000, 3000), (2300, 900, 1400)  # 12 megapixels; left, top, side


def page_run(args):
    """A run folder of the default's untrained generator: a restoration's time does not
    depend on the weights."""
    run_dir = os.path.join(args.dir, "page_run")
    if not os.path.exists(os.path.join(run_dir, "config.json")):
        config = model.TrainConfig()
        checkpoint = tf.train.Checkpoint(ema_generator=model.build_generator(config),
                                         epoch=tf.Variable(0, dtype=tf.int64))
        tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, "checkpoints"), 1).save(0)
        model.save_config(config, run_dir)
    return run_dir


@contextlib.contextmanager
def served(run_dir):
    """`python run.py --mode serve` over run_dir; yields its URL and its process. A server
    that does not start raises with what it said."""
    with tempfile.TemporaryFile("w+") as errors:
        server = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--mode", "serve",
                                   "--out_dir", run_dir, "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            url = next((line.split()[3] for line in server.stdout if line.startswith("serving ")),
                       None)
            if url is None:
                server.wait(timeout=60)
                errors.seek(0)
                raise RuntimeError(f"the server did not start (exit {server.returncode}): "
                                   f"{errors.read().strip()[-2000:]}")
            yield url, server
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=60)


def measure_page(args, start, settings):
    """Seconds for one page restoration end to end: `python run.py --mode serve`, a
    1152x864 JPEG and a 300x300 mask POSTed to /api/inpaint with the centred square,
    Poisson-blended, the PNG read back; after one untimed request."""
    report("measuring: page restoration through the API", start)
    width, height = PAGE_PHOTO
    face = synthetic_faces.synthetic_face(0, 1, height)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = face[:, :1]  # the background beside the face square: its edge colours
    pixels[:, (width - height) // 2:(width + height) // 2] = face
    photo, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(pixels).save(photo, "JPEG", quality=90)
    hole = np.zeros((height, width), np.uint8)
    top, left = (height - PAGE_HOLE) // 2, (width - PAGE_HOLE) // 2
    hole[top:top + PAGE_HOLE, left:left + PAGE_HOLE] = 255
    Image.fromarray(hole).save(mask, "PNG")
    with served(page_run(args)) as (url, _):
        files = {"photo": ("photo.jpg", photo.getvalue()), "mask": ("mask.png", mask.getvalue())}

        def restore():
            answer = requests.post(f"{url}/api/inpaint", files=files, data={"crop": "center"},
                                   timeout=600)
            answer.raise_for_status()
        restore()
        return [_seconds(restore) for _ in range(settings["step_repeats"])]


def phone_photo():
    """A 4000x3000 JPEG as a phone takes it: a face right of centre on a textured
    background, with a colour profile."""
    width, height = PHONE_PHOTO
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / width
    pixels = np.stack([80 + 60 * x, 110 + 50 * y, 140 - 50 * x], -1)
    pixels += rng.normal(0, 6, pixels.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    left, top, side = PHONE_FACE
    face = Image.fromarray(synthetic_faces.synthetic_face(0, 1, 512))
    photo.paste(face.resize((side, side), Image.Resampling.BICUBIC), (left, top))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92, icc_profile=photo_io.SRGB.tobytes())
    return buffer.getvalue()


class PeakMemory:
    """The peak resident memory of a process, sampled every 20 ms while in the block."""

    def __init__(self, pid):
        self.process, self.peak, self.done = psutil.Process(pid), 0, threading.Event()

    def __enter__(self):
        def sample():
            while not self.done.wait(0.02):
                self.peak = max(self.peak, self.process.memory_info().rss)
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def measure_phone(args, start, settings):
    """A 12-megapixel phone photo through POST /api/inpaint with the surgical-mask hole on
    the face it finds, Poisson-blended, end to end: seconds for one, and the server's peak
    memory over its idle memory; then four sent at once."""
    report("measuring: a 12-megapixel photo through the API", start)
    files = {"photo": ("phone.jpg", phone_photo())}

    def restore():
        answer = requests.post(f"{url}/api/inpaint", files=files, data={"hole": "facemask"},
                               timeout=600)
        answer.raise_for_status()
        return answer
    with served(page_run(args)) as (url, server):
        idle = psutil.Process(server.pid).memory_info().rss
        with PeakMemory(server.pid) as one:
            left, top, side = map(int, restore().headers["x-squares"].split(",")[:3])
            face_left, face_top, face_side = PHONE_FACE
            if abs(left - face_left) > face_side / 4 or abs(top - face_top) > face_side / 4:
                raise RuntimeError(f"the square {left},{top},{side} is not on the face")
            seconds = [_seconds(restore) for _ in range(settings["step_repeats"])]
        with PeakMemory(server.pid) as four, ThreadPoolExecutor(4) as pool:
            at_once = _seconds(lambda: list(pool.map(lambda _: restore(), range(4))))
    return {"seconds": seconds, "one_gb": (one.peak - idle) / 1e9,
            "four_seconds": at_once, "four_gb": (four.peak - idle) / 1e9}


BURST, BURST_SIDE = 12, 3000  # requests sent at once; their photos' side (9 megapixels)


def measure_burst(args, start):
    """BURST requests with 9-megapixel photos (small PNGs: a smooth picture compresses to a
    few KB) sent at once, centre hole on the centred square: how many are answered and
    refused (503, the queue full), the time until the last answer, the server's peak
    memory over idle, and its memory 2 s after."""
    report("measuring: a burst of 9-megapixel requests", start)
    y, x = np.mgrid[0:BURST_SIDE, 0:BURST_SIDE] / BURST_SIDE
    buffer = io.BytesIO()
    Image.fromarray(np.stack([60 + 120 * x, 90 + 60 * y, 140 - 40 * x], -1).astype(np.uint8)
                    ).save(buffer, "PNG")
    files, data = {"photo": ("photo.png", buffer.getvalue())}, {"hole": "center", "crop": "center"}

    def send(_):
        return requests.post(f"{url}/api/inpaint", files=files, data=data, timeout=600).status_code
    with served(page_run(args)) as (url, server):
        send(0)
        time.sleep(1)
        process = psutil.Process(server.pid)
        idle = process.memory_info().rss
        with PeakMemory(server.pid) as peak, ThreadPoolExecutor(BURST) as pool:
            started = time.perf_counter()
            statuses = list(pool.map(send, range(BURST)))
            seconds = time.perf_counter() - started
        time.sleep(2)
        after = process.memory_info().rss
    return {"seconds": seconds, "answered": statuses.count(200), "busy": statuses.count(503),
            "peak_gb": (peak.peak - idle) / 1e9, "after_gb": (after - idle) / 1e9}


def rows(page, phone, burst):
    """The table's rows of these measurements."""
    page_row = (f"page restoration via POST /api/inpaint: {PAGE_PHOTO[0]}x{PAGE_PHOTO[1]} "
                f"JPEG, {PAGE_HOLE}x{PAGE_HOLE} hole, Poisson, end to end")
    phone_row = (f"{PHONE_PHOTO[0]}x{PHONE_PHOTO[1]} JPEG via POST /api/inpaint: face found, "
                 "surgical-mask hole, Poisson, end to end")
    return [(page_row, "s", page), (phone_row, "s", phone["seconds"]),
            ("↳ server's peak memory over idle", "GB", [phone["one_gb"]]),
            ("↳ four such requests at once: all answered", "s", [phone["four_seconds"]]),
            ("↳ four at once: server's peak memory over idle", "GB", [phone["four_gb"]]),
            ((f"burst: {BURST} {BURST_SIDE}x{BURST_SIDE} PNGs via POST /api/inpaint at once, "
             "until the last answer"), "s", [burst["seconds"]]),
            ("↳ answered 200", "requests", [burst["answered"]]),
            ("↳ refused at once, 503 (the queue full)", "requests", [burst["busy"]]),
            ("↳ server's peak memory over idle", "GB", [burst["peak_gb"]]),
            ("↳ its memory 2 s after, over idle", "GB", [burst["after_gb"]])]
