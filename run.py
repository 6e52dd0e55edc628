"""Trains and tests the context encoder: `python run.py --help` lists every flag."""
import argparse
import os
import sys

import datamanager
import neuralnet

DEFAULT_N_SYNTHETIC = 1000  # sized so the default run finishes within 15 minutes on 2 CPU cores


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
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf  # after argparse, so --help is instant
    import tf_process

    tf.keras.utils.set_random_seed(args.seed)
    strategy = tf.distribute.get_strategy()
    try:
        images = datamanager.prepare_images(os.path.join(args.out_dir, "cache"), args.img_size,
                                            args.data_dir, args.limit, args.n_synthetic, args.seed)
        train_idx, test_idx = datamanager.split(images.count, args.test_ratio)
    except datamanager.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{images.count} images at {args.img_size}x{args.img_size}: "
          f"{len(train_idx)} train, {len(test_idx)} test")
    with strategy.scope():
        generator = neuralnet.Generator(args.img_size)
        discriminator = neuralnet.Discriminator(args.img_size)
    print(f"generator: {generator.count_params():,} parameters; "
          f"discriminator: {discriminator.count_params():,} parameters")
    if args.mode in ("train_test", "train"):
        tf_process.train(args, images, train_idx, test_idx, generator, discriminator, strategy)
    if args.mode in ("train_test", "test"):
        tf_process.test(args, images, test_idx, generator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
