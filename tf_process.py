"""The training and test processes: the compiled two-player train step, the training loop
with its checkpoints, and the evaluation and test over the held-out images."""
import errno
import json
import os
import shutil
import signal
import tempfile
import time

import numpy as np
import tensorflow as tf

import datamanager
import holes
import losses
import neuralnet
import outputs
import references
import run_folder
from devices import is_chief
from model import (
    band_pixels,
    compose,
    generate,
    load_generator,
    make_restore,
    progress_variables,
    restore_checkpoint,
    save_config,
    to_unit,
)
from poisson_blend import poisson_blend

SAMPLE_COUNT = 100


# ----------------------------------------------------------------------------- steps

def build_discriminator(config):
    return neuralnet.Discriminator(config.img_size, spectral_norm=config.spectral_norm,
                                   halvings=neuralnet.DISCRIMINATORS[config.discriminator])


def shift_pixels(config):
    return round(config.d_shift * config.img_size / 128)


def translate(images, offset, shift):
    """Images moved by shift - offset pixels down and right (offset in [0, 2*shift]), the
    edges they uncover mirrored from the picture."""
    padded = tf.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]], "REFLECT")
    # Gathers, not tf.slice: XLA takes a slice's start as a compile-time constant and so
    # compiled the whole train step again for each of the (2 * shift + 1)^2 offsets.
    rows = offset[0] + tf.range(tf.shape(images)[1])
    cols = offset[1] + tf.range(tf.shape(images)[2])
    return tf.gather(tf.gather(padded, rows, axis=1), cols, axis=2)


def make_optimizer(model, learning_rate, beta1, beta2):
    optimizer = tf.keras.optimizers.Adam(learning_rate, beta_1=beta1, beta_2=beta2)
    if tf.keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)  # slots exist before tracing and restoring
    return optimizer


def make_ema_generator(generator):
    """A copy of the generator, starting from its weights, for the train step to average into."""
    ema_generator = tf.keras.models.clone_model(generator)
    ema_generator.set_weights(generator.get_weights())
    return ema_generator


def make_train_step(*, config, generator, discriminator, g_optimizer, d_optimizer,
                    ema_generator, global_batch, strategy):
    """One compiled step of the two-player GAN; returns the losses it computed.

    ema_generator follows an exponential moving average of the generator's weights."""
    band = band_pixels(config)
    shift = shift_pixels(config)

    def replica_step(images, masks):
        images = to_unit(images)
        masked = images * (1.0 - masks)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            restored = generate(generator, masked, masks, config, training=True)
            # The discriminator judges what a user sees: the context kept, the hole filled.
            composite = compose(masked, restored, masks, config)
            if shift:
                # One random translation a step for both pictures (DiffAugment's translation,
                # Zhao et al. 2020, one offset for the batch), so the discriminator's pooling
                # cells do not sit at one phase of the generator's 8-pixel resize cells; it
                # gave fewer colour specks at the eyes (docs/ablation.md). Drawn from the
                # seed and the step: every replica and a resumed run draw the same.
                seed = tf.stack([tf.constant(config.seed, tf.int64),
                                 tf.cast(g_optimizer.iterations, tf.int64)])
                offset = tf.random.stateless_uniform([2], seed, minval=0, maxval=2 * shift + 1,
                                                     dtype=tf.int32)
                images_seen = translate(images, offset, shift)
                composite = translate(composite, offset, shift)
            else:
                images_seen = images
            real = discriminator(images_seen, training=True)
            fake = discriminator(composite, training=True)
            # Reported: the original's hole-only sum. Trained: that plus the band around the
            # hole, weighted, so the restoration continues the visible context.
            rec = losses.reconstruction_loss(images, restored, masks)
            fit = rec
            if band and config.overlap_weight:
                ring = holes.grow(masks, band) - masks
                fit += config.overlap_weight * losses.reconstruction_loss(images, restored, ring)
            adv = losses.generator_adversarial_loss(fake)
            per_image = {"rec": rec, "adv": adv, "total": fit + config.adv_weight * adv,
                         "disc": losses.discriminator_loss(real, fake)}
            means = {name: tf.nn.compute_average_loss(value, global_batch_size=global_batch)
                     for name, value in per_image.items()}
            # scale_loss is the identity except under float16 loss scaling; inside the tapes,
            # or its product is not recorded and every gradient is None.
            g_loss = g_optimizer.scale_loss(means["total"])
            d_loss = d_optimizer.scale_loss(means["disc"])
        g_grads = g_tape.gradient(g_loss, generator.trainable_variables)
        d_grads = d_tape.gradient(d_loss, discriminator.trainable_variables)
        g_optimizer.apply_gradients(zip(g_grads, generator.trainable_variables))
        d_optimizer.apply_gradients(zip(d_grads, discriminator.trainable_variables))
        return means

    @tf.function(jit_compile=config.xla)
    def train_step(images, masks):
        means = strategy.run(replica_step, args=(images, masks))
        # GAN weights jitter from step to step; their average restores faces more steadily.
        # The warm-up keeps the average from dwelling on the random initial weights.
        step = tf.cast(g_optimizer.iterations, tf.float32)
        decay = tf.minimum(config.ema, (1.0 + step) / (10.0 + step))
        for average, weight in zip(ema_generator.weights, generator.weights):
            average.assign(decay * average + (1.0 - decay) * weight)
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in means.items()}
    return train_step


@tf.function(reduce_retracing=True)
def _metric_sums(images, filled, masks):
    """Each metric summed over the batch. Compiled: run eagerly, SSIM and the seam spend more
    time dispatching their many small ops than computing them (229 against 85 ms a batch)."""
    return {name: tf.reduce_sum(values)
            for name, values in losses.image_metrics(images, filled, masks).items()}


def _add_metrics(totals, images, filled, masks):
    for name, total in _metric_sums(images, filled, masks).items():
        totals[name] = totals.get(name, 0.0) + float(total)


def poisson_composite(images, restored, masks):
    """The restoration blended into each image's context in the gradient domain."""
    holes = np.asarray(masks)[..., 0] > 0.5
    return tf.constant(np.stack([poisson_blend(image, fill, hole) for image, fill, hole
                                 in zip(np.asarray(images), np.asarray(restored), holes)]),
                       tf.float32)


def evaluate(restore, dataset, on_batch=None, poisson=False):
    """Mean metrics of the model's composite (with `poisson`, Poisson-blended instead) over
    a test dataset, and the image count."""
    totals, count = {}, 0
    for image_batch, masks in dataset:
        images, masked, restored, composite = restore(image_batch, masks)
        if poisson:
            composite = poisson_composite(images, restored, masks)
        _add_metrics(totals, images, composite, masks)
        if on_batch:
            on_batch(count, images, masked, composite)
        count += int(images.shape[0])
    return {k: v / count for k, v in totals.items()}, count


def evaluate_references(dataset):
    """Mean metrics of every training-free fill over the same images and holes; computed once
    per test set (they never change)."""
    totals, count = {name: {} for name in references.REFERENCES}, 0
    for image_batch, masks in dataset:
        images = to_unit(image_batch)
        for name, fill in references.REFERENCES.items():
            _add_metrics(totals[name], images, fill(images, masks), masks)
        count += int(images.shape[0])
    return {name: {k: v / count for k, v in metrics.items()} for name, metrics in totals.items()}


def best_reference(scores):
    """The name of the reference with the highest hole PSNR."""
    return max(scores, key=lambda name: scores[name]["hole_psnr"])


# ----------------------------------------------------------------------------- checkpoints

class TrainingStopped(Exception):
    """Training ended early, with its state saved where it could be; run.py prints the message
    (and, when `resumable`, how to resume) and exits with `exit_code`."""

    def __init__(self, message, exit_code, resumable=False):
        super().__init__(message)
        self.exit_code, self.resumable = exit_code, resumable


def _save(manager, number):
    """Saves a checkpoint; on failure the previous one stays the latest (the manager updates
    its index only after the new files are complete) and the failed save's files go."""
    try:
        return manager.save(checkpoint_number=number)
    except (OSError, tf.errors.OpError) as error:
        # TensorFlow writes a checkpoint into PREFIX_temp/ and renames it when complete.
        for name in os.listdir(manager.directory):
            if name == f"ckpt-{number}_temp" or name.startswith(f"ckpt-{number}."):
                path = os.path.join(manager.directory, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        what = os.path.join(manager.directory, f"ckpt-{number}")
        if run_folder.no_space(error):
            raise OSError(errno.ENOSPC, "no space left on device", what) from None
        reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0][:200]
        raise TrainingStopped(f"could not write {what} ({reason}); the last good checkpoint, "
                              f"{manager.latest_checkpoint}, is kept", 1) from None


def _catch_stop_signals():
    """SIGINT/SIGTERM set a flag the loop checks between steps, so the step in flight ends."""
    caught = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    return caught, previous


# ----------------------------------------------------------------------------- loops

def train(config, out_dir, images, train_idx, test_idx, generator, discriminator, strategy,
          resume=False):
    """Trains for config.epoch epochs, writing grids, checkpoints, metrics and loss.png.

    Raises TrainingStopped on SIGINT/SIGTERM (after checkpointing the finished steps) and on
    a non-finite loss (keeping the last good checkpoint)."""
    # Every worker of a cluster runs the same code and must save checkpoints (saving takes
    # part in collectives); all but the chief write into a scratch folder.
    out = out_dir if is_chief() else tempfile.mkdtemp(prefix="worker-")
    with strategy.scope():
        g_optimizer, d_optimizer = (make_optimizer(model, config.lr, config.beta1, config.beta2)
                                    for model in (generator, discriminator))
        ema_generator = make_ema_generator(generator)
    progress = progress_variables()
    ckpt = tf.train.Checkpoint(generator=generator, ema_generator=ema_generator,
                               discriminator=discriminator,
                               g_optimizer=g_optimizer, d_optimizer=d_optimizer, **progress)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(out, "checkpoints"), max_to_keep=3)

    def global_step():  # .numpy() also reads a multi-worker MirroredVariable
        return int(g_optimizer.iterations.numpy())

    if resume:
        latest = tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints"))
        restore_checkpoint(ckpt, latest, images.size)
        print(f"resumed from {latest}: epoch {int(ckpt.epoch)}, step {global_step()}")
    train_step = make_train_step(
        config=config, generator=generator, discriminator=discriminator,
        g_optimizer=g_optimizer, d_optimizer=d_optimizer, ema_generator=ema_generator,
        global_batch=config.batch, strategy=strategy)
    restore = make_restore(ema_generator, config)
    sample = images.read(train_idx[:SAMPLE_COUNT])
    if is_chief():
        save_config(config, out_dir)
    test_data = datamanager.test_dataset(images, test_idx, config.batch, config.test_mask)
    scores = evaluate_references(test_data)
    best = best_reference(scores)
    monitor = outputs.Monitor(out, restore, sample,
                              holes.make_masks("center", len(sample), images.size, [0, 0]),
                              scores,
                              resumed_at=(global_step(), int(ckpt.epoch)) if resume else None)
    steps_per_epoch = len(train_idx) // config.batch
    if int(ckpt.epoch) == 0 and int(ckpt.step_in_epoch) == 0:
        monitor.write_grid(0)
    elif resume and int(ckpt.step_in_epoch) == 0:
        # stopped at an epoch's end, perhaps before that epoch's pictures were drawn
        monitor.draw(int(ckpt.epoch))

    estimate = outputs.Estimate(config.batch, steps_per_epoch, config.epoch, global_step(),
                                float(ckpt.train_seconds))
    caught, previous_handlers = _catch_stop_signals()
    try:
        for epoch in range(int(ckpt.epoch), config.epoch):
            done = int(ckpt.step_in_epoch)
            data = strategy.experimental_distribute_dataset(
                datamanager.train_dataset(images, train_idx, config.batch, config.train_mask,
                                          config.seed, epoch, skip_batches=done))
            bar = outputs.Progress(steps_per_epoch)
            history, start = [], time.perf_counter()
            for step, (image_batch, masks) in enumerate(data, start=done + 1):
                history.append(train_step(image_batch, masks))
                if caught:
                    break
                rate = len(history) * config.batch / (time.perf_counter() - start)
                bar.update(step, [(k, float(v)) for k, v in history[-1].items()]
                           + [("img/s", rate)])
                estimate.on_step(bar)
            steps_end = time.perf_counter()
            seconds = steps_end - start
            estimate.on_epoch_end(bar)
            first_step = global_step() - len(history) + 1
            step_losses = {k: np.array([float(h[k]) for h in history])
                           for k in outputs.LOSS_NAMES}
            bad = np.flatnonzero(~np.all([np.isfinite(v) for v in step_losses.values()], axis=0))
            if bad.size:
                raise TrainingStopped(
                    f"loss became {step_losses['total'][bad[0]]} at step {first_step + bad[0]} "
                    f"(epoch {epoch + 1}); the last good checkpoint "
                    f"{manager.latest_checkpoint} is kept. Try a lower --lr.", 1)
            ckpt.train_seconds.assign_add(seconds)
            ckpt.train_images.assign_add(len(history) * config.batch)
            monitor.on_steps(first_step, epoch + 1, step_losses)
            if caught:
                ckpt.step_in_epoch.assign(done + len(history))
                saved = _save(manager, global_step())
                raise TrainingStopped(f"stopped by signal {caught[0]} at step {global_step()}; "
                                      f"saved {saved}.", 128 + caught[0], resumable=True)

            ckpt.epoch.assign(epoch + 1)
            ckpt.step_in_epoch.assign(0)
            model, _ = evaluate(restore, test_data)
            mean = {k: float(v.mean()) for k, v in step_losses.items()}
            print(f"Epoch [{epoch + 1} / {config.epoch}] ({global_step()} "
                  f"iterations) Rec: {mean['rec']:.2f}  Adv: {mean['adv']:.3f}  "
                  f"Tot: {mean['total']:.2f}  D: {mean['disc']:.3f} | test Rec: "
                  f"{model['rec']:.2f}  hole PSNR: {model['hole_psnr']:.2f} dB "
                  f"({best} {scores[best]['hole_psnr']:.2f})  seam: {model['seam']:.2f}  "
                  f"detail: {model['detail']:.2f}", flush=True)
            monitor.on_epoch_end(
                {"epoch": epoch + 1, "step": global_step(),
                 **{f"train_{k}": mean[k] for k in outputs.LOSS_NAMES},
                 **{f"test_{k}": v for k, v in model.items()},
                 **{f"{name}_{k}": v for name, metrics in scores.items()
                    for k, v in metrics.items()},
                 "train_seconds": float(ckpt.train_seconds),
                 "images_per_second": len(history) * config.batch / seconds},
                model)
            _save(manager, global_step())
            monitor.draw(epoch + 1)
            estimate.on_epoch_work(bar, time.perf_counter() - steps_end, config.epoch - epoch - 1)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        monitor.close()


def test(config, out_dir, images, test_idx, generator, poisson=True):
    """Restores the latest checkpoint's averaged generator, writes test/%08d.png and
    test_metrics.json, and scores the model against the training-free references, with and
    without Poisson blending (`poisson`: which one the pictures show and the headline is)."""
    latest, progress = load_generator(out_dir, generator, config.img_size)
    folder = os.path.join(out_dir, "test")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):  # an earlier test's pictures, perhaps of more images
        if name.endswith(".png"):
            os.remove(os.path.join(folder, name))

    def write_images(first, images_, masked, composite):
        for i in range(images_.shape[0]):
            outputs.save_test_image(os.path.join(out_dir, "test", f"{first + i:08d}.png"),
                                    images_[i].numpy(), masked[i].numpy(), composite[i].numpy())

    restore = make_restore(generator, config)
    data = datamanager.test_dataset(images, test_idx, config.batch, config.test_mask)
    restore(*next(iter(data)))  # trace outside the timed loop
    start = time.perf_counter()
    model, count = evaluate(restore, data, write_images, poisson)
    seconds = time.perf_counter() - start
    other, _ = evaluate(restore, data, poisson=not poisson)
    scores = evaluate_references(data)
    best = best_reference(scores)
    train_seconds, train_images = float(progress["train_seconds"]), int(progress["train_images"])
    result = {
        "checkpoint": latest, "images": count, "mask": config.test_mask,
        "poisson": poisson, "model": model,
        # the same restorations composed the other way
        "model_without_poisson" if poisson else "model_with_poisson": other,
        "references": scores, "best_reference": best,
        "timing": {"train_seconds": train_seconds, "train_images": train_images,
                   # None for a checkpoint that does not record the images it trained on
                   "train_images_per_second": train_images / train_seconds
                   if train_images and train_seconds else None,
                   "test_ms_per_image": 1000.0 * seconds / count},
    }
    run_folder.write_text(os.path.join(out_dir, "test_metrics.json"), json.dumps(result, indent=2))
    ref = scores[best]
    composite = "Poisson-blended" if poisson else "composed as trained"
    print(f"Test on {count} images ({config.test_mask} hole, {composite}), model vs the best training-free "
          f"fill ({best}): hole PSNR {model['hole_psnr']:.2f} vs {ref['hole_psnr']:.2f} dB "
          f"({model['hole_psnr'] - ref['hole_psnr']:+.2f}); hole L1 {model['hole_l1']:.1f} vs "
          f"{ref['hole_l1']:.1f}; seam {model['seam']:.2f} vs {ref['seam']:.2f}; detail "
          f"{model['detail']:.2f} vs {ref['detail']:.2f}; SSIM {model['ssim']:.4f} vs "
          f"{ref['ssim']:.4f}; Rec {model['rec']:.2f} vs {ref['rec']:.2f}")
    print(f"{'Without' if poisson else 'With'} Poisson blending: hole PSNR "
          f"{other['hole_psnr']:.2f} dB, hole L1 {other['hole_l1']:.1f}, seam "
          f"{other['seam']:.2f}, detail {other['detail']:.2f}")
    if result["timing"]["train_images_per_second"]:
        print(f"Training time {train_seconds:.0f} s "
              f"({result['timing']['train_images_per_second']:.1f} images/s); "
              f"test {result['timing']['test_ms_per_image']:.1f} ms per image "
              "(including writing its PNG)")
    return result
