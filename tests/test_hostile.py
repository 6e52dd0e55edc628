"""Hostile input to the server and a folder run: too many squares, corrupt EXIF and colour
profiles, a truncated checkpoint. Each is refused with one line, never a 500."""
import io
import os
import shutil
import struct
import subprocess
import sys
import time
import warnings

import numpy as np
import requests
from conftest import ROOT
from PIL import Image, ImageOps

import inpaint

WANTED = ("SyntaxError", "TypeError", "AttributeError", "error")  # struct.error


def jpeg_with_exif():
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation
    exif[0x010F] = "Camera maker"
    exif[0x0110] = "Model 1"
    exif[0x011A] = 72.0  # XResolution, a rational
    exif[0x0132] = "2026:12:06 10:00:00"
    exif[0x0131] = "software"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif, quality=90)
    return buffer.getvalue()


def pillow_raises(data):
    """The exception Pillow itself raises reading the photo as read_photo did, or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
        exif = image.getexif()
        exif[0x0112] = 1
        exif.tobytes()
    except Exception as error:  # noqa: BLE001
        return type(error).__name__
    return None


def corrupt_exif_jpegs():
    """JPEGs whose EXIF block has random bytes flipped (fixed seed), one for each of the
    exceptions Pillow's parser raised on such photos."""
    good = jpeg_with_exif()
    start = good.index(b"Exif\x00\x00") + 6
    length = struct.unpack(">H", good[start - 8:start - 6])[0] - 8
    rng = np.random.default_rng(7)
    found = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(20000):  # AttributeError, the rarest, came at try 13,490
            data = bytearray(good)
            for where in rng.integers(start, start + length, rng.integers(1, 6)):
                data[where] = rng.integers(0, 256)
            kind = pillow_raises(bytes(data))
            if kind in WANTED and kind not in found:
                found[kind] = bytes(data)
            if len(found) == len(WANTED):
                break
    assert sorted(found) == sorted(WANTED), sorted(found)
    return found


def cmyk_with_garbage_profile():
    buffer = io.BytesIO()
    Image.new("CMYK", (64, 48), (10, 80, 120, 5)).save(buffer, "JPEG",
                                                       icc_profile=b"not a profile" * 20)
    return buffer.getvalue()


def test_too_many_squares_are_refused_before_the_photo_is_read(server):
    url, _ = server
    crop = ";".join(f"{i % 50},{i // 50},8" for i in range(2000))
    start = time.perf_counter()
    answer = requests.post(f"{url}/api/inpaint", files={"photo": ("p.jpg", b"x" * 100)},
                           data={"hole": "center", "crop": crop}, timeout=30)
    assert time.perf_counter() - start < 1
    assert answer.status_code == 400
    assert answer.json()["error"] == (f"2000 squares given; at most {inpaint.MAX_SQUARES} can be "
                                      "restored at once")


def test_corrupt_metadata_and_32_bit_photos_are_a_400_and_skipped_in_a_folder(server, trained_run, tmp_path):
    url, _ = server
    photos = {f"exif_{kind}": data for kind, data in corrupt_exif_jpegs().items()}
    photos["cmyk_garbage_icc"] = cmyk_with_garbage_profile()
    for name, mode, values in (("float", "F", np.linspace(0, 1, 48 * 64)),
                               ("int32", "I", np.linspace(0, 2**31 - 1, 48 * 64))):
        buffer = io.BytesIO()
        Image.fromarray(values.reshape(48, 64).astype("float32" if mode == "F" else "int32"),
                        mode).save(buffer, "TIFF")
        photos[f"{name}_tiff"] = buffer.getvalue()
    for name, data in photos.items():
        answer = requests.post(f"{url}/api/inpaint", files={"photo": (f"{name}.jpg", data)},
                               data={"hole": "center", "crop": "center"}, timeout=60)
        assert answer.status_code == 400, (name, answer.text)
        assert "photo" in answer.json()["error"], name
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, data in photos.items():
        (folder / f"{name}.jpg").write_bytes(data)
    good = Image.fromarray(np.full((48, 64, 3), 120, np.uint8))
    good.save(folder / "good.png")
    done = subprocess.run([sys.executable, "run.py", "--mode", "inpaint", "--out_dir", trained_run,
                           "--input", str(folder), "--hole", "center", "--crop", "center",
                           "--output", str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 photo(s) restored" in done.stdout and "7 unreadable skipped" in done.stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["good.png", "good_compare.png"]
    assert "Traceback" not in done.stderr


def test_a_truncated_checkpoint_is_one_line(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    for data in (copy / "checkpoints").glob("*.data-*"):  # as an interrupted copy leaves them
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    done = subprocess.run([sys.executable, "run.py", "--mode", "serve", "--out_dir", str(copy),
                           "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "truncated or damaged" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
