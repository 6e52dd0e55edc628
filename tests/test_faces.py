"""Users' real photos: faces found and framed wherever they are (faces.py), every face
restored, what a photo carries (colour profile, EXIF, CMYK, 16-bit masks) kept, and training
on unaligned photos with --align_faces."""
import io

import numpy as np
import pytest
from PIL import Image, ImageCms

import datamanager
import faces
import inpaint
import model
import photo_io
import run
import synthetic_faces

ICC = "/usr/share/color/icc/ghostscript"  # Debian's libgs-common (.ci/run installs it)
FACES = [(30, 110, 170), (250, 50, 190), (470, 170, 150)]  # left, top, side of each pasted face


def scene(faces_at=FACES, size=(680, 400), first=0):
    """A photo of textured background with synthetic faces (from number `first`) pasted at
    faces_at."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    pixels = np.stack([70 + 90 * x, 120 + 40 * y, 150 - 60 * x], -1) + rng.normal(0, 5, (*y.shape, 3))
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    for index, (left, top, side) in enumerate(faces_at):
        face = synthetic_faces.synthetic_face(5, first + index, 256)
        photo.paste(Image.fromarray(face).resize((side, side), Image.Resampling.LANCZOS),
                    (left, top))
    return photo


def _inpaint(capsys, out_dir, *argv):
    code = run.main(["--mode", "inpaint", "--out_dir", out_dir, *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _changed(before, after_path):
    after = np.asarray(Image.open(after_path).convert("RGB"), np.int16)
    return np.any(np.asarray(before.convert("RGB"), np.int16) != after, axis=-1)


def test_every_face_is_found_and_framed_where_its_eyes_are():
    found = faces.find_faces(scene())
    assert len(found) == 3
    for face, (left, top, side) in zip(found, FACES):
        square = faces.square_for(face, faces.STANDARD)
        assert square[3] == 0  # level eyes: an upright square
        # the synthetic faces' eyes lie where STANDARD says, so the square is the face's own
        assert abs(square[2] - side) < 0.15 * side
        assert abs(square[0] - left) < 0.1 * side and abs(square[1] - top) < 0.1 * side


def _placed(photo_size, centre, side, degrees):
    """A drawn face of `side` turned by `degrees` (counterclockwise, as a viewer sees it)
    about `centre` on a plain photo, which it may overhang."""
    face = Image.fromarray(synthetic_faces.synthetic_face(5, 0, 256)).convert("RGBA")
    face = face.resize((side, side), Image.Resampling.LANCZOS)
    turned = face.rotate(degrees, Image.Resampling.BICUBIC, expand=True)
    photo = Image.new("RGB", photo_size, (120, 140, 160))
    photo.paste(turned, (round(centre[0] - turned.width / 2), round(centre[1] - turned.height / 2)),
                turned)
    return photo


def _hole_in_face(photo, centre, side, degrees):
    """Where the surgical-mask hole lands, in the face's own coordinates (fractions of its
    side from its centre, turned back upright), and the square's eye line."""
    config = model.TrainConfig(img_size=64)
    job = inpaint.Job(photo_io_buffer(photo), None, "photo")
    [square] = inpaint.plan(job, config, "face", "facemask").squares
    x0, y0, _, _ = square.box
    ys, xs = np.nonzero(square.hole)
    offset = np.array([xs.mean() + x0 + 0.5 - centre[0], ys.mean() + y0 + 0.5 - centre[1]])
    back = np.radians(degrees)  # turns the photo's axes back to the face's
    cos, sin = np.cos(back), np.sin(back)
    upright = np.array([cos * offset[0] - sin * offset[1], sin * offset[0] + cos * offset[1]])
    return upright / side, square.crop


def photo_io_buffer(image):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    buffer.seek(0)
    buffer.name = "photo"
    return buffer


@pytest.mark.parametrize("where", ["right edge", "top-left corner", "larger than the photo",
                                   "turned 30 degrees", "turned -45 degrees"])
def test_a_face_at_the_edge_or_turned_gets_its_hole_where_an_upright_inside_face_does(where):
    """The square reaches beyond the photo (padded there) or turns with the head, so the
    hole sits on the face as training's framing puts it, within 2 % of the side."""
    reference, square = _hole_in_face(_placed((900, 700), (450, 350), 300, 0), (450, 350), 300, 0)
    assert square[3] == 0 and 0.1 < reference[1] < 0.25  # below the face's middle: mouth, chin
    photo_size, centre, side, degrees = {
        "right edge": ((900, 700), (790, 350), 300, 0),
        "top-left corner": ((900, 700), (60, 90), 300, 0),
        "larger than the photo": ((300, 300), (150, 150), 420, 0),
        "turned 30 degrees": ((900, 700), (450, 350), 300, 30),
        "turned -45 degrees": ((900, 700), (450, 350), 300, -45),
    }[where]
    found, square = _hole_in_face(_placed(photo_size, centre, side, degrees), centre, side, degrees)
    assert abs(square[3] + degrees) < 4  # the square turns with the eye line
    assert np.all(np.abs(found - reference) < 0.02), (found, reference)


def test_the_hole_lands_on_every_face_of_a_group_photo(trained_run, tmp_path, capsys):
    photo = scene()
    photo.save(tmp_path / "group.jpg", quality=95)
    before = Image.open(tmp_path / "group.jpg")
    code, out, err = _inpaint(capsys, trained_run, "--input", tmp_path / "group.jpg", "--hole",
                              "facemask", "--output", tmp_path / "out")
    assert code == 0, err
    assert "(3 squares)" in out
    changed = _changed(before, tmp_path / "out" / "group.png")
    on_faces = np.zeros_like(changed)
    for left, top, side in FACES:
        face = changed[top:top + side, left:left + side]
        # nose to chin, cheek to cheek, where the surgical mask's hole lies on each face
        assert face[int(0.55 * side):int(0.75 * side), int(0.4 * side):int(0.6 * side)].mean() > 0.5
        assert face[:int(0.3 * side)].mean() < 0.01  # not the forehead
        on_faces[top:top + side, left:left + side] = True
    assert not np.any(changed & ~on_faces)


def test_no_face_found_restores_the_centred_square_and_says_so(trained_run, tmp_path, capsys):
    scene(faces_at=[]).save(tmp_path / "wall.png")
    code, out, err = _inpaint(capsys, trained_run, "--input", tmp_path / "wall.png", "--hole",
                              "center", "--output", tmp_path / "out")
    assert code == 0, err
    assert "wall.png: no face found; restoring its centred square" in out
    changed = _changed(Image.open(tmp_path / "wall.png"), tmp_path / "out" / "wall.png")
    ys, xs = np.nonzero(changed)
    assert len(ys) and xs.min() >= 140 and xs.max() < 540  # the centred 400x400 square


def test_colour_profile_and_exif_are_kept_with_the_photo_upright(trained_run, tmp_path, capsys):
    """A wide-gamut profile (Adobe RGB, as a phone's Display P3) and an EXIF rotation."""
    with open(f"{ICC}/a98.icc", "rb") as f:
        profile = f.read()
    sideways = scene().transpose(Image.Transpose.ROTATE_90)  # as the sensor stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # a viewer turns it 90 degrees clockwise
    exif[0x010F] = "Phone maker"
    sideways.save(tmp_path / "phone.jpg", quality=95, icc_profile=profile, exif=exif)
    code, _, err = _inpaint(capsys, trained_run, "--input", tmp_path / "phone.jpg", "--hole",
                            "facemask", "--output", tmp_path / "out")
    assert code == 0, err
    with Image.open(tmp_path / "out" / "phone.png") as result:
        assert result.size == (680, 400)  # upright
        assert result.info["icc_profile"] == profile
        kept = result.getexif()
        assert kept[0x010F] == "Phone maker" and kept[0x0112] == 1
        upright = np.asarray(result)
    # the photo came back upright: the unchanged top-left corner is the scene's
    expected = np.asarray(Image.open(tmp_path / "phone.jpg").transpose(Image.Transpose.ROTATE_270))
    assert np.abs(upright[:40, :40].astype(int) - expected[:40, :40]).max() <= 1


def test_a_cmyk_photo_is_turned_to_rgb_through_its_profile(trained_run, tmp_path, capsys):
    with open(f"{ICC}/default_cmyk.icc", "rb") as f:
        profile = f.read()
    cmyk = ImageCms.profileToProfile(scene(), ImageCms.createProfile("sRGB"),
                                     ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                     outputMode="CMYK")
    cmyk.save(tmp_path / "print.jpg", quality=95, icc_profile=profile)
    code, _, err = _inpaint(capsys, trained_run, "--input", tmp_path / "print.jpg", "--hole",
                            "facemask", "--output", tmp_path / "out")
    assert code == 0, err
    with Image.open(tmp_path / "print.jpg") as source:
        managed = np.asarray(ImageCms.profileToProfile(
            source, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
            ImageCms.createProfile("sRGB"), outputMode="RGB"), np.int16)
        naive = np.asarray(source.convert("RGB"), np.int16)
    with Image.open(tmp_path / "out" / "print.png") as result:
        assert result.mode == "RGB"
        assert result.info["icc_profile"] == photo_io.SRGB.tobytes()
        restored = np.asarray(result, np.int16)
    corner = (slice(0, 40), slice(0, 40))  # no face there: untouched context
    assert np.array_equal(restored[corner], managed[corner])
    assert np.abs(naive[corner] - managed[corner]).mean() > 10  # the naive way is far off


def test_a_16_bit_mask_is_cut_at_half_its_range(trained_run, tmp_path, capsys):
    scene(faces_at=[(240, 0, 400)]).save(tmp_path / "face.png")
    mask = np.full((400, 680), 300, np.uint16)  # dark, but not 0: it is no hole
    mask[200:260, 400:480] = 60000
    Image.fromarray(mask).save(tmp_path / "mask.png")
    with Image.open(tmp_path / "mask.png") as saved:
        assert saved.mode.startswith("I")
    code, _, err = _inpaint(capsys, trained_run, "--input", tmp_path / "face.png", "--mask",
                            tmp_path / "mask.png", "--output", tmp_path / "out")
    assert code == 0, err
    changed = _changed(Image.open(tmp_path / "face.png"), tmp_path / "out" / "face.png")
    hole = mask > 32767
    assert changed[hole].mean() > 0.9 and not np.any(changed & ~hole)  # Poisson: the hole only


def test_align_faces_frames_each_photo_and_skips_one_with_no_face(tmp_path, capsys):
    folder = tmp_path / "phone"
    folder.mkdir()
    for index, (left, top) in enumerate([(10, 40), (300, 20), (150, 150), (380, 180)]):
        scene(faces_at=[(left, top, 200)], size=(640, 420), first=index).save(folder / f"{index}.jpg")
    scene(faces_at=[], size=(640, 420)).save(folder / "wall.jpg")
    with pytest.warns(UserWarning, match=r"wall\.jpg: no face found"):
        images = datamanager.prepare_images(str(tmp_path / "cache"), 64, data_dir=str(folder),
                                            align_faces=True)
    err = capsys.readouterr().err
    assert "read 4 of 5 photos and took 4 faces" in err
    assert "1 photos in which no face was found" in err
    assert images.count == 4 and len(images.skipped) == 1
    aligned = images.read(range(4)).astype(int)
    for index, image in enumerate(aligned):  # each is the face, framed as drawn, not the centre
        drawn = np.asarray(Image.fromarray(synthetic_faces.synthetic_face(5, index, 256))
                           .resize((64, 64), Image.Resampling.LANCZOS), int)
        centred = datamanager.load_image(str(folder / f"{index}.jpg"), 64).astype(int)
        assert np.abs(image - drawn).mean() < np.abs(centred - drawn).mean() / 2
        assert np.abs(image - drawn).mean() < 20
    assert images.framing is not None
    assert abs(images.framing.eye_y - faces.STANDARD.eye_y) < 0.04
    assert abs(images.framing.eye_distance - faces.STANDARD.eye_distance) < 0.03


def test_align_faces_needs_a_data_dir(tmp_path, capsys):
    assert run.main(["--align_faces", "--out_dir", str(tmp_path)]) == 2
    assert "--align_faces" in capsys.readouterr().err
