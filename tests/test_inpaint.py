"""--mode inpaint: a user's own photos and masks, pasted back at full resolution."""
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

import model
import run
import synthetic_faces


def _photo(path, size=(600, 450), mode="RGB"):
    """A synthetic face on a wider background, as a photo that is not a square crop."""
    face = Image.fromarray(synthetic_faces.synthetic_face(4, 1, min(size)))
    photo = Image.new("RGB", size, (40, 90, 120))
    photo.paste(face, ((size[0] - face.width) // 2, (size[1] - face.height) // 2))
    photo = photo.convert(mode)
    photo.save(path)
    return path


def _mask(path, size, box, mode="L"):
    mask = Image.new("L", size)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    if mode == "RGBA":  # painted white on a transparent layer
        layer = Image.new("RGBA", size, (255, 255, 255, 0))
        layer.paste((255, 255, 255, 255), mask=mask)
        mask = layer
    else:
        mask = mask.convert(mode)
    mask.save(path)
    return _hole(size, box)


def _hole(size, box):
    hole = np.zeros((size[1], size[0]), bool)
    hole[box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    return hole


def _inpaint(capsys, trained_run, *argv):
    code = run.main(["--mode", "inpaint", "--out_dir", trained_run, *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


BOX = (250, 180, 340, 290)  # inside the centred 450x450 square of a 600x450 photo


@pytest.mark.parametrize("mask_mode", ["L", "1", "RGB", "RGBA", "P"])
def test_restores_a_600x450_photo_inside_the_hole_only(trained_run, tmp_path, capsys, mask_mode):
    photo = _photo(tmp_path / "face.png")
    hole = _mask(tmp_path / "face_mask.png", (600, 450), BOX, mask_mode)
    code, out, err = _inpaint(capsys, trained_run, "--input", photo, "--mask",
                              tmp_path / "face_mask.png", "--output", tmp_path / "out",
                              "--no-poisson")
    assert code == 0, err
    assert "restored" in out and "1 photo(s) restored" in out
    before = np.asarray(Image.open(photo))
    with Image.open(tmp_path / "out" / "face.png") as result:
        assert result.size == (600, 450) and result.mode == "RGB"
        after = np.asarray(result)
    changed = np.any(before != after, axis=-1)
    assert changed[hole].mean() > 0.9  # the hole is filled
    # outside the hole only the blend band may change: at the model's side, the band plus a
    # model pixel the hole rounds out to and up to two of bilinear resampling (the face's
    # square reaches below the photo, so its pixels do not fall on the photo's), in photo
    # pixels
    ys, xs = np.nonzero(changed & ~hole)
    config = model.load_config(trained_run)
    band = (model.band_pixels(config) + 3) * 450 / config.img_size
    assert len(ys) and ys.min() < BOX[1]  # the run feathers: the band is used
    if len(ys):
        assert ys.min() >= BOX[1] - band and ys.max() <= BOX[3] + band
        assert xs.min() >= BOX[0] - band and xs.max() <= BOX[2] + band
    assert np.array_equal(before[:100], after[:100]) and np.array_equal(before[:, :200],
                                                                        after[:, :200])
    with Image.open(tmp_path / "out" / "face_compare.png") as compare:
        assert compare.size == (3 * 600 + 2 * 8, 450)
        masked = np.asarray(compare)[:, 608:1208]
    assert masked[hole].max() == 0


def test_poisson_changes_the_hole_alone_and_meets_the_photo_at_its_edge(trained_run, tmp_path,
                                                                         capsys):
    photo = _photo(tmp_path / "face.png")
    hole = _mask(tmp_path / "face_mask.png", (600, 450), BOX)
    code, _, err = _inpaint(capsys, trained_run, "--input", photo, "--mask",
                            tmp_path / "face_mask.png", "--output", tmp_path / "out")
    assert code == 0, err
    before = np.asarray(Image.open(photo)).astype(int)
    with Image.open(tmp_path / "out" / "face.png") as result:
        after = np.asarray(result).astype(int)
    changed = np.any(before != after, axis=-1)
    assert not np.any(changed & ~hole) and changed[hole].mean() > 0.5
    # Across the hole's top edge the step from photo to fill is the photo's own step there
    # (the solve continues the context), within rounding and the fill's own gradient.
    top, left, right = BOX[1], BOX[0] + 5, BOX[2] - 5
    step = np.abs(after[top, left:right] - after[top - 1, left:right]).mean()
    assert step < np.abs(before[top, left:right] - before[top - 1, left:right]).mean() + 6


def test_greyscale_photo_stays_greyscale(trained_run, tmp_path, capsys):
    photo = _photo(tmp_path / "grey.pgm", mode="L")
    hole = _mask(tmp_path / "grey_mask.png", (600, 450), BOX)
    code, _, err = _inpaint(capsys, trained_run, "--input", photo, "--mask",
                            tmp_path / "grey_mask.png", "--output", tmp_path / "out")
    assert code == 0, err
    with Image.open(tmp_path / "out" / "grey.png") as result:
        assert result.mode == "L" and result.size == (600, 450)
        after = np.asarray(result)
    before = np.asarray(Image.open(photo))
    assert np.any(before[hole] != after[hole]) and np.array_equal(before[:120], after[:120])


def test_folder_with_and_without_mask_files(trained_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    _photo(folder / "a.jpg")
    _mask(folder / "a_mask.png", (600, 450), BOX)
    _photo(folder / "sub" / "b.tif", size=(300, 300))
    code, out, err = _inpaint(capsys, trained_run, "--input", folder, "--hole", "facemask",
                              "--output", tmp_path / "out")
    assert code == 0, err
    assert "2 photo(s) restored" in out
    for name, size in (("a", (600, 450)), ("sub/b", (300, 300))):
        with Image.open(tmp_path / "out" / f"{name}.png") as result:
            assert result.size == size
        assert (tmp_path / "out" / f"{name}_compare.png").exists()
    assert not (tmp_path / "out" / "a_mask.png").exists()  # masks are not photos


def test_folder_photo_without_mask_or_hole_is_an_error(trained_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "a.jpg")
    code, _, err = _inpaint(capsys, trained_run, "--input", folder, "--output", tmp_path / "out")
    assert code == 2 and "a_mask.png" in err and "--hole" in err
    assert not (tmp_path / "out").exists()


def test_unreadable_photo_in_a_folder_is_skipped(trained_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "good.png", size=(200, 200))
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="bad.jpg"):
        code, out, err = _inpaint(capsys, trained_run, "--input", folder, "--hole", "center",
                                  "--output", tmp_path / "out")
    assert code == 0, err
    assert "1 photo(s) restored" in out and "1 unreadable skipped" in out
    assert sorted(os.listdir(tmp_path / "out")) == ["good.png", "good_compare.png"]


def test_empty_mask_copies_the_photo_unchanged(trained_run, tmp_path, capsys):
    photo = _photo(tmp_path / "face.png")
    Image.new("L", (600, 450)).save(tmp_path / "empty.png")
    with pytest.warns(UserWarning, match="empty"):
        code, _, err = _inpaint(capsys, trained_run, "--input", photo, "--mask",
                                tmp_path / "empty.png", "--output", tmp_path / "out")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(photo)),
                          np.asarray(Image.open(tmp_path / "out" / "face.png")))


def test_crop_names_the_square_the_model_sees(trained_run, tmp_path, capsys):
    photo = _photo(tmp_path / "face.png")
    hole = _mask(tmp_path / "m.png", (600, 450), (20, 20, 60, 60))  # outside the centre square
    code, _, err = _inpaint(capsys, trained_run, "--input", photo, "--mask", tmp_path / "m.png",
                            "--output", tmp_path / "out")
    assert code == 2 and "outside the square the model sees" in err and "--crop" in err
    assert not (tmp_path / "out").exists()
    code, _, err = _inpaint(capsys, trained_run, "--input", photo, "--mask", tmp_path / "m.png",
                            "--crop", "0,0,200", "--output", tmp_path / "out")
    assert code == 0, err
    after = np.asarray(Image.open(tmp_path / "out" / "face.png"))
    before = np.asarray(Image.open(photo))
    assert np.any(before[hole] != after[hole]) and np.array_equal(before[250:], after[250:])


@pytest.mark.parametrize("argv, message", [
    (["--hole", "center", "--mask", "{mask}"], "exactly one of --mask"),
    ([], "exactly one of --mask"),
    (["--mask", "{small_mask}"], "a mask must have its photo's size"),
    (["--mask", "{text}"], "not a mask image"),
    (["--mask", "{mask}", "--crop", "700,0,200"], "--crop 700,0,200: the square does not overlap"),
    (["--mask", "{huge_mask}", "--crop", "center"], "at most 75%"),
])
def test_bad_input_is_one_line_and_exit_code_2(trained_run, tmp_path, capsys, argv, message):
    photo = _photo(tmp_path / "face.png")
    paths = {"mask": tmp_path / "mask.png", "small_mask": tmp_path / "small.png",
             "text": tmp_path / "text.png", "huge_mask": tmp_path / "huge.png"}
    _mask(paths["mask"], (600, 450), BOX)
    _mask(paths["small_mask"], (300, 225), (10, 10, 50, 50))
    paths["text"].write_text("not an image")
    _mask(paths["huge_mask"], (600, 450), (75, 0, 524, 449))
    argv = [a.format(**paths) for a in argv]
    code, _, err = _inpaint(capsys, trained_run, "--input", photo, *argv,
                            "--output", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 2 and message in lines[-1] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_input_is_an_error(trained_run, tmp_path, capsys):
    code, _, err = _inpaint(capsys, trained_run, "--input", tmp_path / "nope.jpg", "--hole",
                            "center")
    assert code == 2 and "no such photo or folder" in err and "Traceback" not in err


def test_no_trained_run_is_an_error(tmp_path, capsys):
    photo = _photo(tmp_path / "face.png")
    code = run.main(["--mode", "inpaint", "--out_dir", str(tmp_path / "nothing"), "--input",
                     str(photo), "--hole", "center"])
    err = capsys.readouterr().err
    assert code == 2 and "no trained run there" in err and "Traceback" not in err


def test_photos_whose_outputs_would_share_a_file_keep_their_extensions(trained_run, tmp_path,
                                                                        capsys):
    """a.jpg and a.png are two photos; b_compare.png would be b.png's comparison."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "a.jpg")
    Image.open(_photo(folder / "a.png", size=(500, 450))).close()
    _photo(folder / "b.png")
    _photo(folder / "b_compare.png", size=(640, 480))
    _photo(folder / "c.png")
    code, out, err = _inpaint(capsys, trained_run, "--input", folder, "--hole", "center",
                              "--output", tmp_path / "out")
    assert code == 0, err
    assert "5 photo(s) restored" in out
    written = sorted(os.listdir(tmp_path / "out"))
    assert written == sorted(["a_jpg.png", "a_jpg_compare.png", "a_png.png", "a_png_compare.png",
                              "b_png.png", "b_png_compare.png", "b_compare_png.png",
                              "b_compare_png_compare.png", "c.png", "c_compare.png"])
    sizes = {name: Image.open(tmp_path / "out" / name).size for name in written
             if "compare" not in name or name.startswith("b_compare_png.")}
    assert sizes["a_jpg.png"] == (600, 450) and sizes["a_png.png"] == (500, 450)
    assert sizes["b_compare_png.png"] == (640, 480)


def _rim(size, box, band):
    """Every pixel farther than `band` from the box: what must keep its value."""
    keep = np.ones((size[1], size[0]), bool)
    keep[max(0, box[1] - band):box[3] + band + 1, max(0, box[0] - band):box[2] + band + 1] = False
    return keep


@pytest.mark.parametrize("kind", ["16-bit grey", "RGBA", "transparent palette"])
def test_every_value_outside_the_hole_and_its_band_is_kept_in_the_photos_own_mode(
        trained_run, tmp_path, capsys, kind):
    rng = np.random.default_rng(5)
    size = (600, 450)
    if kind == "16-bit grey":
        pixels = rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16)
        photo = Image.fromarray(pixels)
    elif kind == "RGBA":
        pixels = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
        photo = Image.fromarray(pixels)
    else:
        photo = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).quantize(64)
        photo.info["transparency"] = 0  # palette entry 0 is transparent
        pixels = np.asarray(photo.convert("RGBA"))
        assert (pixels[..., 3] == 0).sum() > 1000
    photo.save(tmp_path / "photo.png", **({"transparency": 0} if kind.startswith("transparent") else {}))
    hole = _mask(tmp_path / "mask.png", size, BOX)
    code, _, err = _inpaint(capsys, trained_run, "--input", tmp_path / "photo.png", "--mask",
                            tmp_path / "mask.png", "--crop", "center", "--no-poisson",
                            "--output", tmp_path / "out")
    assert code == 0, err
    result = Image.open(tmp_path / "out" / "photo.png")
    after = np.asarray(result)
    band = 3 * 450 // 32  # the feathered band (1 pixel at 32) with its resampling, in the photo
    keep = _rim(size, BOX, band)
    assert result.mode == {"16-bit grey": "I;16", "RGBA": "RGBA",
                           "transparent palette": "RGBA"}[kind]
    assert np.array_equal(after[keep], pixels[keep])
    changed = after[hole] != pixels[hole]
    assert changed.mean() > 0.5
    if kind == "16-bit grey":
        assert len(np.unique(after[keep])) > 60000  # not 256 levels
    else:
        assert np.array_equal(after[..., 3], pixels[..., 3])  # the alpha is never touched


def test_each_photo_is_decoded_once_and_its_faces_found_once(trained_run, tmp_path, capsys,
                                                              monkeypatch):
    import faces
    import photo_io
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        _photo(folder / f"{index}.png")
    calls = {"read": [], "faces": 0}
    read, find = photo_io.read_photo, faces.find_faces

    def counted_read(source):
        calls["read"].append(os.path.basename(source))
        return read(source)

    def counted_find(image):
        calls["faces"] += 1
        return find(image)
    monkeypatch.setattr(photo_io, "read_photo", counted_read)
    monkeypatch.setattr(faces, "find_faces", counted_find)
    code, out, err = _inpaint(capsys, trained_run, "--input", folder, "--hole", "facemask",
                              "--output", tmp_path / "out")
    assert code == 0 and "3 photo(s) restored" in out, err
    assert sorted(calls["read"]) == ["0.png", "1.png", "2.png"] and calls["faces"] == 3
