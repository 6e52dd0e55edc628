"""Restoring the hidden part of a user's own photos with a trained run: reading each photo and
its hole, the square the model sees, and pasting the restoration back into the photo at its
full resolution, so that nothing outside the hole (and its blend band) changes."""
import dataclasses
import io
import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image, ImageCms, ImageOps

import datamanager
import faces
import outputs
import tf_process
from poisson_blend import poisson_blend

MASK_SUFFIX = "_mask"  # LaMa's convention: photo.jpg's hole is photo_mask.png beside it
MAX_HOLE = 0.75  # of the crop: beyond it too little context is left to restore from
BATCH = 16  # photos per forward pass


class InpaintError(Exception):
    """A problem with the user's photos, masks or flags; run.py prints it as one line, the
    web page's server answers it with a 400, in the page's words (`page`) where the page's
    controls, not flags, caused it."""

    def __init__(self, message, page=None):
        super().__init__(message)
        self.page = page or message


class Unreadable(InpaintError):
    """A photo Pillow cannot read: a folder's run skips it, the server refuses it."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One photo to restore: where it is, where its hole comes from, where the output goes.
    photo and mask are paths, or for the server's uploads file objects whose `name` is what
    errors call them."""
    photo: str | io.BytesIO
    mask: str | io.BytesIO | None  # a mask image, or None for the named hole
    name: str  # output name without extension, relative to the output folder


def _called(source):
    return source if isinstance(source, str) else source.name


@dataclasses.dataclass
class Square:
    """One square of the photo the model sees, and the hole in it."""
    crop: tuple  # (left, top, side) in the photo's pixels
    hole: np.ndarray  # bool [side, side]: the hole at the crop's resolution
    model_input: np.ndarray  # uint8 [size, size, 3]: the crop as the model sees it
    model_hole: np.ndarray  # float32 [size, size, 1]


@dataclasses.dataclass
class Plan:
    """A photo read and checked: the squares to restore (none for an empty mask)."""
    image: Image.Image  # upright, in the mode it is written back in
    squares: list
    meta: dict  # what the output keeps of the photo: its ICC profile and EXIF
    note: str | None = None  # one line for the user, e.g. that no face was found

    @property
    def grey(self):
        """A grey photo (mode L, or R = G = B everywhere) gets a grey restoration whatever
        the run was trained on: a colour run would paint coloured eyes into it."""
        if self.image.mode in ("L", "LA"):
            return True
        pixels = np.asarray(self.image)[..., :3]
        return bool(np.all(pixels[..., :1] == pixels[..., 1:]))


def find_jobs(path, mask, hole):
    """The photos under `path` (one file or a folder searched like --data_dir) and their
    holes: --mask for one photo; NAME_mask.png beside each photo of a folder, else --hole."""
    if not os.path.exists(path):
        raise InpaintError(f"--input {path}: no such photo or folder")
    if os.path.isfile(path):
        if (mask is None) == (hole is None):
            raise InpaintError(f"--input {path}: give exactly one of --mask FILE (white is the "
                               "hole) or --hole center|facemask|random")
        return [Job(path, mask, os.path.splitext(os.path.basename(path))[0])]
    if mask is not None:
        raise InpaintError(f"--mask {mask}: is for a single photo; in a folder each photo's "
                           f"hole is NAME{MASK_SUFFIX}.png beside it (or --hole for all)")
    files = datamanager.find_images(path, flag="--input")
    masks = {os.path.splitext(f)[0]: f for f in files
             if os.path.splitext(f)[0].endswith(MASK_SUFFIX)}
    jobs = []
    for photo in files:
        stem = os.path.splitext(photo)[0]
        if stem.endswith(MASK_SUFFIX):
            continue
        mask_file = masks.get(stem + MASK_SUFFIX)
        if mask_file is None and hole is None:
            raise InpaintError(f"{photo}: no {os.path.basename(stem)}{MASK_SUFFIX}.png beside "
                               "it; add one (white is the hole) or pass --hole for such photos")
        jobs.append(Job(photo, mask_file, os.path.relpath(stem, path)))
    if not jobs:
        raise InpaintError(f"--input {path}: only masks in it, no photos")
    return jobs


CROPS = ("face", "center")
# Squares one photo may name: a group photo has a few dozen faces at most, and each square
# is a forward pass, so an unbounded list would be unbounded work.
MAX_SQUARES = 64


def parse_crop(text):
    """--crop and the server's crop field: "face", "center", or one to MAX_SQUARES squares
    "LEFT,TOP,SIDE" separated by ";" (the page sends one per face)."""
    if text in CROPS:
        return text
    if text.count(";") >= MAX_SQUARES:
        raise InpaintError(f"{text.count(';') + 1} squares given; at most {MAX_SQUARES} can be "
                           "restored at once")
    try:
        squares = [tuple(int(v) for v in part.split(",")) for part in text.split(";")]
    except ValueError:
        squares = []
    if not squares or any(len(square) != 3 for square in squares):
        raise InpaintError(f"expected face, center or LEFT,TOP,SIDE in pixels, got {text!r}")
    return squares


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
ORIENTATION = 0x0112  # the EXIF tag a viewer turns the photo by


def read_photo(source):
    """A photo, upright as a viewer shows it and loaded, with what its output keeps of it
    (its ICC profile, its EXIF with the orientation reset). A CMYK photo is turned to RGB
    through its profile, then carries sRGB's. Raises Unreadable."""
    try:
        with Image.open(source) as image:
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise Unreadable(f"{_called(source)}: not a photo Pillow can read "
                         f"({type(error).__name__})") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as error:  # noqa: BLE001  (Pillow's EXIF parser raises a dozen kinds)
        raise Unreadable(f"{_called(source)}: its EXIF metadata is corrupt "
                         f"({type(error).__name__}); save it again without EXIF") from None
    profile = image.info.get("icc_profile")
    if image.mode == "CMYK" and profile:
        try:
            image = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                              SRGB, outputMode="RGB")
            profile = SRGB.tobytes()
        except (ImageCms.PyCMSError, OSError) as error:
            raise Unreadable(f"{_called(source)}: its CMYK colour profile cannot be read "
                             f"({error})") from None
    elif image.mode == "CMYK":
        profile = None  # Pillow's plain conversion gives sRGB-like values
    try:
        exif = image.getexif()
        if len(exif):
            exif[ORIENTATION] = 1  # exif_transpose turned the pixels upright and dropped the tag
        exif = exif.tobytes() if len(exif) else None
    except Exception as error:  # noqa: BLE001  (Pillow's EXIF parser raises a dozen kinds)
        raise Unreadable(f"{_called(source)}: its EXIF metadata is corrupt "
                         f"({type(error).__name__}); save it again without EXIF") from None
    if image.mode == "F" or (image.mode == "I" and image.getextrema()[1] > 65535):
        # floating-point or 32-bit levels have no one scale to 8 bits (as 8 bits they came
        # back black)
        raise Unreadable(f"{_called(source)}: a {'floating-point' if image.mode == 'F' else '32-bit'}"
                         " photo; save it with 8 or 16 bits a channel")
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = datamanager.as_rgb(image)
    meta = {"icc_profile": profile, "exif": exif}
    return image, {k: v for k, v in meta.items() if v}


SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L")


def read_mask(path, size):
    """A mask image as bool [height, width], True where it is white (over half its range in
    greyscale). Transparent pixels are not hole: a hole painted on a transparent layer
    works. Its size is checked before its pixels are decoded."""
    def wrong_size(width, height):
        return InpaintError(f"{_called(path)}: the mask is {width}x{height} but its photo is "
                            f"{size[0]}x{size[1]}; a mask must have its photo's size")
    try:
        with Image.open(path) as image:
            if sorted(image.size) != sorted(size):  # before decoding: a 150-megapixel "mask"
                raise wrong_size(*image.size)
            image = ImageOps.exif_transpose(image)
            if image.mode in SIXTEEN_BIT:
                grey = np.asarray(image, np.int64) > (np.iinfo(np.uint16).max // 2)
            else:
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    rgba = image.convert("RGBA")
                    image = Image.new("RGB", rgba.size)
                    image.paste(rgba, mask=rgba.getchannel("A"))
                grey = np.asarray(image.convert("L")) > 127
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise InpaintError(f"{_called(path)}: not a mask image Pillow can read "
                           f"({type(error).__name__}); give a PNG of the photo's size, white "
                           "where the hole is") from None
    if grey.shape != (size[1], size[0]):
        raise wrong_size(grey.shape[1], grey.shape[0])
    return grey


def _squares(source, image, crop, config):
    """The squares the model sees: the framed faces, the centred square, or those given;
    with a note when faces were asked for and none was found."""
    width, height = image.size
    side = min(width, height)
    centred = ((width - side) // 2, (height - side) // 2, side)
    if crop == "center":
        return [centred], None
    if crop == "face":
        framing = faces.Framing(*config.framing) if config.framing else faces.STANDARD
        found = faces.find_faces(image)
        if len(found) > MAX_SQUARES:  # a crowd: its largest faces
            found = sorted(found, key=lambda f: f.box[2] * f.box[3])[-MAX_SQUARES:]
        if found:
            return [faces.square_for(face, framing, image.size) for face in found], None
        return [centred], f"{_called(source)}: no face found; restoring its centred square"
    for left, top, side in crop:
        if left < 0 or top < 0 or side < 1 or left + side > width or top + side > height:
            raise InpaintError(
                f"--crop {left},{top},{side}: the square is not inside {_called(source)} "
                f"({width}x{height}); LEFT,TOP,SIDE must fit in the photo",
                page=f"the square at {left},{top} of side {side} is not inside the photo "
                     f"({width}x{height}); move it or make it smaller")
    return list(crop), None


def _model_view(image, crop, size):
    left, top, side = crop
    square = datamanager.as_rgb(image.crop((left, top, left + side, top + side)))
    if side != size:
        square = square.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(square, np.uint8)


def plan(job, config, crop="face", hole_kind=None, seed=0):
    """Reads one photo and its hole and checks them; a Plan with no squares for an empty
    mask. With a named hole every square gets it; with a mask each square restores the
    part of the hole inside it, and every hole pixel must lie in some square. Raises
    Unreadable for a photo that cannot be read."""
    image, meta = read_photo(job.photo)
    crops, note = _squares(job.photo, image, crop, config)
    size = config.img_size
    holes = []
    if job.mask is not None:
        full = read_mask(job.mask, image.size)
        if not full.any():
            return Plan(image, [], meta, note)
        covered = np.zeros_like(full)
        for left, top, side in crops:
            covered[top:top + side, left:left + side] = True
        if np.any(full & ~covered):
            where = ("the square the model sees" if len(crops) == 1
                     else "every square the model sees")
            raise InpaintError(
                f"{_called(job.mask)}: the hole reaches outside {where} "
                f"({'; '.join('left {}, top {}, side {}'.format(*c) for c in crops)}); pass "
                "--crop LEFT,TOP,SIDE with a square of the photo that holds the whole hole",
                page="the hole reaches outside the square the model sees; move or enlarge "
                     "the square (or add one) so that it holds the whole hole")
        for left, top, side in crops:
            hole = full[top:top + side, left:left + side]
            if hole.any():
                # A model pixel is hidden if any photo pixel under it is: nothing hidden leaks.
                model_hole = np.asarray(Image.fromarray(hole.astype(np.uint8) * 255)
                                        .resize((size, size), Image.Resampling.BOX)) > 0
                holes.append(((left, top, side), hole, model_hole))
    else:
        for index, (left, top, side) in enumerate(crops):
            model_hole = datamanager.make_masks(hole_kind, 1, size,
                                                [seed, index]).numpy()[0, ..., 0] > 0.5
            hole = np.asarray(Image.fromarray(model_hole.astype(np.uint8) * 255)
                              .resize((side, side), Image.Resampling.NEAREST)) > 0
            holes.append(((left, top, side), hole, model_hole))
    squares = []
    for crop_, hole, model_hole in holes:
        if hole.mean() > MAX_HOLE:
            raise InpaintError(
                f"{_called(job.mask or job.photo)}: the hole covers {hole.mean():.0%} of the "
                f"square the model sees; at most {MAX_HOLE:.0%} can be restored (pass --crop "
                "with a larger square)",
                page=f"the hole covers {hole.mean():.0%} of the square the model sees; at most "
                     f"{MAX_HOLE:.0%} can be restored: make the square larger or the hole "
                     "smaller")
        squares.append(Square(crop_, hole, _model_view(image, crop_, size),
                              model_hole.astype(np.float32)[..., None]))
    return Plan(image, squares, meta, note)


def poisson_side(config):
    """The side the Poisson blend solves at: the restoration has no detail finer than the
    model's pixels, so twice its side loses nothing and bounds the solve's cost."""
    return 2 * config.img_size


def _paste_square(pixels, channels, square, restored, config, poisson, grey):
    """Blends one square's restoration into the photo's pixels, in place.

    Feathered: the blend weights are the training composite's at the model's side, resized
    to the crop: 1 in the hole, fading across the band, exactly 0 elsewhere. Poisson: the
    restoration's gradients solved into the hole. Either way every other pixel keeps its
    bytes."""
    left, top, side = square.crop
    fill = np.asarray(Image.fromarray(outputs.to_uint8(restored)).resize(
        (side, side), Image.Resampling.LANCZOS), np.float32)
    if grey:  # the nearest grey picture, as a grey run's generate() gives
        fill = np.repeat(fill.mean(axis=-1, keepdims=True), channels, axis=-1)
    region = pixels[top:top + side, left:left + side]
    colour = region.reshape(side, side, -1)[..., :channels].astype(np.float32)
    if poisson:
        blended = poisson_blend(colour, fill, square.hole, poisson_side(config))
        changed = square.hole
    else:
        alpha = np.asarray(tf_process.composite_weights(tf.constant(square.model_hole[None]),
                                                        config))[0, ..., 0]
        alpha = np.asarray(Image.fromarray(alpha).resize((side, side),
                                                         Image.Resampling.BILINEAR))
        alpha = np.maximum(alpha, square.hole)[..., None]
        blended, changed = colour * (1.0 - alpha) + fill * alpha, alpha[..., 0] > 0
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        region[changed] = blended[changed][:, 0]
    else:
        region[..., :channels][changed] = blended[changed]


def paste(plan_, restorations, config, poisson=False):
    """The photo with each square's restoration blended in at full resolution, in the
    photo's mode; squares later in the list are pasted over earlier ones."""
    pixels = np.array(plan_.image)
    channels = 1 if plan_.image.mode in ("L", "LA") else 3
    grey = plan_.grey
    for square, restored in zip(plan_.squares, restorations):
        _paste_square(pixels, channels, square, restored, config, poisson, grey)
    return Image.fromarray(pixels)


def paste_telea(plan_):
    """The photo with each square's hole filled by OpenCV's Telea at the photo's own
    resolution, what a person could pick instead of the model; nothing else changes."""
    import references  # OpenCV is loaded only when the classical fill is asked for
    pixels = np.array(plan_.image)
    channels = 1 if plan_.image.mode in ("L", "LA") else 3
    for square in plan_.squares:
        left, top, side = square.crop
        region = pixels[top:top + side, left:left + side]
        colour = region if region.ndim == 2 else region[..., :channels]
        filled = references.telea_photo(colour, square.hole).reshape(colour.shape)
        colour[square.hole] = filled[square.hole]
    return Image.fromarray(pixels)


def fill_squares(restore, config, plans):
    """The model's restorations of every square of checked plans (non-empty holes), one
    forward pass for them all: a list per plan of float [size, size, 3]."""
    squares = [square for p in plans for square in p.squares]
    _, _, restored, _ = restore(np.stack([s.model_input for s in squares]),
                                np.stack([s.model_hole for s in squares]))
    restored = iter(restored.numpy())
    return [[next(restored) for _ in p.squares] for p in plans]


def restore_plans(restore, config, plans, poisson=False):
    """The photos of checked plans with their restorations pasted in. --mode inpaint and the
    web page's server both restore through fill and paste."""
    return [paste(p, fills, config, poisson)
            for p, fills in zip(plans, fill_squares(restore, config, plans))]


def inpaint(restore, config, jobs, out_dir, crop="face", hole_kind=None, seed=0, poisson=False):
    """Restores every job's photo and writes NAME.png and NAME_compare.png under out_dir.
    Every photo is read and checked before anything is written, so a bad mask or flag
    stops the run with nothing half-done. Returns the count of photos restored."""
    def plan_of(index):
        return plan(jobs[index], config, crop, hole_kind, seed + index)

    restorable, unchanged = [], []
    for index, job in enumerate(jobs):
        try:
            checked = plan_of(index)
        except Unreadable as error:
            warnings.warn(f"skipped {error}")
            continue
        if checked.note:
            print(checked.note, flush=True)
        if not checked.squares:
            warnings.warn(f"{job.mask}: the mask is empty (no white pixel); {job.photo} is "
                          "copied unchanged")
            unchanged.append(index)
        else:
            restorable.append(index)
    for index in unchanged:
        unchanged_plan = plan_of(index)
        outputs.save_photo(unchanged_plan.image, _output_path(out_dir, jobs[index].name),
                           unchanged_plan.meta)
    for start in range(0, len(restorable), BATCH):
        chunk = [(jobs[i], plan_of(i)) for i in restorable[start:start + BATCH]]
        results = restore_plans(restore, config, [p for _, p in chunk], poisson)
        for (job, p), result in zip(chunk, results):
            path = _output_path(out_dir, job.name)
            outputs.save_photo(result, path, p.meta)
            outputs.save_comparison([p.image, _masked(p), result],
                                    _output_path(out_dir, job.name + "_compare"))
            faces_ = f" ({len(p.squares)} squares)" if len(p.squares) > 1 else ""
            print(f"restored {job.photo}{faces_} -> {path}", flush=True)
    skipped = len(jobs) - len(restorable) - len(unchanged)
    print(f"{len(restorable)} photo(s) restored into {out_dir}"
          + (f", {len(unchanged)} with an empty mask copied unchanged" if unchanged else "")
          + (f", {skipped} unreadable skipped" if skipped else ""), flush=True)
    return len(restorable)


def _output_path(out_dir, name):
    path = os.path.join(out_dir, name + ".png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _masked(plan_):
    """The photo with its holes blacked out, as the model is given them."""
    pixels = np.array(plan_.image)
    channels = 1 if plan_.image.mode in ("L", "LA") else 3
    for square in plan_.squares:
        left, top, side = square.crop
        region = pixels[top:top + side, left:left + side]
        if pixels.ndim == 2:
            region[square.hole] = 0
        else:
            region[..., :channels][square.hole] = 0
    return Image.fromarray(pixels)
