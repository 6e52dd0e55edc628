"""Images in, batches out: finding and decoding files, the on-disk cache, the train/test
split, the masks and the tf.data pipelines."""
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

import faces
import holes
import photo_io
import run_folder
from synthetic_faces import synthetic_face

CACHE_VERSION = 4  # bump when decoding or the index changes, so stale caches are never reused


class DataError(photo_io.PhotoError):
    """A problem with the user's data that they can fix; run.py prints it as one line."""


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """uint8 images [count, size, size, 3] stored back to back in a raw cache file."""
    path: str
    count: int
    size: int
    skipped: tuple = ()
    grey: bool = False  # every image has R = G = B
    framing: faces.Framing | None = None  # where the faces' eyes lie, if a detector found them
    data: dict | None = None  # what the set holds and where it came from (model.describe())

    @property
    def image_bytes(self):
        return self.size * self.size * 3

    def read(self, indices):
        """Gathers images by index with positional reads, so the set never sits in RAM."""
        out = np.empty((len(indices), self.size, self.size, 3), np.uint8)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for row, index in enumerate(indices):
                os.preadv(fd, [out[row]], int(index) * self.image_bytes)
        finally:
            os.close(fd)
        return out


# ----------------------------------------------------------------------------- files

class NoFace(Exception):
    """--align_faces: the detector found no face in an image; it is skipped."""


NO_FACE = "no face found (--align_faces)"
# --align_faces: a face whose square is under this share of --img_size is not taken; it
# would be enlarged more than twice and teach the model blur.
MIN_FACE = 0.5
# Two faces whose 8x8 grey thumbnails differ by at most this many levels on average are one
# shot taken twice (a copy, a re-save, the next shot of a burst): the second is not taken.
# The same face found again in a re-saved photo differed by up to 8 (its square jitters by a
# few pixels), two different drawn faces in like photos by 13 or more.
DUPLICATE_LEVELS = 10


@contextlib.contextmanager
def _open_upright(path, side):
    """A file decoded upright as RGB; a JPEG at the smallest DCT scale still >= side (a
    512x512 file decodes straight to 128x128), closed when the block ends."""
    with Image.open(path) as image:
        image.draft("RGB", (side, side))
        ImageOps.exif_transpose(image, in_place=True)
        yield photo_io.as_rgb(image)


def load_image(path, size):
    """Decodes one file to an upright RGB uint8 [size, size, 3], its centre square."""
    with _open_upright(path, size) as image:
        side = min(image.size)
        square = ((image.width - side) // 2, (image.height - side) // 2, side, 0.0)
        return np.asarray(faces.view(image, square, size), np.uint8)


def load_faces(path, size):
    """Every face in a photo, each framed as faces.STANDARD: uint8 [n, size, size, 3] and the
    count of faces too small to take (MIN_FACE). Raises NoFace when none is found."""
    # a photo keeps enough pixels for the detector, however it is stored
    with _open_upright(path, faces.DETECT_SIDE) as image:
        found = faces.find_faces(image)
        if not found:
            raise NoFace(NO_FACE)
        squares = [faces.square_for(face, faces.STANDARD) for face in found]
        crops = [np.asarray(faces.view(image, square, size), np.uint8) for square in squares
                 if square[2] >= MIN_FACE * size]
    taken = np.stack(crops) if crops else np.empty((0, size, size, 3), np.uint8)
    return taken, len(found) - len(crops)


def thumbnail(image):
    """A face's 8x8 grey thumbnail, flat (uint8 [64]): what near-duplicates are told by."""
    return np.asarray(Image.fromarray(image).convert("L").resize((8, 8), Image.Resampling.BOX),
                      np.uint8).ravel()


def _stamp(path):
    """(size, modification time) for the cache key; a file that cannot be stat'ed (a
    dangling link) gets None and is then skipped, with its reason, by the decoder."""
    try:
        stat = os.stat(path)
    except OSError:
        return None, None
    return stat.st_size, stat.st_mtime_ns


def _load_or_none(path, size, align):
    """(images [n, size, size, 3], faces too small, None) or (None, 0, why it was skipped)."""
    try:
        if align:
            return (*load_faces(path, size), None)
        return load_image(path, size)[None], 0, None
    except NoFace as error:
        return None, 0, str(error)
    except Exception as error:  # noqa: BLE001  (any unreadable file is skipped, whatever raised)
        return None, 0, f"{type(error).__name__}: {error}".strip()


def _synthetic_chunk(seed, start, stop, size):
    return np.stack([synthetic_face(seed, i, size, randomised=True) for i in range(start, stop)])


def _cache_key(description):
    return hashlib.sha1(json.dumps(description).encode()).hexdigest()[:16]


def duration(seconds):
    """'45 s', '13 min 10 s', '2 h 5 min'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _progress(done, total, label, start):
    """A bar with the time left, redrawn in place on a terminal; one line at the end when
    stderr is a file."""
    if not sys.stderr.isatty():
        if done == total:
            print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)
        return
    elapsed = time.perf_counter() - start
    left = ""
    if 0 < done < total:
        left = f", about {duration(elapsed * (total - done) / done)} left"
    filled = round(24 * done / total)
    print(f"\r{label}: [{'#' * filled}{'.' * (24 - filled)}] {done}/{total}{left}   ",
          end="\n" if done == total else "", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Tally:
    """What a pass over the files found: photos read, faces taken and what was not."""
    images: int = 0
    read: int = 0
    small: int = 0
    duplicates: int = 0
    grey: bool = True  # every image taken has R = G = B


def _write_cache(path, chunks, total, label, dedupe):
    """Writes uint8 chunks to path atomically, with `dedupe` the first of each set of
    near-duplicates only; returns the Tally and (path, reason) for each file skipped."""
    tally, skipped, seen, start = Tally(), [], 0, time.perf_counter()
    thumbnails, kept = np.empty((1024, 64), np.int16), 0  # grown by doubling
    # Ctrl-C or a full disk leaves no half-written cache behind
    with run_folder.atomic_path(path) as tmp, open(tmp, "wb") as out:
        for images, small, bad, files in chunks:
            if dedupe and len(images):
                keep = []
                for image in images:
                    thumb = thumbnail(image)
                    if kept and np.abs(thumbnails[:kept] - thumb).mean(1).min() <= DUPLICATE_LEVELS:
                        tally.duplicates += 1
                        continue
                    if kept == len(thumbnails):
                        thumbnails = np.concatenate([thumbnails, np.empty_like(thumbnails)])
                    thumbnails[kept], kept = thumb, kept + 1
                    keep.append(image)
                images = np.stack(keep) if keep else images[:0]
            out.write(np.ascontiguousarray(images).data)
            tally.grey = tally.grey and bool(np.all(images == images[..., :1]))
            tally.images += len(images)
            tally.read += files - len(bad)
            tally.small += small
            skipped += bad
            seen += files
            _progress(seen, total, label, start)
    return tally, skipped


def _decode_chunk(paths, size, align):
    """Decodes paths into one uint8 array; returns it, the faces too small, (path, reason)
    for each file skipped, and the count of files."""
    images, small, skipped = [], 0, []
    for path in paths:
        found, too_small, why = _load_or_none(path, size, align)
        if found is None:
            skipped.append((path, why))
        else:
            images.append(found)
            small += too_small
    images = np.concatenate(images) if images else np.empty((0, size, size, 3), np.uint8)
    return images, small, skipped, len(paths)


def _decode_chunks(paths, size, workers, align):
    # A task is a whole chunk, so threads hand over little; two chunks per worker stay
    # queued, so decoding never waits for the writer and memory stays bounded. Aligning
    # chunks finely, so its slower progress is still seen.
    step = 8 if align else 64
    starts = iter(range(0, len(paths), step))
    with ThreadPoolExecutor(workers) as pool:
        def submit(start):
            return pool.submit(_decode_chunk, paths[start:start + step], size, align)
        pending = deque(submit(start) for start in islice(starts, 2 * workers))
        while pending:
            yield pending.popleft().result()
            pending.extend(submit(start) for start in islice(starts, 1))


def _synthetic_chunks(n, size, seed, workers):
    step = 64
    with ThreadPoolExecutor(workers) as pool:
        starts = range(0, n, step)
        for images in pool.map(_synthetic_chunk, [seed] * len(starts), starts,
                               [min(s + step, n) for s in starts], [size] * len(starts)):
            yield images, 0, [], len(images)


def prepare_images(cache_dir, size, data_dir=None, limit=None, n_synthetic=None, seed=0,
                   workers=None, align_faces=False):
    """Decodes every image once into a cache file under cache_dir and returns the ImageSet,
    with the framing of its faces measured on a sample (faces.measure_framing) and a record
    of what it holds (model.describe()).

    The cache is keyed by the file list, sizes, modification times, `size`, and with
    `align_faces` the detector's settings, so a second run with unchanged files decodes
    nothing and finds no face again.
    """
    workers = workers or os.cpu_count()
    if data_dir is None:
        description = ["synthetic", CACHE_VERSION, n_synthetic, size, seed]
        total, label = n_synthetic, f"drawing {n_synthetic} synthetic faces"
    else:
        paths = photo_io.find_images(data_dir, limit)
        description = ["files", CACHE_VERSION, size, [(p, *_stamp(p)) for p in paths]]
        if align_faces:
            description.append(["aligned", faces.DETECTOR, MIN_FACE, DUPLICATE_LEVELS])
        total = len(paths)
        label = (f"{'finding the faces in' if align_faces else 'decoding'} "
                 f"{len(paths)} images from {data_dir}")
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"images_{size}px_{_cache_key(description)}.u8")
    index_path = path + ".json"
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    else:
        chunks = (_synthetic_chunks(n_synthetic, size, seed, workers) if data_dir is None
                  else _decode_chunks(paths, size, workers, align_faces))
        tally, skipped = _write_cache(path, chunks, total, label, dedupe=align_faces)
        framing = None
        if tally.images:
            sample = ImageSet(path, tally.images, size).read(
                np.unique(np.linspace(0, tally.images - 1, faces.SAMPLE).astype(int)))
            framing = faces.measure_framing(sample)
        index = {"count": tally.images, "skipped": skipped, "grey": tally.grey,
                 "framing": framing and dataclasses.astuple(framing), "read": tally.read,
                 "small": tally.small, "duplicates": tally.duplicates}
        run_folder.write_text(index_path, json.dumps(index))  # last: marks a complete cache
    for bad_path, why in index["skipped"]:
        warnings.warn(f"skipped {bad_path}: {why}")
    no_face = sum(why == NO_FACE for _, why in index["skipped"])
    unreadable = len(index["skipped"]) - no_face
    if data_dir is None:
        data = {"source": "built-in", "images": index["count"], "seed": seed,
                "grey": index["grey"]}
    else:
        data = {"source": "folder", "folder": os.path.abspath(data_dir), "files": total,
                "read": index["read"], "images": index["count"],
                "crop": "faces" if align_faces else "centre squares", "grey": index["grey"],
                "unreadable": unreadable}
        if align_faces:
            data.update(no_face=no_face, small=index["small"], duplicates=index["duplicates"],
                        min_face=round(MIN_FACE * size))
    if unreadable:
        print(f"skipped {unreadable} of {total} files that could not be read", file=sys.stderr)
    if align_faces:
        print(f"{data_dir}: read {data['read']} of {total} photos and took "
              f"{data['images']} faces; skipped {data['small']} faces too small (framed by "
              f"under {data['min_face']} px), {data['duplicates']} near-duplicates and "
              f"{no_face} photos in which no face was found", file=sys.stderr)
    if index["count"] == 0:
        raise DataError(f"--data_dir {data_dir}: none of its {total} image files could be read"
                        + (" or had a face large enough" if align_faces else ""))
    framing = index.get("framing")
    return ImageSet(path, index["count"], size, tuple(map(tuple, index["skipped"])),
                    index["grey"], framing and faces.Framing(*framing), data)


def split(count, test_ratio):
    """First (1 - test_ratio) of the images train, the rest test, in file-name order."""
    n_test = round(count * test_ratio)
    if n_test < 1 or n_test >= count:
        raise DataError(f"--test_ratio {test_ratio} on {count} images leaves "
                        f"{count - n_test} for training and {n_test} for testing; "
                        "both need at least one")
    return np.arange(count - n_test), np.arange(count - n_test, count)


# ----------------------------------------------------------------------------- pipelines

def _gather_dataset(images, index_batches):
    def gather(indices):
        return images.read(indices)

    def load(indices):
        batch = tf.numpy_function(gather, [indices], tf.uint8, stateful=False)
        return tf.ensure_shape(batch, [None, images.size, images.size, 3])
    # Autotuning is off: deleting an autotuned iterator at the end of an epoch can block for
    # seconds while its tuning thread sleeps, and one prefetched batch already hides the reads.
    options = tf.data.Options()
    options.autotune.enabled = False
    return index_batches.map(load, num_parallel_calls=2, deterministic=True).with_options(options)


def train_dataset(images, indices, batch, mask, seed, epoch, skip_batches=0):
    """(uint8 images, float masks) batches for one epoch, in an order and with masks that
    depend on (seed, epoch) alone, so a resumed run sees exactly the batches it would have.

    The last partial batch is dropped: every step has the global batch size, which keeps one
    traced graph and even splits across replicas.
    """
    order = np.random.default_rng([seed, epoch]).permutation(indices)
    batches = tf.data.Dataset.from_tensor_slices(order).batch(batch, drop_remainder=True)
    data = _gather_dataset(images, batches).enumerate()

    def add_masks(step, image_batch):
        mask_seed = tf.stack([tf.cast(seed, tf.int32), tf.cast(epoch * 1_000_003 + step, tf.int32)])
        return image_batch, holes.make_masks(mask, batch, images.size, mask_seed)
    return data.map(add_masks).skip(skip_batches).prefetch(1)


def test_dataset(images, indices, batch, mask):
    """(uint8 images, float masks) in file order, the last batch possibly smaller."""
    batches = tf.data.Dataset.from_tensor_slices(np.asarray(indices)).batch(batch)

    def add_masks(image_batch):
        return image_batch, holes.make_masks(mask, tf.shape(image_batch)[0], images.size, [0, 0])
    return _gather_dataset(images, batches).map(add_masks).prefetch(1)
