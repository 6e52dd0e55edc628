"""The GPU promises run on this CPU: mixed float16 with its loss scaling, --xla, and --gpus on
a machine without GPUs. TensorFlow runs float16 and XLA on a CPU (slowly), so the code a
user's first GPU run executes has run here first."""
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import no_gpu

import datamanager
import holes
import model
import outputs
import run
import run_folder
import tf_process

CONFIG = model.TrainConfig(img_size=32)
BATCH = 4
# float16 keeps 11 significant bits: the first step's losses (the same weights, before any
# update) agree with float32's to well within 1 %; measured 5e-7 to 1e-5 relative on a Xeon.
FLOAT16_TOLERANCE = 1e-2
# XLA only fuses and reorders float32 arithmetic: the first epoch's losses agree to 1e-6
# relative; the tolerance leaves room for other CPUs' kernels.
XLA_TOLERANCE = 1e-3


def _batches(count):
    rng = np.random.default_rng(0)
    return [(tf.constant(rng.integers(0, 256, (BATCH, 32, 32, 3)), tf.uint8),
             holes.make_masks("mixed", BATCH, 32, [0, i])) for i in range(count)]


def _train_steps(policy, weights, batches):
    """Losses of each step, the loss scale before and after it, and whether it changed the
    generator, for models built under `policy` from the given weights."""
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        generator = model.build_generator(CONFIG)
        discriminator = tf_process.build_discriminator(CONFIG)
        generator.set_weights(weights[0])
        discriminator.set_weights(weights[1])
        g_optimizer, d_optimizer = (tf_process.make_optimizer(m, 1e-3, 0.9, 0.999)
                                    for m in (generator, discriminator))
        step = tf_process.make_train_step(
            config=CONFIG, generator=generator, discriminator=discriminator,
            g_optimizer=g_optimizer, d_optimizer=d_optimizer,
            ema_generator=tf_process.make_ema_generator(generator), global_batch=BATCH,
            strategy=tf.distribute.get_strategy())
        records = []
        for images, masks in batches:
            scale = float(getattr(g_optimizer, "dynamic_scale", 1.0))
            before = [w.numpy() for w in generator.trainable_weights]
            losses = {k: float(v) for k, v in step(images, masks).items()}
            changed = any(not np.array_equal(b, w.numpy())
                          for b, w in zip(before, generator.trainable_weights))
            records.append((losses, scale, float(getattr(g_optimizer, "dynamic_scale", 1.0)),
                            changed))
        output = generator(tf.zeros([1, 32, 32, 4]))
        return records, generator, g_optimizer, output
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def _initial_weights():
    tf.keras.utils.set_random_seed(0)
    return (model.build_generator(CONFIG).get_weights(),
            tf_process.build_discriminator(CONFIG).get_weights())


def test_a_mixed_float16_step_scales_its_loss_as_keras_documents_and_matches_float32():
    weights, batches = _initial_weights(), _batches(4)
    float32, _, _, _ = _train_steps("float32", weights, batches)
    float16, generator, optimizer, output = _train_steps("mixed_float16", weights, batches)
    assert isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert all(w.dtype == tf.float32 for w in generator.weights)  # float32 master weights
    assert generator.layers[1].compute_dtype == "float16" and output.dtype == tf.float32
    for losses, _, _, _ in float16:
        assert all(np.isfinite(v) for v in losses.values()), losses
    for name, value in float32[0][0].items():  # the same weights: only the arithmetic differs
        assert float16[0][0][name] == pytest.approx(value, rel=FLOAT16_TOLERANCE), name
    # Keras's dynamic loss scale: it starts at 2**15; a step whose scaled gradients overflow
    # is skipped and halves it; a finite step is applied and keeps it (it doubles only after
    # 2,000 finite steps in a row).
    assert float16[0][1] == 2.0 ** 15
    for losses, before, after, changed in float16:
        assert (after, changed) in ((before / 2, False), (before, True)), (before, after, changed)
    assert any(changed for *_, changed in float16)


def test_a_short_run_under_mixed_float16_trains_checkpoints_and_tests(tmp_path):
    out = str(tmp_path)
    images = datamanager.prepare_images(os.path.join(out, "cache"), 32, n_synthetic=24)
    train_idx, test_idx = datamanager.split(images.count, 0.25)
    config = model.TrainConfig(img_size=32, epoch=1, batch=BATCH)
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        generator = model.build_generator(config)
        tf_process.train(config, out, images, train_idx, test_idx, generator,
                         tf_process.build_discriminator(config), tf.distribute.get_strategy())
        result = tf_process.test(config, out, images, test_idx, generator)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    steps = run_folder.read_csv(os.path.join(out, "train_loss.csv"))
    assert len(steps) == len(train_idx) // BATCH
    assert all(np.isfinite(row[k]) for row in steps for k in outputs.LOSS_NAMES)
    variables = dict(tf.train.list_variables(tf.train.latest_checkpoint(
        os.path.join(out, "checkpoints"))))
    assert any("dynamic_scale" in name for name in variables)  # the loss scale is saved
    assert np.isfinite(result["model"]["hole_psnr"]) and result["images"] == len(test_idx)


def test_xla_trains_the_same_losses_as_the_uncompiled_step(face_folder, tmp_path):
    def losses(*flags):
        out = str(tmp_path / ("xla" if flags else "plain"))
        assert run.main(["--data_dir", face_folder, "--out_dir", out, "--mode", "train",
                         "--epoch", "1", "--img_size", "32", "--batch", "4", "--lr", "1e-3",
                         "--test_ratio", "0.25", "--no-mixed_precision", *flags]) == 0
        return run_folder.read_csv(os.path.join(out, "train_loss.csv"))
    plain, compiled = losses(), losses("--xla")
    assert len(compiled) == len(plain) == 6
    for a, b in zip(plain, compiled):
        for name in outputs.LOSS_NAMES:
            assert b[name] == pytest.approx(a[name], rel=XLA_TOLERANCE), (a["step"], name)


@no_gpu
def test_gpus_on_a_machine_without_one_is_one_line_and_exit_2(tmp_path, capsys):
    code = run.main(["--out_dir", str(tmp_path), "--n_synthetic", "8", "--img_size", "32",
                     "--gpus", "0"])
    assert code == 2
    error = capsys.readouterr().err
    assert error == ("error: --gpus 0: TensorFlow sees no GPU on this machine; leave --gpus out "
                     "to train on the CPU\n")
