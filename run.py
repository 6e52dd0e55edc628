"""Trains and tests the context encoder: `python run.py --help` lists every flag."""
import argparse
import os
import sys

import tensorflow as tf

import datamanager
import neuralnet
import tf_process

DEFAULT_N_SYNTHETIC = 1500  # sized so the default run finishes within 15 minutes on 2 CPU cores


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default=None,
                   help="folder of face images (searched recursively); "
                        "none: built-in synthetic faces")
    p.add_argument("--out_dir", default="results", help="where every output is written")
    p.add_argument("--mode", choices=("train_test", "train", "test"), default="train_test")
    p.add_argument("--epoch", type=int, default=20, help="training epochs")
    p.add_argument("--batch", type=int, default=64, help="global batch size")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--beta1", type=float, default=0.9, help="Adam beta1")
    p.add_argument("--beta2", type=float, default=0.999, help="Adam beta2")
    p.add_argument("--adv_weight", type=float, default=1.0,
                   help="weight of the generator's adversarial loss")
    p.add_argument("--ema", type=float, default=0.99,
                   help="decay of the moving average of generator weights used for sample "
                        "grids, metrics and test; 0 uses the last weights as they are")
    p.add_argument("--img_size", type=int, default=128,
                   help="side images are resized to; a multiple of 32")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N images (sorted by path)")
    p.add_argument("--test_ratio", type=float, default=0.1,
                   help="last fraction of the images held out for testing")
    p.add_argument("--train_mask", choices=datamanager.MASKS, default="random")
    p.add_argument("--test_mask", choices=datamanager.MASKS, default="center",
                   help="hole for the test set and the sample grids' evaluation")
    p.add_argument("--n_synthetic", type=int, default=DEFAULT_N_SYNTHETIC,
                   help="how many synthetic faces to draw when no --data_dir is given")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for weights, synthetic faces, data order and masks")
    p.add_argument("--cache_dir", default=None,
                   help="where decoded images are cached (default: <out_dir>/cache)")
    p.add_argument("--mixed_precision", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed_float16 with loss scaling on GPUs, mixed_bfloat16 on CPUs with "
                        "AVX512-BF16/AMX; the output layers and losses stay float32")
    p.add_argument("--xla", action="store_true", help="compile the train step with XLA")
    p.add_argument("--gpus", type=_indices, default=None,
                   help="comma-separated GPU indices to use, e.g. 0,1 (default: all visible)")
    return p.parse_args(argv)


def _indices(text):
    try:
        return [int(i) for i in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected indices like 0,1, got {text!r}") from None


def main(argv=None):
    args = parse_args(argv)
    tf.keras.utils.set_random_seed(args.seed)
    try:
        strategy, policy = tf_process.configure_devices(args.gpus, args.mixed_precision)
        images = datamanager.prepare_images(args.cache_dir or os.path.join(args.out_dir, "cache"),
                                            args.img_size,
                                            args.data_dir, args.limit, args.n_synthetic, args.seed)
        train_idx, test_idx = datamanager.split(images.count, args.test_ratio)
    except (datamanager.DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{images.count} images at {args.img_size}x{args.img_size}: "
          f"{len(train_idx)} train, {len(test_idx)} test")
    with strategy.scope():
        generator = neuralnet.Generator(args.img_size)
        discriminator = neuralnet.Discriminator(args.img_size)
    print(f"generator: {generator.count_params():,} parameters; "
          f"discriminator: {discriminator.count_params():,} parameters; "
          f"{policy} on {strategy.num_replicas_in_sync} replica(s)")
    if args.mode in ("train_test", "train"):
        tf_process.train(args, images, train_idx, test_idx, generator, discriminator, strategy)
    if args.mode in ("train_test", "test"):
        tf_process.test(args, images, test_idx, generator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
