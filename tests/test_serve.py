"""--mode serve: the API against a live server on a free local port, its bad-input matrix,
load, and the page driven in Debian's Chromium as a person uses it."""
import http.client
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np
import psutil
import pytest
import requests
from conftest import ROOT, start_server, stop_server
from PIL import Image

import faces
import photo_io
import run
import run_folder
import serve
import synthetic_faces

PHOTO_SIZE = (200, 150)  # landscape, so the square the model sees is not the whole photo


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 200x150 JPEG: a synthetic face in the centred 150x150 square, background around it."""
    face = synthetic_faces.synthetic_face(11, 3, PHOTO_SIZE[1])
    pixels = np.empty((PHOTO_SIZE[1], PHOTO_SIZE[0], 3), np.uint8)
    pixels[:] = face[:, :1]
    pixels[:, 25:175] = face
    path = tmp_path_factory.mktemp("photo") / "face.jpg"
    Image.fromarray(pixels).save(path, quality=92)
    return path


def mask_png(box, size=PHOTO_SIZE):
    """A PNG mask of `size`, white inside box (left, top, right, bottom)."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    left, top, right, bottom = box
    mask[top:bottom, left:right] = 255
    return photo_io.encode_png(Image.fromarray(mask))


HOLE = (80, 70, 130, 110)


def post(url, photo_bytes, mask=None, timeout=120, **fields):
    files = {"photo": ("face.jpg", photo_bytes)}
    if mask is not None:
        files["mask"] = ("mask.png", mask)
    return requests.post(f"{url}/api/inpaint", files=files, data=fields, timeout=timeout)


def test_a_restoration_is_byte_identical_to_mode_inpaint(server, photo, trained_run, tmp_path):
    url, _ = server
    answer = post(url, photo.read_bytes(), mask_png(HOLE), crop="25,0,150")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-checkpoint-epoch"] == "2"
    (tmp_path / "mask.png").write_bytes(mask_png(HOLE))
    done = subprocess.run([sys.executable, "run.py", "--mode", "inpaint", "--out_dir", trained_run,
                           "--input", str(photo), "--mask", str(tmp_path / "mask.png"),
                           "--crop", "25,0,150", "--output", str(tmp_path / "cli")], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert answer.content == (tmp_path / "cli" / "face.png").read_bytes()
    restored = np.asarray(Image.open(io.BytesIO(answer.content)), np.int16)
    original = np.asarray(Image.open(photo), np.int16)
    assert restored.shape == original.shape
    hole = np.asarray(Image.open(io.BytesIO(mask_png(HOLE)))) > 127
    assert np.array_equal(restored[~hole], original[~hole])  # Poisson: the hole alone changes
    assert np.abs(restored[hole] - original[hole]).mean() > 1


def test_the_run_reports_its_checkpoint_and_scores(server, trained_run):
    url, _ = server
    info = requests.get(f"{url}/api/run", timeout=30).json()
    last = run_folder.read_csv(os.path.join(trained_run, "metrics.csv"))[-1]
    assert (info["epoch"], info["epochs"], info["img_size"]) == (2, 2, 32)
    assert info["run"] == os.path.basename(trained_run)  # its name, not where it lies
    assert os.sep not in json.dumps(info)
    assert info["step"] == last["step"] and info["checkpoint"] == f"ckpt-{last['step']}"
    assert info["test_hole_psnr"] == pytest.approx(last["test_hole_psnr"])
    assert info["telea_hole_psnr"] == pytest.approx(last["telea_hole_psnr"])


def test_a_named_hole_and_no_poisson_restore_too(server, photo):
    url, _ = server
    answer = post(url, photo.read_bytes(), hole="facemask", poisson="false")
    assert answer.status_code == 200, answer.text
    assert Image.open(io.BytesIO(answer.content)).size == PHOTO_SIZE


def huge_png_header(width, height):
    """A PNG whose header says width x height: Pillow reads its size without decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


BAD_REQUESTS = {
    "not an image": (lambda p: {"photo_bytes": b"just text", "hole": "center"}, 400, "photo:"),
    "a mask of another size": (lambda p: {"mask": mask_png((0, 0, 9, 9), (99, 99))}, 400,
                               "must have its photo's size"),
    "an empty mask": (lambda p: {"mask": mask_png((0, 0, 0, 0))}, 400, "no white pixel"),
    "a hole outside the square": (lambda p: {"mask": mask_png((2, 2, 20, 20))}, 400,
                                  "move or enlarge the square"),
    "a mask that is not an image": (lambda p: {"mask": b"not an image"}, 400,
                                    "mask: not a mask image Pillow can read"),
    "a hole over most of the square": (lambda p: {"mask": mask_png((25, 0, 175, 150)),
                                                  "crop": "25,0,150"}, 400,
                                       "at most 75%"),
    "a square outside the photo": (lambda p: {"mask": mask_png(HOLE), "crop": "300,0,150"}, 400,
                                   "does not overlap the photo"),
    "a crop that is not three numbers": (lambda p: {"mask": mask_png(HOLE), "crop": "a,b"}, 400,
                                         "LEFT,TOP,SIDE"),
    "mask and hole both": (lambda p: {"mask": mask_png(HOLE), "hole": "center"}, 400,
                           "exactly one"),
    "neither mask nor hole": (lambda p: {}, 400, "exactly one"),
    "an unknown hole": (lambda p: {"hole": "../etc/passwd"}, 400, "choose one of"),
    "a bad poisson": (lambda p: {"hole": "center", "poisson": "maybe"}, 400, "true or false"),
    "a photo over the pixel limit": (lambda p: {"photo_bytes": huge_png_header(10000, 6000),
                                                "hole": "center"}, 413, "megapixels"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_input_is_a_4xx_with_one_line_and_the_next_request_works(server, photo, case):
    url, _ = server
    make, status, words = BAD_REQUESTS[case]
    fields = {"photo_bytes": photo.read_bytes(), **make(photo)}
    answer = post(url, **fields)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in answer.text
    # in the page's words: no command-line flag, no Python object
    assert "--" not in message and " object at " not in message
    assert post(url, photo.read_bytes(), mask_png(HOLE)).status_code == 200


def test_a_mask_bomb_is_refused_before_it_is_decoded(server, photo):
    """A tiny PNG that declares 150 megapixels (under Pillow's own limit) as the mask."""
    url, process = server
    memory = psutil.Process(process.pid)
    bomb = huge_png_header(15000, 10000)
    assert len(bomb) < 1000
    before = memory.memory_info().rss
    answer = post(url, photo.read_bytes(), bomb)
    assert answer.status_code == 400
    assert "the mask is 15000x10000 but its photo is 200x150" in answer.json()["error"]
    assert memory.memory_info().rss < before + 50 * 2**20  # decoded, it is 150 MB at least


def test_the_faces_are_found_and_framed(server, photo):
    url, _ = server
    answer = requests.post(f"{url}/api/faces", files={"photo": photo.read_bytes()}, timeout=60)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["width"], found["height"]) == PHOTO_SIZE and len(found["faces"]) == 1
    face = found["faces"][0]
    left, top, side, angle = face["square"]
    (left_eye_x, eye_y), (right_eye_x, _) = (face["landmarks"]["left_eye"],
                                             face["landmarks"]["right_eye"])
    assert 25 + 150 * 0.3 < left_eye_x < right_eye_x < 25 + 150 * 0.7  # the face's own eyes
    assert 150 * 0.3 < eye_y < 150 * 0.5 and face["confidence"] > 0.8
    # the square puts the eyes where training had them, even where it overhangs the photo
    framing = faces.STANDARD
    assert angle == 0 and side > 90
    assert abs((left_eye_x + right_eye_x) / 2 - left - framing.eye_x * side) < 0.02 * side
    assert abs(eye_y - top - framing.eye_y * side) < 0.02 * side
    answer = requests.post(f"{url}/api/faces", files={"photo": b"text"}, timeout=60)
    assert answer.status_code == 400 and "photo: not a photo" in answer.json()["error"]


def test_only_this_machine_and_the_page_itself_are_answered(server, photo):
    """Another site's page open in the same browser (its Origin), or one that rebinds its
    DNS name to this machine (its Host), is refused; scripts without an Origin work."""
    url, _ = server
    port = urlparse(url).port
    data = photo.read_bytes()
    foreign = requests.post(f"{url}/api/inpaint", files={"photo": data},
                            data={"hole": "center"}, headers={"Origin": "http://evil.example"},
                            timeout=60)
    assert foreign.status_code == 403 and "Origin" in foreign.json()["error"]
    rebound = requests.get(f"{url}/api/run", headers={"Host": f"evil.example:{port}"}, timeout=30)
    assert rebound.status_code == 421 and "evil.example" in rebound.json()["error"]
    assert requests.get(f"{url}/api/run", headers={"Host": f"localhost:{port}"},
                        timeout=30).status_code == 200
    own = requests.post(f"{url}/api/inpaint", files={"photo": data}, data={"hole": "center"},
                        headers={"Origin": url}, timeout=60)
    assert own.status_code == 200
    assert post(url, data, hole="center").status_code == 200  # no Origin: curl, scripts


def test_malformed_requests_and_oversized_uploads_are_refused(server, photo):
    url, _ = server
    checks = [
        (requests.post(f"{url}/api/inpaint", timeout=30), 400, "photo: missing"),
        (requests.post(f"{url}/api/inpaint", data=b"garbage", timeout=30,
                       headers={"Content-Type": "multipart/form-data"}), 400,
         "not a readable multipart form"),
        (requests.get(f"{url}/api/inpaint", timeout=30), 405, "Method Not Allowed"),
        (requests.get(f"{url}/static/../run.py", timeout=30), 404, "Not Found"),
        (requests.get(f"{url}/api/hole/..%2Frun.py", timeout=30), 404, "Not Found"),
        (requests.get(f"{url}/api/hole/passwd", timeout=30), 404, "choose one of"),
    ]
    for answer, status, words in checks:
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"]
    # An upload over the limit is refused by its Content-Length, before its body is sent.
    connection = http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port,
                                            timeout=30)
    connection.putrequest("POST", "/api/inpaint")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(serve.MAX_UPLOAD_BYTES + 1))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 413
    assert "the upload is over this server's 50 MB" in json.loads(answer.read())["error"]
    connection.close()
    assert post(url, photo.read_bytes(), mask_png(HOLE)).status_code == 200


def test_requests_at_once_all_come_back_right(server, photo):
    url, _ = server
    holes = [(60 + 8 * i, 50 + 4 * i, 100 + 8 * i, 90 + 4 * i) for i in range(8)]
    one_by_one = [post(url, photo.read_bytes(), mask_png(h)).content for h in holes]
    with ThreadPoolExecutor(8) as pool:
        at_once = list(pool.map(lambda h: post(url, photo.read_bytes(), mask_png(h)), holes))
    assert [a.status_code for a in at_once] == [200] * 8
    assert [a.content for a in at_once] == one_by_one


def test_memory_stays_flat_over_many_requests(server, photo):
    url, process = server
    memory = psutil.Process(process.pid)
    data = photo.read_bytes()
    for _ in range(20):
        assert post(url, data, mask_png(HOLE)).status_code == 200
    after_20 = memory.memory_info().rss
    for _ in range(180):
        assert post(url, data, mask_png(HOLE)).status_code == 200
    assert memory.memory_info().rss < 1.10 * after_20


def test_serving_while_the_run_trains_follows_its_checkpoints(trained_run, face_folder, tmp_path,
                                                              photo, monkeypatch, capsys):
    """The trainer saves a checkpoint an epoch and deletes the fourth-newest while the server
    looks for a newer one every 10 ms and restores photos: it moves on to each, never
    fails a restoration, and a checkpoint deleted while it is read is simply looked for
    again."""
    out = str(tmp_path / "run")
    shutil.copytree(trained_run, out)
    monkeypatch.setattr(serve, "CHECK_EVERY", 0.01)
    served = serve.Model(out)
    assert served.run_info()["epoch"] == 2
    trainer = subprocess.Popen(
        [sys.executable, "run.py", "--data_dir", face_folder, "--out_dir", out, "--mode", "train",
         "--resume", "--epoch", "7", "--img_size", "32", "--batch", "4", "--lr", "1e-3",
         "--test_ratio", "0.25", "--train_mask", "center"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    data, mask, epochs = photo.read_bytes(), mask_png(HOLE), set()
    while trainer.poll() is None:
        png, epoch, *_ = served.inpaint(data, mask, None, [(25, 0, 150, 0.0)], False)
        assert png[:4] == b"\x89PNG"
        epochs.add(epoch)
    assert trainer.returncode == 0, trainer.stderr.read()
    for _ in range(100):
        if served.run_info()["epoch"] == 7:
            break
        time.sleep(0.05)
    info = served.run_info()
    assert info["epoch"] == 7 and info["metrics_epoch"] == 7
    assert len(epochs) >= 3  # restorations were made with the weights of several epochs
    assert "warning" not in capsys.readouterr().out


def test_a_busy_port_and_a_folder_with_no_run_are_one_line_and_exit_2(trained_run, tmp_path,
                                                                      capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run.main(["--mode", "serve", "--out_dir", trained_run, "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"--port {port}: already in use" in error
    assert run.main(["--mode", "serve", "--out_dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no trained run there" in error


def test_listening_beyond_this_machine_warns_first_and_takes_only_its_own_names(trained_run):
    process, url, lines = start_server(trained_run, "--host", "0.0.0.0", "--allowed_hosts",
                                       "faces.lan")
    port = urlparse(url).port
    local = f"http://127.0.0.1:{port}"
    try:
        assert any(line.startswith("warning: --host 0.0.0.0: anyone") for line in lines)
        assert url.startswith("http://0.0.0.0:")
        assert requests.get(f"{local}/api/run", timeout=30).status_code == 200
        # a rebinding page: its own name as Host, and as Origin
        for method in ("get", "post"):
            evil = getattr(requests, method)(f"{local}/api/run", timeout=30, headers={
                "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
            assert evil.status_code == 421, evil.text
        named = requests.get(f"{local}/api/run", timeout=30, headers={"Host": f"faces.lan:{port}"})
        assert named.status_code == 200
        odd = requests.get(f"{local}/api/run", timeout=30, headers={"Host": "[::1"})
        assert odd.status_code == 421
    finally:
        stop_server(process)
