"""Restoring the hidden part of a user's own photos with a trained run: reading each photo and
its hole once, the squares the model sees (framed as in training, levelled and padded where
a face is turned or at the edge), and pasting each restoration back into the photo at its
full resolution, so that nothing outside the hole (and its blend band) changes."""
import dataclasses
import io
import os
import shutil
import tempfile
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image

import faces
import holes
import model
import photo_io
from poisson_blend import MAX_EXACT, poisson_blend

MASK_SUFFIX = "_mask"  # LaMa's convention: photo.jpg's hole is photo_mask.png beside it
MAX_HOLE = 0.75  # of the square: beyond it too little context is left to restore from
BATCH = 16  # photos per forward pass
FEATHERED = ("the Poisson blend would solve over {:,} pixels along this hole's edge (thin "
             "strokes, or a large photo at a small model's side); it was feathered instead")


class InpaintError(photo_io.PhotoError):
    """A problem with the user's photos, masks or flags (PhotoError: one line, and the page's
    words in `page`)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One photo to restore: where it is, where its hole comes from, where the output goes.
    photo and mask are paths, or for the server's uploads file objects whose `name` is what
    errors call them."""
    photo: str | io.BytesIO
    mask: str | io.BytesIO | None  # a mask image, or None for the named hole
    name: str  # output name without extension, relative to the output folder


@dataclasses.dataclass
class Square:
    """One square of the photo the model sees, and the hole in it."""
    crop: tuple  # (left, top, side, angle) in the photo's pixels (faces.square_for)
    box: tuple  # (left, top, right, bottom): the photo's pixels the square covers
    hole: np.ndarray  # bool [bottom - top, right - left]: the hole in those pixels
    model_input: np.ndarray  # uint8 [size, size, 3]: the square as the model sees it
    model_hole: np.ndarray  # uint8 [size, size, 1], 255 = hole: the contract's mask


@dataclasses.dataclass
class Plan:
    """A photo read and checked: the squares to restore (none for an empty mask)."""
    image: Image.Image  # upright, in the mode it is written back in (photo_io.read_photo)
    squares: list
    meta: dict  # what the output keeps of the photo: its ICC profile and EXIF
    note: str | None = None  # one line for the user, e.g. that no face was found

    @property
    def grey(self):
        """A grey photo (mode L or 16-bit, or R = G = B everywhere) gets a grey restoration
        whatever the run was trained on: a colour run would paint coloured eyes into it."""
        if photo_io.colour_channels(self.image) == 1:
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
    files = photo_io.find_images(path, flag="--input")
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


COMPARE_SUFFIX = "_compare"


def output_names(jobs):
    """Each job's output name: its photo's name without the extension, or, where two jobs'
    files would be one (a.jpg and a.png; b_compare.jpg and b.jpg's comparison; names that
    differ only in case, one file on macOS and Windows), with the extension kept in it
    (a_jpg, a_png). Nothing is ever written over another output."""
    def files(name):
        return {name.lower(), (name + COMPARE_SUFFIX).lower()}

    names = [job.name for job in jobs]
    for _ in range(2):  # a kept extension can clash once more (a_jpg.png beside a.jpg)
        owners = {}
        for index, name in enumerate(names):
            for file in files(name):
                owners.setdefault(file, []).append(index)
        clashing = sorted({i for owner in owners.values() if len(owner) > 1 for i in owner})
        if not clashing:
            return names
        for index in clashing:
            extension = os.path.splitext(photo_io.called(jobs[index].photo))[1]
            names[index] = names[index] + "_" + extension.lstrip(".").lower()
    raise InpaintError(f"{photo_io.called(jobs[clashing[0]].photo)}: its output would overwrite "
                       "another photo's, even with its extension kept; rename it")


CROPS = ("face", "center")
# Squares one photo may name: a group photo has a few dozen faces at most, and each square
# is a forward pass, so an unbounded list would be unbounded work.
MAX_SQUARES = 64


def parse_crop(text):
    """--crop and the server's crop field: "face", "center", or one to MAX_SQUARES squares
    "LEFT,TOP,SIDE" or "LEFT,TOP,SIDE,DEGREES" (turned about its centre) separated by ";"
    (the page sends back the squares /api/faces gave it)."""
    if text in CROPS:
        return text
    if text.count(";") >= MAX_SQUARES:
        raise InpaintError(f"{text.count(';') + 1} squares given; at most {MAX_SQUARES} can be "
                           "restored at once")
    squares = []
    for part in text.split(";"):
        values = part.split(",")
        try:
            if len(values) not in (3, 4):
                raise ValueError
            angle = float(values[3]) if len(values) == 4 else 0.0
            if not -180 <= angle <= 180:
                raise ValueError
            squares.append((*(int(v) for v in values[:3]), angle))
        except ValueError:
            raise InpaintError(f"expected face, center or LEFT,TOP,SIDE[,DEGREES] in pixels, "
                               f"got {text[:100]!r}") from None
    return squares


def crop_text(square):
    """A square as parse_crop reads it (and the X-Squares header sends it)."""
    left, top, side, angle = square
    return f"{left},{top},{side}" + (f",{angle:g}" if angle else "")


def _squares(source, image, crop, config):
    """The squares the model sees: the framed faces, the centred square, or those given;
    with a note when faces were asked for and none was found."""
    width, height = image.size
    side = min(width, height)
    centred = ((width - side) // 2, (height - side) // 2, side, 0.0)
    if crop == "center":
        return [centred], None
    if crop == "face":
        framing = faces.Framing(*config.framing) if config.framing else faces.STANDARD
        found = faces.find_faces(image)
        if len(found) > MAX_SQUARES:  # a crowd: its largest faces
            found = sorted(found, key=lambda f: f.box[2] * f.box[3])[-MAX_SQUARES:]
        if found:
            return [faces.square_for(face, framing) for face in found], None
        return [centred], f"{photo_io.called(source)}: no face found; restoring its centred square"
    for square in crop:
        left, top, side, _ = square
        x0, y0, x1, y1 = faces.box(square, image.size)
        if side < 1 or side > 4 * max(width, height) or x0 >= x1 or y0 >= y1:
            raise InpaintError(
                f"--crop {crop_text(square)}: the square does not overlap {photo_io.called(source)} "
                f"({width}x{height}) or is over 4 times its size; LEFT,TOP,SIDE must cover part "
                "of the photo",
                page=f"the square at {left},{top} of side {side} does not overlap the photo "
                     f"({width}x{height}); move it or make it smaller")
    return list(crop), None


def _in_photo(picture, square, size, photo_size, resample):
    """A bool or float picture of the model's square over its box in the photo."""
    if picture.dtype == bool:
        laid = faces.to_photo(Image.fromarray(picture.astype(np.uint8) * 255), square,
                              photo_size, Image.Resampling.NEAREST)
        return np.asarray(laid) > 127
    return np.asarray(faces.to_photo(Image.fromarray(picture.astype(np.float32)), square, photo_size, resample))


def plan(job, config, crop="face", hole_kind=None, seed=0):
    """Reads one photo and its hole, once, and checks them; a Plan with no squares for an
    empty mask. With a named hole every square gets it; with a mask each square restores
    the part of the hole inside it, and every hole pixel must lie in some square. Raises
    photo_io.Unreadable for a photo that cannot be read."""
    image, meta = photo_io.read_photo(job.photo)
    crops, note = _squares(job.photo, image, crop, config)
    size = config.img_size
    rgb = photo_io.as_rgb(image)
    everywhere = np.ones((size, size), bool)
    footprints = [_in_photo(everywhere, square, size, image.size, None) for square in crops]
    holes_ = []
    if job.mask is not None:
        full = photo_io.read_mask(job.mask, image.size)
        if not full.any():
            return Plan(image, [], meta, note)
        covered = np.zeros_like(full)
        for square, footprint in zip(crops, footprints):
            x0, y0, x1, y1 = faces.box(square, image.size)
            covered[y0:y1, x0:x1] |= footprint
        if np.any(full & ~covered):
            where = ("the square the model sees" if len(crops) == 1
                     else "every square the model sees")
            raise InpaintError(
                f"{photo_io.called(job.mask)}: the hole reaches outside {where} "
                f"({'; '.join(crop_text(c) for c in crops)}); pass --crop LEFT,TOP,SIDE with "
                "a square of the photo that holds the whole hole",
                page="the hole reaches outside the square the model sees; move or enlarge "
                     "the square (or add one) so that it holds the whole hole")
        mask_image = Image.fromarray(full.astype(np.uint8) * 255)
        for square, footprint in zip(crops, footprints):
            x0, y0, x1, y1 = faces.box(square, image.size)
            hole = full[y0:y1, x0:x1] & footprint
            if hole.any():
                # A model pixel is hidden if any photo pixel under it is: nothing hidden leaks.
                model_hole = np.asarray(faces.view(mask_image, square, size,
                                                   Image.Resampling.BOX)) > 0
                holes_.append((square, hole, footprint, model_hole))
    else:
        for index, (square, footprint) in enumerate(zip(crops, footprints)):
            model_hole = holes.make_masks(hole_kind, 1, size, [seed, index]).numpy()[0, ..., 0] > 0.5
            hole = _in_photo(model_hole, square, size, image.size, None) & footprint
            holes_.append((square, hole, footprint, model_hole))
    squares = []
    for square, hole, footprint, model_hole in holes_:
        share = hole.sum() / footprint.sum()
        if share > MAX_HOLE:
            raise InpaintError(
                f"{photo_io.called(job.mask or job.photo)}: the hole covers {share:.0%} of the "
                f"square the model sees; at most {MAX_HOLE:.0%} can be restored (pass --crop "
                "with a larger square)",
                page=f"the hole covers {share:.0%} of the square the model sees; at most "
                     f"{MAX_HOLE:.0%} can be restored: make the square larger or the hole "
                     "smaller")
        squares.append(Square(square, faces.box(square, image.size), hole,
                              np.asarray(faces.view(rgb, square, size), np.uint8),
                              model_hole.astype(np.uint8)[..., None] * 255))
    return Plan(image, squares, meta, note)


def poisson_side(config):
    """The side the Poisson blend solves at: the restoration has no detail finer than the
    model's pixels, so twice its side loses nothing and bounds the solve's cost."""
    return 2 * config.img_size


def _paste_square(pixels, image, square, fill, config, poisson, grey):
    """Blends one square's restoration (uint8 [size, size, 3]) into the photo's pixels, in
    place; False when a Poisson blend was asked for and the hole was too intricate for it.

    Feathered: the blend weights are the training composite's at the model's side, laid
    over the photo: 1 in the hole, fading across the band, exactly 0 elsewhere. Poisson: the
    restoration's gradients solved into the hole. Either way every other pixel keeps its
    value, at the photo's own depth (8 or 16 bits) and with its alpha."""
    x0, y0, x1, y1 = square.box
    size = config.img_size
    channels, top = photo_io.colour_channels(image), photo_io.levels(image)
    fill = np.asarray(faces.to_photo(Image.fromarray(fill), square.crop, image.size,
                                     Image.Resampling.LANCZOS), np.float32) * (top / 255)
    if grey:  # the nearest grey picture, as a grey run's generate() gives
        fill = np.repeat(fill.mean(axis=-1, keepdims=True), channels, axis=-1)
    region = pixels[y0:y1, x0:x1]
    colour = region.reshape(y1 - y0, x1 - x0, -1)[..., :channels].astype(np.float32)
    blended = poisson_blend(colour, fill, square.hole, poisson_side(config)) if poisson else None
    changed, feathered = square.hole, blended is None
    if feathered:
        weights = model.composite_weights(tf.constant(square.model_hole[None] / 255, tf.float32),
                                          config)
        alpha = _in_photo(np.asarray(weights)[0, ..., 0], square.crop, size, image.size,
                          Image.Resampling.BILINEAR)
        alpha = np.clip(np.maximum(alpha, square.hole), 0, 1)[..., None]
        blended, changed = colour * (1.0 - alpha) + fill * alpha, alpha[..., 0] > 0
    blended = np.clip(np.rint(blended), 0, top).astype(pixels.dtype)
    if pixels.ndim == 2:
        region[changed] = blended[changed][:, 0]
    else:
        region[..., :channels][changed] = blended[changed]
    return not (poisson and feathered)


def paste(plan_, fills, config, poisson=False, before_each=None):
    """The photo with each square's restoration blended in at full resolution, in the
    photo's mode, and a note when a hole was feathered instead of Poisson-blended; squares
    later in the list are pasted over earlier ones. `before_each` is called before each
    square's blend (the server stops there when its client has gone)."""
    pixels = np.array(plan_.image)
    grey = plan_.grey
    blended = []
    for square, fill in zip(plan_.squares, fills):
        if before_each:
            before_each()
        blended.append(_paste_square(pixels, plan_.image, square, fill, config, poisson, grey))
    note = None if all(blended) else FEATHERED.format(MAX_EXACT)
    return Image.fromarray(pixels), note


def paste_telea(plan_):
    """The photo with each square's hole filled by OpenCV's Telea at the photo's own
    resolution, what a person could pick instead of the model; nothing else changes."""
    import references  # OpenCV is loaded only when the classical fill is asked for
    pixels = np.array(plan_.image)
    channels, top = photo_io.colour_channels(plan_.image), photo_io.levels(plan_.image)
    for square in plan_.squares:
        x0, y0, x1, y1 = square.box
        region = pixels[y0:y1, x0:x1]
        colour = region if region.ndim == 2 else region[..., :channels]
        eight_bit = (colour // 257).astype(np.uint8) if top > 255 else colour
        filled = references.telea_photo(eight_bit, square.hole).reshape(colour.shape)
        colour[square.hole] = filled[square.hole].astype(colour.dtype) * (top // 255)
    return Image.fromarray(pixels)


def fill_squares(restore, plans):
    """The model's pictures (uint8 [size, size, 3]) of every square of checked plans (with
    non-empty holes), through the contract in one forward pass: a list per plan."""
    squares = [square for p in plans for square in p.squares]
    restored = iter(restore(np.stack([s.model_input for s in squares]),
                            np.stack([s.model_hole for s in squares]))["fill"])
    return [[next(restored) for _ in p.squares] for p in plans]


def inpaint(restore, config, jobs, out_dir, crop="face", hole_kind=None, seed=0, poisson=False):
    """Restores every job's photo and writes NAME.png and NAME_compare.png under out_dir.
    Each photo is read once. What is written is staged beside out_dir and moved in only
    when every photo has been checked and restored, so a bad mask or flag stops the run
    with nothing half-done. Returns the count of photos restored."""
    names = output_names(jobs)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    # beside out_dir, on its file system: moved in with a rename; out_dir itself is made
    # only once everything is restored
    staging = tempfile.mkdtemp(prefix=".inpaint-", dir=parent)
    try:
        restored, unchanged, skipped, written = 0, 0, 0, []

        def stage(image, name, meta=None):
            path = os.path.join(staging, name + ".png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            photo_io.save_png(image, path, meta)
            written.append(name + ".png")

        for start in range(0, len(jobs), BATCH):
            chunk = []
            for index in range(start, min(start + BATCH, len(jobs))):
                job = jobs[index]
                try:
                    checked = plan(job, config, crop, hole_kind, seed + index)
                except photo_io.Unreadable as error:
                    warnings.warn(f"skipped {error}")
                    skipped += 1
                    continue
                if checked.note:
                    print(checked.note, flush=True)
                if checked.squares:
                    chunk.append((job, names[index], checked))
                    continue
                warnings.warn(f"{job.mask}: the mask is empty (no white pixel); {job.photo} is "
                              "copied unchanged")
                stage(checked.image, names[index], checked.meta)
                unchanged += 1
            if not chunk:
                continue
            fills = fill_squares(restore, [p for _, _, p in chunk])
            for (job, name, p), fill in zip(chunk, fills):
                result, note = paste(p, fill, config, poisson)
                if note:
                    print(f"{job.photo}: {note}", flush=True)
                stage(result, name, p.meta)
                stage(photo_io.comparison([p.image, _masked(p), result]), name + COMPARE_SUFFIX)
                squares = f" ({len(p.squares)} squares)" if len(p.squares) > 1 else ""
                print(f"restored {job.photo}{squares} -> {os.path.join(out_dir, name + '.png')}",
                      flush=True)
                restored += 1
        for name in written:
            final = os.path.join(out_dir, name)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(os.path.join(staging, name), final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{restored} photo(s) restored into {out_dir}"
          + (f", {unchanged} with an empty mask copied unchanged" if unchanged else "")
          + (f", {skipped} unreadable skipped" if skipped else ""), flush=True)
    return restored


def _masked(plan_):
    """The photo with its holes blacked out, as the model is given them."""
    pixels = np.array(plan_.image)
    channels = photo_io.colour_channels(plan_.image)
    for square in plan_.squares:
        x0, y0, x1, y1 = square.box
        region = pixels[y0:y1, x0:x1]
        if pixels.ndim == 2:
            region[square.hole] = 0
        else:
            region[..., :channels][square.hole] = 0
    return Image.fromarray(pixels)
