"""Restoring the hidden part of a user's own photos with a trained run: reading each photo and
its hole, the square the model sees, and pasting the restoration back into the photo at its
full resolution, so that nothing outside the hole (and its blend band) changes."""
import dataclasses
import io
import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

import datamanager
import outputs
import tf_process
from poisson_blend import poisson_blend

MASK_SUFFIX = "_mask"  # LaMa's convention: photo.jpg's hole is photo_mask.png beside it
MAX_HOLE = 0.75  # of the crop: beyond it too little context is left to restore from
BATCH = 16  # photos per forward pass


class InpaintError(Exception):
    """A problem with the user's photos, masks or flags; run.py prints it as one line, the
    web page's server answers it with a 400."""


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
class Plan:
    """A photo read and checked: the square the model sees and the hole in it."""
    image: Image.Image  # upright, in the mode it is written back in
    crop: tuple  # (left, top, side) in the photo's pixels
    hole: np.ndarray  # bool [side, side]: the hole at the crop's resolution
    model_input: np.ndarray | None  # uint8 [size, size, 3]: the crop as the model sees it
    model_hole: np.ndarray | None  # float32 [size, size, 1]; both None for an empty hole


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


def parse_crop(text):
    """"LEFT,TOP,SIDE" (--crop, and the server's crop field) as three ints."""
    try:
        left, top, side = (int(v) for v in text.split(","))
    except ValueError:
        raise InpaintError(f"expected LEFT,TOP,SIDE in pixels, got {text!r}") from None
    return left, top, side


def read_photo(source):
    """A photo, upright as a viewer shows it and loaded; raises Unreadable."""
    try:
        with Image.open(source) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise Unreadable(f"{_called(source)}: not a photo Pillow can read "
                         f"({type(error).__name__}: {error})") from None
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = datamanager.as_rgb(image)
    return image


def read_mask(path, size):
    """A mask image as bool [height, width], True where it is white (> 127 in greyscale).
    Transparent pixels are not hole: a hole painted on a transparent layer works."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.new("RGB", rgba.size)
                image.paste(rgba, mask=rgba.getchannel("A"))
            grey = np.asarray(image.convert("L"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InpaintError(f"{_called(path)}: not a mask image Pillow can read ({error}); give "
                           "a PNG of the photo's size, white where the hole is") from None
    if grey.shape != (size[1], size[0]):
        raise InpaintError(f"{_called(path)}: the mask is {grey.shape[1]}x{grey.shape[0]} but its "
                           f"photo is {size[0]}x{size[1]}; a mask must have its photo's size")
    return grey > 127


def _crop_box(photo, size, crop):
    width, height = size
    if crop is None:
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side
    left, top, side = crop
    if left < 0 or top < 0 or side < 1 or left + side > width or top + side > height:
        raise InpaintError(f"--crop {left},{top},{side}: the square is not inside {photo} "
                           f"({width}x{height}); LEFT,TOP,SIDE must fit in the photo")
    return left, top, side


def plan(job, config, crop=None, hole_kind=None, seed=0):
    """Reads one photo and its hole and checks them; a Plan whose hole is empty for an empty
    mask. Raises Unreadable for a photo that cannot be read."""
    image = read_photo(job.photo)
    left, top, side = _crop_box(_called(job.photo), image.size, crop)
    size = config.img_size
    if job.mask is not None:
        full = read_mask(job.mask, image.size)
        hole = full[top:top + side, left:left + side]
        if hole.sum() < full.sum():
            raise InpaintError(f"{_called(job.mask)}: the hole reaches outside the square the "
                               f"model sees (left {left}, top {top}, side {side}); pass --crop "
                               "LEFT,TOP,SIDE with a square of the photo that holds the whole hole")
        # A model pixel is hidden if any photo pixel under it is: nothing the user hid leaks.
        model_hole = np.asarray(Image.fromarray(hole.astype(np.uint8) * 255)
                                .resize((size, size), Image.Resampling.BOX)) > 0
    else:
        model_hole = datamanager.make_masks(hole_kind, 1, size, [seed, 0]).numpy()[0, ..., 0] > 0.5
        hole = np.asarray(Image.fromarray(model_hole.astype(np.uint8) * 255)
                          .resize((side, side), Image.Resampling.NEAREST)) > 0
    if not hole.any():
        return Plan(image, (left, top, side), hole, None, None)
    if hole.mean() > MAX_HOLE:
        raise InpaintError(f"{_called(job.mask or job.photo)}: the hole covers {hole.mean():.0%} "
                           f"of the square the model sees; at most {MAX_HOLE:.0%} can be "
                           "restored (pass --crop with a larger square)")
    square = datamanager.as_rgb(image.crop((left, top, left + side, top + side)))
    if side != size:
        square = square.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return Plan(image, (left, top, side), hole, np.asarray(square, np.uint8),
                model_hole.astype(np.float32)[..., None])


def paste(plan_, restored, config, poisson=False):
    """The photo with the restoration blended in at full resolution, in the photo's mode.

    Feathered: the blend weights are the training composite's at the model's side, resized
    to the crop: 1 in the hole, fading across the band, exactly 0 elsewhere. Poisson: the
    restoration's gradients solved into the hole at the photo's resolution. Either way every
    other pixel keeps its bytes."""
    left, top, side = plan_.crop
    fill = Image.fromarray(outputs.to_uint8(restored)).resize((side, side),
                                                             Image.Resampling.LANCZOS)
    pixels = np.array(plan_.image)
    channels = 1 if plan_.image.mode in ("L", "LA") else 3
    if channels == 1:
        fill = fill.convert("L")
    fill = np.asarray(fill, np.float32).reshape(side, side, channels)
    region = pixels[top:top + side, left:left + side]
    colour = region.reshape(side, side, -1)[..., :channels].astype(np.float32)
    if poisson:
        blended, changed = poisson_blend(colour, fill, plan_.hole), plan_.hole
    else:
        alpha = np.asarray(tf_process.composite_weights(tf.constant(plan_.model_hole[None]),
                                                        config))[0, ..., 0]
        alpha = np.asarray(Image.fromarray(alpha).resize((side, side),
                                                         Image.Resampling.BILINEAR))
        alpha = np.maximum(alpha, plan_.hole)[..., None]
        blended, changed = colour * (1.0 - alpha) + fill * alpha, alpha[..., 0] > 0
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if pixels.ndim == 2:
        region[changed] = blended[changed][:, 0]
    else:
        region[..., :channels][changed] = blended[changed]
    return Image.fromarray(pixels)


def restore_plans(restore, config, plans, poisson=False):
    """The photos of checked plans (non-empty holes) with their restorations pasted in: one
    forward pass for them all. --mode inpaint and the web page's server both restore here."""
    _, _, restored, _ = restore(np.stack([p.model_input for p in plans]),
                                np.stack([p.model_hole for p in plans]))
    return [paste(p, fill, config, poisson) for p, fill in zip(plans, restored.numpy())]


def inpaint(restore, config, jobs, out_dir, crop=None, hole_kind=None, seed=0, poisson=False):
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
        if checked.model_input is None:
            warnings.warn(f"{job.mask}: the mask is empty (no white pixel); {job.photo} is "
                          "copied unchanged")
            unchanged.append(index)
        else:
            restorable.append(index)
    for index in unchanged:
        outputs.save_photo(plan_of(index).image, _output_path(out_dir, jobs[index].name))
    for start in range(0, len(restorable), BATCH):
        chunk = [(jobs[i], plan_of(i)) for i in restorable[start:start + BATCH]]
        results = restore_plans(restore, config, [p for _, p in chunk], poisson)
        for (job, p), result in zip(chunk, results):
            path = _output_path(out_dir, job.name)
            outputs.save_photo(result, path)
            outputs.save_comparison([p.image, _masked(p), result],
                                    _output_path(out_dir, job.name + "_compare"))
            print(f"restored {job.photo} -> {path}", flush=True)
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
    """The photo with its hole blacked out, as the model is given it."""
    left, top, side = plan_.crop
    pixels = np.array(plan_.image)
    region = pixels[top:top + side, left:left + side]
    channels = 1 if plan_.image.mode in ("L", "LA") else 3
    if pixels.ndim == 2:
        region[plan_.hole] = 0
    else:
        region[..., :channels][plan_.hole] = 0
    return Image.fromarray(pixels)
