"""How well a run restores faces that are not centred, upright and inside the photo: each of
its test faces pasted into a photo upright and inside it, at a random place and scale, half
over the photo's edge, larger than the photo, and turned by 30 degrees; the centre hole in
face coordinates (turned with the face) as the mask; restored with --crop face (Poisson)
and scored in face coordinates (the face's own square cut from the result, turned back and
reduced to the run's side) against the original face. The same, framed as before this
existed (the square moved inside the photo, never turned), shows what the framing gains.

    python framing_quality.py RUN_DIR       # the run's own test faces, from its cache
"""
import argparse
import glob
import io
import json
import os
import sys

import numpy as np
import tensorflow as tf
from PIL import Image

import datamanager
import faces
import holes
import inpaint
import losses
import model
import photo_io
import tf_environment  # noqa: F401  (before TensorFlow: the project's oneDNN default)

PHOTO = (1600, 1200)
BACKGROUND = (118, 132, 150)
# (centre x, centre y, side) as fractions of the photo's width, and the turn in degrees
PLACES = {
    "upright, inside": lambda rng: (0.5, 0.375, 0.3, 0.0),
    "random place and scale": lambda rng: (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.55),
                                           rng.uniform(0.15, 0.35), 0.0),
    "over the right edge (a fifth outside)": lambda rng: (1 - 0.3 * 0.3, 0.375, 0.3, 0.0),
    "larger than the photo": lambda rng: (0.5, 0.375, 0.95, 0.0),
    "turned 30 degrees": lambda rng: (0.5, 0.375, 0.3, 30.0),
}


def _placed(picture, photo, centre, side, degrees, resample):
    """Pastes `picture` (a square Pillow image) at `side`, turned by `degrees`
    counterclockwise, centred on `centre`; returns the face's own square."""
    layer = picture.convert("RGBA").resize((side, side), resample)
    layer = layer.rotate(degrees, resample, expand=True)
    photo.paste(layer, (round(centre[0] - layer.width / 2), round(centre[1] - layer.height / 2)),
                layer)
    return (round(centre[0] - side / 2), round(centre[1] - side / 2), side, -degrees)


def _buffer(image, name):
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    buffer.seek(0)
    buffer.name = name
    return buffer


def _old_square(square, photo_size):
    """The framing before: upright, moved inside the photo and shrunk to fit it."""
    left, top, side, _ = square
    side = min(side, *photo_size)
    return (min(max(left, 0), photo_size[0] - side), min(max(top, 0), photo_size[1] - side),
            side, 0.0)


def measure(run_dir, seed=0):
    config = model.load_config(run_dir)
    size = config.img_size
    [index] = glob.glob(os.path.join(run_dir, "cache", f"images_{size}px_*.u8.json"))
    with open(index) as f:
        images = datamanager.ImageSet(index[:-len(".json")], json.load(f)["count"], size)
    split = config.split or {"test_ratio": 0.1}
    _, test_idx = datamanager.split(images.count, split["test_ratio"])
    generator = model.build_generator(config)
    model.load_generator(run_dir, generator, size)
    restore = model.contract(generator, config)
    hole = holes.make_masks("center", 1, size, [0, 0]).numpy()[0]
    hole_picture = Image.fromarray((hole[..., 0] * 255).astype(np.uint8))
    framing = faces.Framing(*config.framing) if config.framing else faces.STANDARD
    rng = np.random.default_rng(seed)
    rows = {}
    for where, place in PLACES.items():
        scores = {"now": [], "before": []}
        found = 0
        for face in images.read(test_idx):
            x, y, share, degrees = place(rng)
            side = round(share * PHOTO[0])
            width, height = PHOTO if share < 0.9 else (round(0.7 * side), round(0.7 * side))
            centre = (x * width, y * height) if share < 0.9 else (width / 2, height * 0.45)
            photo = Image.new("RGB", (width, height), BACKGROUND)
            mask = Image.new("RGB", (width, height))
            square = _placed(Image.fromarray(face), photo, centre, side, degrees,
                             Image.Resampling.BICUBIC)
            _placed(hole_picture, mask, centre, side, degrees, Image.Resampling.NEAREST)
            detected = faces.find_faces(photo)
            found += bool(detected)
            squares = {"now": [faces.square_for(f, framing) for f in detected]}
            squares["before"] = [_old_square(s, photo.size) for s in squares["now"]]
            for framing_, crop in squares.items():
                job = inpaint.Job(_buffer(photo, "photo"), _buffer(mask.convert("L"), "mask"),
                                  "scene")
                try:
                    plan = inpaint.plan(job, config, crop or "center")
                except photo_io.PhotoError:
                    scores[framing_].append(None)  # the hole reaches outside every square
                    continue
                [fills] = inpaint.fill_squares(restore, [plan])
                result, _ = inpaint.paste(plan, fills, config, poisson=True)
                restored = np.asarray(faces.view(result, square, size), np.uint8)
                scores[framing_].append(float(losses.hole_psnr(
                    model.to_unit(face[None]), model.to_unit(restored[None]),
                    tf.constant(hole[None]))[0]))
        rows[where] = (found, scores)
        print(f"{where}: done", file=sys.stderr, flush=True)
    count = len(test_idx)
    reference = np.mean([v for v in rows["upright, inside"][1]["now"] if v is not None])
    print(f"{count} test faces of {run_dir} in {PHOTO[0]}x{PHOTO[1]} photos (the larger-than-"
          "the-photo ones in a photo 0.7 of the face's side), centre hole in face "
          "coordinates, Poisson\n")
    print("| where the face is | found | framing | restored | hole outside the squares | "
          "hole PSNR | minus upright, inside |\n|---|--:|---|--:|--:|--:|--:|")
    for where, (found, scores) in rows.items():
        for framing_, values in scores.items():
            kept = [v for v in values if v is not None]
            mean = float(np.mean(kept)) if kept else float("nan")
            print(f"| {where} | {found} | {framing_} | {len(kept)} | {len(values) - len(kept)} | "
                  f"{mean:.2f} dB | {mean - reference:+.2f} |")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a trained run's --out_dir (its cache holds its test faces)")
    return measure(p.parse_args(argv).run)


if __name__ == "__main__":
    sys.exit(main())
