"""Trains and tests the context encoder: `python run.py --help` lists every flag."""
import argparse
import contextlib
import dataclasses
import errno
import os
import shlex
import sys

from tf_environment import quiet_native_logs  # before TensorFlow is imported

with quiet_native_logs():
    import tensorflow as tf

# after TensorFlow, which these import, has started quietly
import datamanager
import devices
import export
import holes
import inpaint
import model
import neuralnet
import photo_io
import run_folder
import serve
import tf_process

DEFAULT_TEST_RATIO = 0.1
DEFAULT_N_SYNTHETIC = 1500  # sized so the default run finishes within 15 minutes on 2 CPU cores
DEFAULTS = model.TrainConfig()  # the training flags' defaults live in one place


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default=None,
                   help="folder of face images (searched recursively); "
                        "none: built-in synthetic faces")
    p.add_argument("--out_dir", default="results", help="where every output is written")
    p.add_argument("--mode", choices=("train_test", "train", "test", "inpaint", "serve", "export"),
                   default="train_test",
                   help="test, inpaint, serve and export use the trained run in --out_dir, with "
                        "the network settings it was trained with; serve: a web page that "
                        "restores photos with it; export: --out_dir/export/ as SavedModel, ONNX, "
                        "LiteRT and Keras files (docs/export.md)")
    p.add_argument("--input", default=None,
                   help="inpaint: a photo, or a folder of photos (searched recursively)")
    p.add_argument("--mask", default=None,
                   help="inpaint, one photo: an image of the photo's size, white where the "
                        "hole is (a folder's photos use NAME_mask.png beside them)")
    p.add_argument("--hole", choices=holes.MASKS, default=None,
                   help="inpaint: hide this training shape instead (for photos with no mask)")
    p.add_argument("--crop", type=_crop, default="face",
                   help="inpaint: the square of the photo the model sees: face (each face "
                        "found, framed as the training faces were; the centred square if none "
                        "is found), center (the centred square), or LEFT,TOP,SIDE in pixels "
                        "(several separated by ;)")
    p.add_argument("--output", default=None,
                   help="inpaint: where the restored photos go (default: <out_dir>/inpainted)")
    p.add_argument("--host", default="127.0.0.1",
                   help="serve: the address to listen on; another than 127.0.0.1 lets anyone "
                        "on the network use the page")
    p.add_argument("--allowed_hosts", type=lambda t: [h.strip() for h in t.split(",") if h.strip()],
                   default=[],
                   help="serve: more names the page may be reached by, comma-separated (with "
                        "--host 0.0.0.0, this machine's own names and addresses are taken; any "
                        "other Host gets 421, so no other site can drive the server)")
    p.add_argument("--port", type=int, default=7860,
                   help="serve: the port to listen on (0: any free one)")
    p.add_argument("--poisson", action=argparse.BooleanOptionalAction, default=True,
                   help="test and inpaint: blend the restoration into the photo in the gradient "
                        "domain (an exact Poisson solve; the test also scores the other way)")
    p.add_argument("--epoch", type=int, default=DEFAULTS.epoch,
                   help="training epochs; to fit a time budget, start the run: in its first "
                        "minute it prints its training time and the --epoch that fits 15 "
                        "minutes (epochs x seconds per epoch = the training time)")
    p.add_argument("--batch", type=int, default=DEFAULTS.batch, help="global batch size")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr, help="Adam learning rate")
    p.add_argument("--beta1", type=float, default=DEFAULTS.beta1, help="Adam beta1")
    p.add_argument("--beta2", type=float, default=DEFAULTS.beta2, help="Adam beta2")
    p.add_argument("--adv_weight", type=float, default=DEFAULTS.adv_weight,
                   help="weight of the generator's adversarial loss")
    p.add_argument("--d_shift", type=int, default=DEFAULTS.d_shift,
                   help="the discriminator sees the real and the restored picture moved by "
                        "one random translation of up to this many pixels (at 128x128, scaled "
                        "with --img_size) each step; 0: not moved")
    p.add_argument("--ema", type=float, default=DEFAULTS.ema,
                   help="decay of the moving average of generator weights used for sample "
                        "grids, metrics and test; 0 uses the last weights as they are")
    p.add_argument("--upsample", choices=neuralnet.UPSAMPLING, default=DEFAULTS.upsample,
                   help="the decoder's 2x upsampling: the original's transposed convolution, "
                        "or a 1x1 convolution, a nearest resize and a 3x3 convolution (no "
                        "checkerboard)")
    p.add_argument("--mask_channel", action=argparse.BooleanOptionalAction,
                   default=DEFAULTS.mask_channel,
                   help="give the generator the hole as a fourth input channel")
    p.add_argument("--band", type=int, default=DEFAULTS.band,
                   help="width in pixels (at 128x128, scaled with --img_size) of the band "
                        "around the hole for the overlap loss and the feathered blend; 0: none")
    p.add_argument("--overlap_weight", type=float, default=DEFAULTS.overlap_weight,
                   help="weight of the reconstruction error in the band (Pathak et al.: 10)")
    p.add_argument("--feather", action=argparse.BooleanOptionalAction, default=DEFAULTS.feather,
                   help="blend the restoration into the context across the band instead of "
                        "pasting it with a hard edge")
    p.add_argument("--discriminator", choices=neuralnet.DISCRIMINATORS,
                   default=DEFAULTS.discriminator,
                   help="whole: the original's, one logit per picture; quarter: the same "
                        "network judging the picture at a quarter of its resolution, so it asks "
                        "for features, not for pixel texture")
    p.add_argument("--spectral_norm", action=argparse.BooleanOptionalAction,
                   default=DEFAULTS.spectral_norm,
                   help="spectral normalisation in the discriminator")
    p.add_argument("--img_size", type=int, default=DEFAULTS.img_size,
                   help="side images are resized to; a multiple of 32")
    p.add_argument("--align_faces", action="store_true",
                   help="with --data_dir: a photo library as training data: every face of "
                        "every photo, framed as aligned face sets are (eyes where theirs "
                        "lie), instead of each image's centre square; faces under half of "
                        "--img_size, near-duplicates and photos with no face are skipped and "
                        "counted")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N images (sorted by path)")
    p.add_argument("--test_ratio", type=float, default=None,
                   help="last fraction of the images held out for testing; --mode test "
                        "uses the run's recorded split")
    p.add_argument("--train_mask", choices=holes.MASKS, default=DEFAULTS.train_mask)
    p.add_argument("--test_mask", choices=holes.MASKS, default=DEFAULTS.test_mask,
                   help="hole for the test set and the sample grids' evaluation")
    p.add_argument("--n_synthetic", type=int, default=DEFAULT_N_SYNTHETIC,
                   help="how many synthetic faces to draw when no --data_dir is given")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed,
                   help="seed for weights, synthetic faces, data order and masks")
    p.add_argument("--cache_dir", default=None,
                   help="where decoded images are cached (default: <out_dir>/cache)")
    p.add_argument("--mixed_precision", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed_float16 with loss scaling on GPUs, mixed_bfloat16 on CPUs with "
                        "AVX512-BF16/AMX when oneDNN runs; the output layers and losses stay "
                        "float32")
    p.add_argument("--xla", action="store_true", help="compile the train step with XLA")
    p.add_argument("--gpus", type=_indices, default=None,
                   help="comma-separated GPU indices to use, e.g. 0,1 (default: all visible)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out_dir from its latest checkpoint")
    return p.parse_args(argv)


def check_args(args):
    """The first problem with the flags, as one line, or None."""
    if args.mode == "inpaint" and args.input is None:
        return "--mode inpaint needs --input PHOTO_OR_FOLDER"
    problems = [
        (args.epoch < 1, f"--epoch {args.epoch}: train for at least 1 epoch"),
        (args.batch < 1, f"--batch {args.batch}: the batch needs at least 1 image"),
        (args.lr <= 0, f"--lr {args.lr}: the learning rate must be positive"),
        (args.img_size < 32 or args.img_size % 32,
         f"--img_size {args.img_size}: must be a positive multiple of 32 (five 2x poolings)"),
        (args.test_ratio is not None and not 0 < args.test_ratio < 1, f"--test_ratio {args.test_ratio}: must be between 0 and 1"),
        (args.limit is not None and args.limit < 2, f"--limit {args.limit}: keep at least 2 images"),
        (args.data_dir is None and args.n_synthetic < 2,
         f"--n_synthetic {args.n_synthetic}: draw at least 2 faces"),
        (not 0 <= args.ema < 1, f"--ema {args.ema}: the decay must be in [0, 1)"),
        (args.band < 0, f"--band {args.band}: the band needs 0 or more pixels"),
        (not 0 <= args.d_shift <= 32, f"--d_shift {args.d_shift}: must be 0 to 32 pixels"),
        (args.overlap_weight < 0, f"--overlap_weight {args.overlap_weight}: must be 0 or more"),
        (not 0 <= args.port <= 65535, f"--port {args.port}: must be 0 to 65535"),
        (args.align_faces and args.data_dir is None,
         ("--align_faces: frames the faces of --data_dir's photos; the built-in synthetic "
          "faces are aligned already")),
    ]
    return next((message for failed, message in problems if failed), None)


def check_run(args):
    """For inpaint, serve and export: refuses an --out_dir that holds no trained run."""
    if (not tf.train.latest_checkpoint(os.path.join(args.out_dir, "checkpoints"))
            or model.load_config(args.out_dir) is None):
        return (f"--out_dir {args.out_dir}: no trained run there; point it at the --out_dir "
                "of a finished training run")
    return None


def check_out_dir(args):
    """Refuses an --out_dir that would mix two runs, or that has nothing to resume."""
    has_checkpoint = tf.train.latest_checkpoint(os.path.join(args.out_dir, "checkpoints"))
    if args.mode != "test" and has_checkpoint and not args.resume:
        return (f"--out_dir {args.out_dir} already holds a trained run; pass --resume to "
                "continue it, or choose another --out_dir")
    if args.resume and not has_checkpoint:
        return f"--resume: no checkpoint in {args.out_dir}/checkpoints to resume from"
    return None


def _crop(text):
    try:
        return inpaint.parse_crop(text)
    except photo_io.PhotoError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _indices(text):
    try:
        return [int(i) for i in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected indices like 0,1, got {text!r}") from None


def train_config(args):
    """The training settings the library takes, from the flags."""
    return model.TrainConfig(
        img_size=args.img_size, upsample=args.upsample,
        mask_channel=args.mask_channel, band=args.band, overlap_weight=args.overlap_weight,
        feather=args.feather, discriminator=args.discriminator,
        spectral_norm=args.spectral_norm,
        epoch=args.epoch, batch=args.batch, lr=args.lr, beta1=args.beta1, beta2=args.beta2,
        adv_weight=args.adv_weight, d_shift=args.d_shift, ema=args.ema, train_mask=args.train_mask,
        test_mask=args.test_mask, seed=args.seed, xla=args.xla)


def resume_command(argv):
    """The command line that continues this run."""
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *argv]
                                if a != "--resume") + " --resume"


def inpaint_photos(args):
    """--mode inpaint: restores the user's photos with the run's averaged generator."""
    config = model.load_config(args.out_dir)
    output = args.output or os.path.join(args.out_dir, "inpainted")
    try:
        jobs = inpaint.find_jobs(args.input, args.mask, args.hole)
        advice = model.real_faces_advice(config.data)
        if advice:
            print(f"note: {advice}", flush=True)
        with quiet_native_logs():
            devices.configure_devices(args.gpus, args.mixed_precision)
        generator = model.build_generator(config)
        model.load_generator(args.out_dir, generator, config.img_size)
        inpaint.inpaint(model.contract(generator, config), config, jobs, output,
                        args.crop, args.hole, args.seed, args.poisson)
    except (photo_io.PhotoError, model.LoadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: could not write {error.filename or output}: {error.strerror}",
              file=sys.stderr)
        return 1
    return 0


def serve_page(args):
    """--mode serve: the web page over the run in --out_dir, until Ctrl-C."""
    try:
        with quiet_native_logs():
            devices.configure_devices(args.gpus, args.mixed_precision)
        serve.serve(args.out_dir, args.host, args.port, args.allowed_hosts)
    except (serve.ServeError, model.LoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def export_run(args):
    """--mode export: the run's averaged generator as files other programs run, in float32
    whatever --mixed_precision says, so that every format is checked against one reference."""
    try:
        kept = export.export(args.out_dir)
    except (export.ExportError, model.LoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    folder = os.path.join(args.out_dir, export.EXPORT_DIR)
    print(export.contract(model.load_config(args.out_dir), folder))
    return 0 if len(kept) == len(export.FILES) else 1


def write_failure(error, args, argv):
    """One line for a write that failed; for a full disk, where the run stands and the
    command that continues it once space is freed."""
    what = error.filename or args.out_dir
    if not run_folder.no_space(error):
        return f"could not write {what}: {error.strerror}; the last good checkpoint is kept"
    same_command = f"python {shlex.join([sys.argv[0], *argv])}"
    if args.mode == "test":
        after = f"run the same command again: {same_command}"
    elif latest := tf.train.latest_checkpoint(os.path.join(args.out_dir, "checkpoints")):
        after = f"continue from the last good checkpoint, {latest}, with: {resume_command(argv)}"
    else:
        after = f"start again (no checkpoint yet): {same_command}"
    return f"could not write {what}: no space left on device; free some space, then {after}"


SPLIT_FLAGS = ("data_dir", "limit", "n_synthetic", "seed", "align_faces", "test_ratio")


def recorded_split(args, argv, split):
    """--mode test: the flags that make the run's split, set from what config.json recorded,
    or one line naming a flag given with another value than the run was trained with."""
    given = {a.split("=")[0][2:] for a in argv if a.startswith("--")}
    for flag in SPLIT_FLAGS:
        value = getattr(args, flag)
        if flag == "data_dir" and value is not None:
            value = os.path.abspath(value)
        if flag in given and value != split[flag]:
            return (f"--{flag} {getattr(args, flag)}: this run was split with "
                    f"{'no --data_dir (the built-in faces)' if split[flag] is None else f'--{flag} {split[flag]}'} "
                    f"(\"split\" in {model.CONFIG_FILE}); leave the flag out to test the run's "
                    "own held-out images")
        setattr(args, flag, split[flag])
    return None


def train_and_test(args, argv):
    """--mode train_test, train and test, in a run folder this process has to itself."""
    saved = model.load_config(args.out_dir) if args.mode == "test" else None
    if saved and saved.split:
        problem = recorded_split(args, argv, saved.split)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    args.test_ratio = args.test_ratio or DEFAULT_TEST_RATIO
    config = train_config(args)
    if saved:
        config = dataclasses.replace(saved, batch=args.batch, test_mask=args.test_mask)
    try:
        with quiet_native_logs():  # finding no GPU logs an error
            strategy, policy = devices.configure_devices(args.gpus, args.mixed_precision)
        images = datamanager.prepare_images(args.cache_dir or os.path.join(args.out_dir, "cache"),
                                            config.img_size,
                                            args.data_dir, args.limit, args.n_synthetic, args.seed,
                                            align_faces=args.align_faces)
        if saved and saved.split and images.count != saved.split["images"]:
            raise ValueError(f"the data has changed since the run was trained: {images.count} "
                             f"images now, {saved.split['images']} then, so its held-out images "
                             "are no longer known; test on a copy of the data as it was")
        if args.mode != "test":
            config = dataclasses.replace(config, grey=images.grey, framing=images.framing and
                                         dataclasses.astuple(images.framing), data=images.data,
                                         split={**{flag: getattr(args, flag) for flag in SPLIT_FLAGS},
                                                "data_dir": args.data_dir and os.path.abspath(args.data_dir),
                                                "images": images.count})
            print(f"training on {model.describe(images.data)}")
            if images.grey:
                print(f"every image is greyscale: the restorations are made grey too "
                      f"(\"grey\" in {model.CONFIG_FILE})")
        train_idx, test_idx = datamanager.split(images.count, args.test_ratio)
        if args.mode != "test" and args.batch > len(train_idx):
            raise ValueError(f"--batch {args.batch} is larger than the {len(train_idx)} "
                             "training images; lower --batch")
        print(f"{images.count} images at {config.img_size}x{config.img_size}: "
              f"{len(train_idx)} train, {len(test_idx)} test")
        # Seeded again: building the face detector for the cache draws on the global seed,
        # and a cache already built (or a detector already loaded) does not.
        tf.keras.utils.set_random_seed(args.seed)
        with strategy.scope():
            generator = model.build_generator(config)
            # A test needs the generator alone, so a run trained with a discriminator since
            # pruned (its config.json names it) still tests.
            discriminator = (None if args.mode == "test"
                             else tf_process.build_discriminator(config))
        sizes = [f"generator: {generator.count_params():,} parameters"]
        if discriminator is not None:
            sizes.append(f"discriminator: {discriminator.count_params():,} parameters")
        print(f"{'; '.join(sizes)}; {policy} on {strategy.num_replicas_in_sync} replica(s)")
        if args.mode in ("train_test", "train"):
            tf_process.train(config, args.out_dir, images, train_idx, test_idx,
                             generator, discriminator, strategy, resume=args.resume)
        if args.mode in ("train_test", "test") and devices.is_chief():
            tf_process.test(config, args.out_dir, images, test_idx, generator, args.poisson)
    except (photo_io.PhotoError, model.LoadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training or in the test: training catches its own
        print("\ninterrupted; the run's checkpoints are untouched", file=sys.stderr)
        return 130
    except tf_process.TrainingStopped as stop:
        resume = f" Resume with: {resume_command(argv)}" if stop.resumable else ""
        print(f"\n{stop}{resume}", file=sys.stderr)
        return stop.exit_code
    except OSError as error:
        print(f"error: {write_failure(error, args, argv)}", file=sys.stderr)
        return 1
    except tf.errors.OpError as error:  # TensorBoard's event files fail as TensorFlow ops
        if not run_folder.no_space(error):
            raise
        failed = OSError(errno.ENOSPC, "no space left on device", os.path.join(args.out_dir, "logs"))
        print(f"error: {write_failure(failed, args, argv)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    problem = check_args(args)
    if args.mode in ("inpaint", "serve", "export"):  # read the run: work while it trains
        problem = problem or check_run(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    tf.keras.utils.set_random_seed(args.seed)
    if args.mode == "inpaint":
        return inpaint_photos(args)
    if args.mode == "serve":
        return serve_page(args)
    if args.mode == "export":
        return export_run(args)
    with contextlib.ExitStack() as held:
        if devices.is_chief():  # the other workers of a cluster write no run files there
            try:
                held.enter_context(run_folder.lock(args.out_dir))
            except run_folder.FolderBusy as busy:
                print(f"error: {busy}", file=sys.stderr)
                return 2
            except OSError as error:
                print(f"error: --out_dir {args.out_dir}: cannot write there ({error.strerror}); "
                      "choose another", file=sys.stderr)
                return 2
        problem = check_out_dir(args)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        return train_and_test(args, argv)


if __name__ == "__main__":
    sys.exit(main())
