"""The inference core: a trained run's config, its averaged generator built and loaded from
the latest checkpoint, and the one restoration contract every user of a trained run goes
through (--mode inpaint, the web page's server and the exported files):

    image uint8 [N, S, S, 3] RGB, mask uint8 [N, S, S, 1] (over 127 = hole)
    -> restored uint8 [N, S, S, 3] (the composite), fill uint8 (the generator's picture)

It imports nothing from training: sampling needs only this file and neuralnet.py."""
import dataclasses
import json
import os

import tensorflow as tf

import holes
import neuralnet
import run_folder


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: run.py fills it from the flags; tests and benchmark.py build it
    directly. The defaults are run.py's."""
    img_size: int = 128
    # The recipe below is what the ablation in the README found best within the default run's
    # 15-minute CPU budget; the README gives the command line of the original's recipe.
    upsample: str = "reduce"  # the decoder's 2x upsampling: one of neuralnet.UPSAMPLING
    mask_channel: bool = True  # the hole as a fourth input channel of the generator
    band: int = 4  # pixels (at 128x128) around the hole for the overlap loss and the blend
    overlap_weight: float = 10.0  # weight of the band's reconstruction error (Pathak et al.)
    feather: bool = True  # blend the restoration into the context across the band
    discriminator: str = "quarter"  # one of neuralnet.DISCRIMINATORS
    spectral_norm: bool = True  # spectral normalisation in the discriminator
    epoch: int = 32  # what fits 15 minutes on a bfloat16 CPU without AMX (README)
    batch: int = 32  # twice the original's updates per epoch: the budget allows few images
    lr: float = 4e-4
    beta1: float = 0.9
    beta2: float = 0.999
    adv_weight: float = 20.0
    d_shift: int = 4  # pixels (at 128x128) the discriminator's view moves by at random
    ema: float = 0.99
    train_mask: str = "mixed"  # half the centre square, a quarter the surgical mask's hole
    test_mask: str = "center"
    seed: int = 0
    xla: bool = False
    # Set from the data, not a flag: when every training image is greyscale, the
    # restorations are made grey too (the generator's three channels never agree exactly).
    grey: bool = False
    # Also from the data: where the training faces' eyes lie in the square (faces.Framing as
    # a tuple), so a user's photo is framed the same way; None when none was measured.
    framing: tuple | None = None
    # What the run was trained on (datamanager.ImageSet.data): the built-in drawn faces or a
    # folder with its counts, so that the page and --mode inpaint can say what it has seen.
    data: dict | None = None
    # The train/test split: the test share and what it was cut from (the folder and its image
    # count, or the built-in seed and count), so --mode test tests the same held-out images.
    split: dict | None = None


CONFIG_FILE = "config.json"


def save_config(config, out_dir):
    """Records how a run was trained, so --mode test and inpaint rebuild the same network."""
    run_folder.write_text(os.path.join(out_dir, CONFIG_FILE),
                          json.dumps(dataclasses.asdict(config), indent=2))


def load_config(out_dir):
    """The TrainConfig a run in out_dir was trained with, or None if it has none."""
    path = os.path.join(out_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        saved = json.load(f)
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    if saved.get("framing"):
        saved["framing"] = tuple(saved["framing"])
    return TrainConfig(**{k: v for k, v in saved.items() if k in fields})


def describe(data):
    """One line for a person of what a run was trained on (ImageSet.data, config.json)."""
    colour = "grey" if data["grey"] else "colour"
    folder = os.path.basename(data.get("folder", ""))  # its name, not where it lies
    if data["source"] == "built-in":
        return f"{data['images']} built-in drawn faces (no real photo)"
    if data["crop"] == "faces":
        return f"{data['images']} real faces found in {data['read']} photos of {folder} ({colour})"
    return f"{data['images']} images of {folder}, centre squares ({colour})"


def real_faces_advice(data):
    """What a run that has seen only drawn faces must tell a person with a real photo, or
    None for a run trained on photos (or one that recorded nothing)."""
    if not data or data["source"] != "built-in":
        return None
    return ("this run has only seen drawn faces (the built-in set): on a real photo it paints "
            "a drawn face. For real photos, train a run on real faces: python run.py "
            "--data_dir ~/Pictures --align_faces --out_dir faces_run")


# ----------------------------------------------------------------------------- restoration

def to_unit(images):
    return tf.cast(images, tf.float32) / 255.0


def band_pixels(config):
    """The band around the hole, scaled from 128x128 to the run's side."""
    return round(config.band * config.img_size / 128)


def build_generator(config):
    return neuralnet.Generator(config.img_size, upsample=config.upsample,
                               mask_channel=config.mask_channel)


def generator_input(masked, masks, config):
    return tf.concat([masked, masks], -1) if config.mask_channel else masked


def generate(generator, masked, masks, config, training):
    """The generator's restoration of the masked images, float32 in [0, 1]; for a greyscale
    run the mean of its channels in all three, the nearest grey picture to it."""
    restored = tf.cast(generator(generator_input(masked, masks, config), training=training),
                       tf.float32)
    if config.grey:
        restored = tf.repeat(tf.reduce_mean(restored, axis=-1, keepdims=True), 3, axis=-1)
    return restored


def composite_weights(masks, config):
    """How much of the restoration each pixel of the composite takes: the hole, or with
    `feather` the hole and a linear fade across the band around it."""
    return holes.blend_weights(masks, band_pixels(config)) if config.feather else masks


def compose(masked, restored, masks, config):
    """What a user sees: the context kept and the hole filled, with a hard edge or feathered."""
    alpha = composite_weights(masks, config)
    return masked * (1.0 - alpha) + restored * alpha


def restoration(generator, config, images, masks):
    """uint8 images and float masks -> (images, masked, restored, composite), all float in
    [0, 1]: what --mode test shows and scores, and what the contract rounds."""
    images = to_unit(images)
    masked = images * (1.0 - masks)
    restored = generate(generator, masked, masks, config, training=False)
    return images, masked, restored, compose(masked, restored, masks, config)


def make_restore(generator, config):
    """restoration() compiled for the generator (--mode test's float pictures and scores)."""
    @tf.function(reduce_retracing=True)
    def restore(images, masks):
        return restoration(generator, config, images, masks)
    return restore


def _to_uint8(pictures):
    # as photo_io.to_uint8 rounds, in the graph
    return tf.cast(tf.round(tf.clip_by_value(pictures * 255.0, 0.0, 255.0)), tf.uint8)


def restorer(generator, config):
    """The contract as a TensorFlow function over the generator (uncompiled: export traces
    it into each format, contract() compiles it here)."""
    def restore(image, mask):
        # compared in float32: LiteRT has no uint8 GREATER
        masks = tf.cast(tf.cast(mask, tf.float32) > 127.0, tf.float32)
        _, _, fill, composite = restoration(generator, config, image, masks)
        return {"restored": _to_uint8(composite), "fill": _to_uint8(fill)}
    return restore


def contract(generator, config):
    """restorer() compiled: (image uint8, mask uint8) -> {"restored", "fill"} as numpy."""
    restore = tf.function(restorer(generator, config), reduce_retracing=True)
    return lambda image, mask: {k: v.numpy() for k, v in restore(image, mask).items()}


# ----------------------------------------------------------------------------- checkpoints

class LoadError(Exception):
    """A run's weights cannot be loaded; run.py prints it as one line and exits with 2."""


class NoCheckpoint(LoadError):
    """The run has no checkpoint yet."""


class DoesNotFit(LoadError):
    """A checkpoint of another --img_size or architecture: its weights do not fit."""


class MissingWeights(LoadError):
    """A checkpoint without some of the generator's weights, which would stay random."""


class Damaged(LoadError):
    """A checkpoint file cut short or corrupted (a copy, an rsync, a disk fault)."""


class Vanished(LoadError):
    """A checkpoint deleted while it was read (the trainer keeps only its last three)."""


def checkpoint_dir(out_dir):
    return os.path.join(out_dir, "checkpoints")


def progress_variables():
    """What a checkpoint records of the run beside the weights: where training stands, and
    the time and images trained so far (for the throughput the test reports)."""
    return {"epoch": tf.Variable(0, dtype=tf.int64),
            "step_in_epoch": tf.Variable(0, dtype=tf.int64),
            "train_seconds": tf.Variable(0.0, dtype=tf.float64),
            "train_images": tf.Variable(0, dtype=tf.int64)}


def restore_checkpoint(checkpoint, path, img_size, optional=None):
    """Restores `checkpoint`'s objects from the file at `path`, every one of them (more may
    be in the file), and what the file holds of `optional`'s: each way this fails is its
    own LoadError, in one line."""
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
        status.expect_partial()  # what the file holds beyond these objects is not wanted
        if optional is not None:
            optional.restore(path).expect_partial()
    except AssertionError as error:
        missing = str(error).strip().splitlines()[0][:300]
        raise MissingWeights(f"checkpoint {path} lacks some of the model's weights, which "
                             f"would stay random ({missing}); point --out_dir at a complete "
                             "run") from None
    except tf.errors.NotFoundError as error:
        if tf.train.latest_checkpoint(os.path.dirname(path)) != path:
            raise Vanished(f"checkpoint {path} was deleted while it was read (a newer one "
                           "replaced it); try again") from None
        raise Damaged(f"checkpoint {path} has lost a file ({error.message[:200]}); copy it "
                      "again, or point --out_dir at an intact run") from None
    except (IndexError, tf.errors.DataLossError) as error:
        raise Damaged(f"checkpoint {path} is truncated or damaged ({error}); copy it again, "
                      "or point --out_dir at an intact run") from None
    except (ValueError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0][:300]
        raise DoesNotFit(f"checkpoint {path} does not fit this model (trained with another "
                         f"--img_size than {img_size}, or another architecture): {reason}"
                         ) from None


def load_generator(out_dir, generator, img_size):
    """Loads the averaged generator of out_dir's latest checkpoint into `generator`; returns
    the checkpoint's path and its progress variables. Raises a LoadError."""
    progress = progress_variables()
    latest = tf.train.latest_checkpoint(checkpoint_dir(out_dir))
    if latest is None:
        raise NoCheckpoint(f"no checkpoint in {checkpoint_dir(out_dir)}: train first "
                           "(--mode train_test or train) or point --out_dir at a trained run")
    # every weight must be there; the progress a checkpoint of an older run may lack
    restore_checkpoint(tf.train.Checkpoint(ema_generator=generator), latest, img_size,
                       optional=tf.train.Checkpoint(epoch=progress["epoch"],
                                                    train_seconds=progress["train_seconds"],
                                                    train_images=progress["train_images"]))
    return latest, progress
