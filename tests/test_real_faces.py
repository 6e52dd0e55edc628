"""Real faces: a photo library as training data (every face, none too small, near-duplicates
once, found once and cached), what a run records of its data and says of it, grey photos
restored grey by a colour run, and OpenCV's Telea offered beside the model."""
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import requests
from conftest import ROOT, start_server, stop_server
from PIL import Image
from test_page import wait_for_hole

import datamanager
import faces
import model
import references
import synthetic_faces

SIZE = 128  # the library test's --img_size: faces under 64-pixel squares are not taken
BIG, SMALL = 120, 56  # sides the faces are pasted at: squares of about 125 and 57 pixels


def group_photo(faces_at, first):
    """A photo of textured background with distinct drawn faces (left, top, side)."""
    width = max(left + side for left, top, side in faces_at) + 20
    height = max(top + side for left, top, side in faces_at) + 20
    rng = np.random.default_rng(first)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    pixels = np.stack([70 + 90 * x, 120 + 40 * y, 150 - 60 * x], -1) + rng.normal(0, 5, (*y.shape, 3))
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    for index, (left, top, side) in enumerate(faces_at):
        face = synthetic_faces.synthetic_face(5, first + index, 256)
        photo.paste(Image.fromarray(face).resize((side, side), Image.Resampling.LANCZOS), (left, top))
    return photo


def row(count, side, top=20):
    return [(20 + i * (side + 30), top, side) for i in range(count)]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Photos of one to six large faces, one with small faces beside two large ones, the same
    photo twice (a re-saved copy), and a wall; with the faces expected of it."""
    folder = tmp_path_factory.mktemp("Pictures")
    taken = 0
    for count in range(1, 7):
        at = row(min(count, 3), BIG) + row(count - 3, BIG, top=20 + BIG + 30)
        group_photo(at, first=10 * count).save(folder / f"group_{count}.png")
        taken += count
    group_photo(row(2, BIG) + row(3, SMALL, top=BIG + 60), first=80).save(folder / "small.png")
    taken += 2
    shutil.copy(folder / "group_3.png", folder / "group_3 copy.png")
    group_photo(row(3, BIG), first=30).save(folder / "group_3.jpg", quality=92)  # re-saved
    Image.new("RGB", (300, 200), (90, 120, 150)).save(folder / "wall.jpg")
    return folder, taken


def test_every_face_of_a_photo_library_is_a_training_image_once(library, tmp_path, capsys):
    folder, taken = library
    with pytest.warns(UserWarning, match=r"wall\.jpg: no face found"):
        images = datamanager.prepare_images(str(tmp_path), SIZE, data_dir=str(folder),
                                            align_faces=True)
    assert images.count == taken  # 1 + ... + 6 + the two large faces beside the small ones
    data = images.data
    assert data["read"] == 9 and data["files"] == 10 and data["no_face"] == 1
    assert data["small"] == 3 and data["duplicates"] == 6  # both copies of group_3's three faces
    assert data["crop"] == "faces" and data["min_face"] == SIZE // 2 and not data["grey"]
    err = capsys.readouterr().err
    assert (f"read 9 of 10 photos and took {taken} faces; skipped 3 faces too small (framed by "
            "under 64 px), 6 near-duplicates and 1 photos in which no face was found") in err
    # each image is a face framed as the drawn faces are: its eyes where STANDARD has them
    framing = faces.measure_framing(images.read(range(images.count)))
    assert abs(framing.eye_y - faces.STANDARD.eye_y) < 0.03
    assert abs(framing.eye_distance - faces.STANDARD.eye_distance) < 0.03
    all_images = images.read(range(images.count)).reshape(images.count, -1).astype(np.int16)
    distances = [np.abs(a - b).mean() for i, a in enumerate(all_images) for b in all_images[i + 1:]]
    assert min(distances) > 5  # no face twice


def test_a_second_run_reuses_the_face_cache_and_another_detector_setting_does_not(
        library, tmp_path, monkeypatch):
    folder, _ = library
    with pytest.warns(UserWarning):
        first = datamanager.prepare_images(str(tmp_path), SIZE, data_dir=str(folder),
                                           align_faces=True)
    monkeypatch.setattr(faces, "find_faces", lambda image: pytest.fail("faces found again"))
    with pytest.warns(UserWarning):
        again = datamanager.prepare_images(str(tmp_path), SIZE, data_dir=str(folder),
                                           align_faces=True)
    assert again == first
    monkeypatch.setattr(faces, "DETECTOR", {**faces.DETECTOR, "threshold_onet": 0.7})
    with pytest.raises(pytest.fail.Exception, match="faces found again"), pytest.warns(UserWarning):
        datamanager.prepare_images(str(tmp_path), SIZE, data_dir=str(folder), align_faces=True)


def test_a_run_records_what_it_was_trained_on(builtin_run, trained_run):
    with open(os.path.join(builtin_run, "config.json")) as f:
        data = json.load(f)["data"]
    assert data == {"source": "built-in", "images": 24, "seed": 0, "grey": False}
    assert "drawn faces" in model.real_faces_advice(data)
    with open(os.path.join(trained_run, "config.json")) as f:
        data = json.load(f)["data"]
    assert data["source"] == "folder" and data["files"] == data["read"] == data["images"] == 36
    assert data["crop"] == "centre squares" and data["unreadable"] == 0
    assert model.real_faces_advice(data) is None


def grey_face():
    """A 200x150 photo whose channels are equal everywhere, the face in its centred square."""
    face = synthetic_faces.synthetic_face(11, 3, 150)
    grey = np.asarray(Image.fromarray(face).convert("L"))
    pixels = np.empty((150, 200), np.uint8)
    pixels[:] = grey[:, :1]
    pixels[:, 25:175] = grey
    return pixels


def test_a_colour_run_restores_a_grey_photo_in_grey(trained_run, server, tmp_path):
    url, _ = server
    with open(os.path.join(trained_run, "config.json")) as f:
        assert json.load(f)["grey"] is False  # a colour run
    pixels = grey_face()
    rgb, mode_l = tmp_path / "rgb.png", tmp_path / "l.png"
    Image.fromarray(np.repeat(pixels[..., None], 3, -1)).save(rgb)
    Image.fromarray(pixels).save(mode_l)
    done = subprocess.run([sys.executable, "run.py", "--mode", "inpaint", "--out_dir", trained_run,
                           "--input", str(rgb), "--hole", "center", "--crop", "center",
                           "--output", str(tmp_path / "cli")], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    mask = np.zeros((150, 200), np.uint8)
    mask[55:95, 80:120] = 255
    mask_bytes = io.BytesIO()
    Image.fromarray(mask).save(mask_bytes, "PNG")
    restored = {"cli": Image.open(tmp_path / "cli" / "rgb.png")}
    for name, path in (("api rgb", rgb), ("api L", mode_l)):
        for poisson in ("true", "false"):
            answer = requests.post(f"{url}/api/inpaint", files={
                "photo": (path.name, path.read_bytes()), "mask": ("m.png", mask_bytes.getvalue())},
                data={"crop": "25,0,150", "poisson": poisson}, timeout=120)
            assert answer.status_code == 200, answer.text
            restored[f"{name} {poisson}"] = Image.open(io.BytesIO(answer.content))
    for name, image in restored.items():
        assert image.mode == ("L" if "api L" in name else "RGB"), name
        values = np.asarray(image, np.int16)
        if values.ndim == 3:
            assert np.array_equal(values[..., 0], values[..., 1]), name
            assert np.array_equal(values[..., 0], values[..., 2]), name
            values = values[..., 0]
        assert np.abs(values - pixels).max() > 10, name  # the hole was restored


def test_telea_fills_the_same_hole_without_the_model(server, photo_and_mask):
    url, _ = server
    photo, mask = photo_and_mask
    answer = requests.post(f"{url}/api/inpaint", files={"photo": ("p.png", photo.read_bytes()),
                                                        "mask": ("m.png", mask.read_bytes())},
                           data={"fill": "telea", "crop": "25,0,150"}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-fill"] == "telea" and "x-checkpoint-epoch" not in answer.headers
    original = np.asarray(Image.open(photo))
    hole = np.asarray(Image.open(mask)) > 127
    expected = original.copy()
    square = original[:, 25:175]
    expected[:, 25:175][hole[:, 25:175]] = references.telea_photo(square, hole[:, 25:175])[
        hole[:, 25:175]]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(answer.content))), expected)
    bad = requests.post(f"{url}/api/inpaint", files={"photo": ("p.png", photo.read_bytes()),
                                                     "mask": ("m.png", mask.read_bytes())},
                        data={"fill": "lama"}, timeout=60)
    assert bad.status_code == 400 and "fill 'lama'" in bad.json()["error"]


@pytest.fixture(scope="module")
def photo_and_mask(tmp_path_factory):
    folder = tmp_path_factory.mktemp("telea")
    face = synthetic_faces.synthetic_face(11, 3, 150)
    pixels = np.empty((150, 200, 3), np.uint8)
    pixels[:] = face[:, :1]
    pixels[:, 25:175] = face
    Image.fromarray(pixels).save(folder / "face.png")
    mask = np.zeros((150, 200), np.uint8)
    mask[60:100, 70:130] = 255
    Image.fromarray(mask).save(folder / "face_mask.png")
    return folder / "face.png", folder / "face_mask.png"


def test_the_page_tells_a_built_in_run_from_a_folder_run(builtin_run, server, browser):
    _, chromium = browser
    from playwright.sync_api import expect
    process, url, _ = start_server(builtin_run)
    try:
        page = chromium.new_page()
        page.goto(url)
        expect(page.locator("#notice")).to_be_visible()
        expect(page.locator("#notice")).to_contain_text("drawn faces")
        expect(page.locator("#notice")).to_contain_text("--data_dir")
        expect(page.locator("#run")).to_contain_text("trained on 24 built-in drawn faces")
        page.close()
    finally:
        stop_server(process)
    folder_url, _ = server
    page = chromium.new_page()
    page.goto(folder_url)
    expect(page.locator("#run")).to_contain_text("trained on 36 images of")
    expect(page.locator("#notice")).to_be_hidden()
    page.close()


def test_inpaint_says_a_built_in_run_has_seen_drawn_faces(builtin_run, photo_and_mask, tmp_path):
    photo, _ = photo_and_mask
    done = subprocess.run([sys.executable, "run.py", "--mode", "inpaint", "--out_dir", builtin_run,
                           "--input", str(photo), "--hole", "center", "--crop", "center",
                           "--output", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if "drawn faces" in line]
    assert len(notes) == 1 and "--data_dir" in notes[0]


def test_the_pages_telea_result_is_the_apis(server, browser, photo_and_mask, tmp_path):
    _, chromium = browser
    from playwright.sync_api import expect
    url, _ = server
    photo, mask = photo_and_mask
    page = chromium.new_page(accept_downloads=True)
    page.goto(url)
    page.set_input_files("#photo-file", str(photo))
    expect(page.locator("#status")).to_contain_text("Paint over what is hidden", timeout=60000)
    page.set_input_files("#mask-file", str(mask))
    wait_for_hole(page)
    page.check("input[name=fill][value=telea]")
    page.click("#restore")
    expect(page.locator("#history li")).to_have_count(1, timeout=60000)
    expect(page.locator("#result-caption")).to_contain_text("OpenCV Telea")
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "face_telea.png"
    saved = tmp_path / "page.png"
    download.value.save_as(saved)
    page.close()
    # the page sends the squares of the faces it found: the API's
    squares = requests.post(f"{url}/api/faces", files={"photo": photo.read_bytes()},
                            timeout=60).json()["faces"]
    assert squares
    crop = ";".join(",".join(map(str, face["square"])) for face in squares)
    answer = requests.post(f"{url}/api/inpaint", files={"photo": ("face.png", photo.read_bytes()),
                                                        "mask": ("m.png", mask.read_bytes())},
                           data={"fill": "telea", "crop": crop}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert saved.read_bytes() == answer.content
