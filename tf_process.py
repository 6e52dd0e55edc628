"""Losses, the train step, the training and test loops, checkpoints, metrics and every
picture and plot the project writes."""
import csv
import json
import os
import shlex
import signal
import sys
import tempfile
import time

import matplotlib
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

import datamanager

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first
from matplotlib.ticker import MaxNLocator

LOSS_NAMES = ("rec", "adv", "total", "disc")
SAMPLE_COUNT = 100


# ----------------------------------------------------------------------------- losses

def reconstruction_loss(images, restored, masks):
    """Per image: the sum of squared errors inside the hole (the original's "Error(MSE)")."""
    return tf.reduce_sum(tf.square(masks * (images - restored)), axis=[1, 2, 3])


def discriminator_loss(real_logits, fake_logits):
    """Per image: cross-entropy of calling real images real and composites fake."""
    real = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits)
    return tf.reshape(real + fake, [-1])


def generator_adversarial_loss(fake_logits):
    """Per image: the non-saturating GAN loss, -log D(composite)."""
    return tf.reshape(
        tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits), [-1])


# ----------------------------------------------------------------------------- devices

def _cpu_has_bfloat16():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def configure_devices(gpus=None, mixed_precision=False):
    """Chooses the devices, the precision policy and the distribution strategy.

    gpus: indices of the GPUs to use (the original hard-coded CUDA_VISIBLE_DEVICES).
    Returns (strategy, policy name).
    """
    physical = tf.config.list_physical_devices("GPU")
    if gpus is not None:
        missing = [i for i in gpus if i >= len(physical)]
        if missing:
            raise ValueError(f"--gpus {','.join(map(str, gpus))}: this machine has "
                             f"{len(physical)} GPU(s); pick indices below {len(physical)}")
        tf.config.set_visible_devices([physical[i] for i in gpus], "GPU")
    visible = tf.config.get_visible_devices("GPU")
    for gpu in visible:  # the original's allow_growth: take memory as needed, not all at once
        tf.config.experimental.set_memory_growth(gpu, True)
    policy = "float32"
    if mixed_precision:
        if visible:
            policy = "mixed_float16"
        elif _cpu_has_bfloat16():
            policy = "mixed_bfloat16"
    tf.keras.mixed_precision.set_global_policy(policy)
    if "TF_CONFIG" in os.environ:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(visible) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    return strategy, policy


def is_chief(strategy):
    """Only the chief writes pictures, metrics and the checkpoints a user keeps."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)


# ----------------------------------------------------------------------------- steps

def to_unit(images):
    return tf.cast(images, tf.float32) / 255.0


def make_train_step(generator, discriminator, g_optimizer, d_optimizer, adv_weight,
                    global_batch, strategy, ema_generator, ema_decay, jit_compile=False):
    """One compiled step of the two-player GAN; returns the losses it computed.

    ema_generator follows an exponential moving average of the generator's weights."""

    def replica_step(images, masks):
        images = to_unit(images)
        masked = images * (1.0 - masks)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            restored = tf.cast(generator(masked, training=True), tf.float32)
            # The discriminator judges what a user sees: the context kept, the hole filled.
            composite = masked + restored * masks
            real_logits = discriminator(images, training=True)
            fake_logits = discriminator(composite, training=True)
            rec = reconstruction_loss(images, restored, masks)
            adv = generator_adversarial_loss(fake_logits)
            per_image = {"rec": rec, "adv": adv, "total": rec + adv_weight * adv,
                         "disc": discriminator_loss(real_logits, fake_logits)}
            losses = {name: tf.nn.compute_average_loss(value, global_batch_size=global_batch)
                      for name, value in per_image.items()}
        # scale_loss is the identity except under float16 loss scaling.
        g_grads = g_tape.gradient(g_optimizer.scale_loss(losses["total"]),
                                  generator.trainable_variables)
        d_grads = d_tape.gradient(d_optimizer.scale_loss(losses["disc"]),
                                  discriminator.trainable_variables)
        g_optimizer.apply_gradients(zip(g_grads, generator.trainable_variables))
        d_optimizer.apply_gradients(zip(d_grads, discriminator.trainable_variables))
        return losses

    @tf.function(jit_compile=jit_compile)
    def train_step(images, masks):
        losses = strategy.run(replica_step, args=(images, masks))
        # GAN weights jitter from step to step; their average restores faces more steadily.
        # The warm-up keeps the average from dwelling on the random initial weights.
        step = tf.cast(g_optimizer.iterations, tf.float32)
        decay = tf.minimum(ema_decay, (1.0 + step) / (10.0 + step))
        for average, weight in zip(ema_generator.weights, generator.weights):
            average.assign(decay * average + (1.0 - decay) * weight)
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in losses.items()}
    return train_step


def make_restore(generator):
    """uint8 images and masks -> (images, masked, restored, composite), all float in [0, 1]."""
    @tf.function(reduce_retracing=True)
    def restore(images, masks):
        images = to_unit(images)
        masked = images * (1.0 - masks)
        restored = tf.cast(generator(masked, training=False), tf.float32)
        return images, masked, restored, masked + restored * masks
    return restore


# ----------------------------------------------------------------------------- metrics

def hole_psnr(images, filled, masks):
    """PSNR over the hidden pixels alone (tf.image.psnr has no mask argument)."""
    channels = tf.cast(tf.shape(images)[-1], tf.float32)
    mse = (tf.reduce_sum(masks * tf.square(images - filled), axis=[1, 2, 3])
           / (tf.reduce_sum(masks, axis=[1, 2, 3]) * channels))
    return 10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-10)) / tf.math.log(10.0)


def image_metrics(images, filled, masks):
    """Per image: reconstruction loss, PSNR and SSIM of the whole picture, PSNR of the hole."""
    return {"rec": reconstruction_loss(images, filled, masks),
            "psnr": tf.image.psnr(images, filled, max_val=1.0),
            "ssim": tf.image.ssim(images, filled, max_val=1.0),
            "hole_psnr": hole_psnr(images, filled, masks)}


def mean_border_fill(images, masks, width):
    """The naive baseline: the hole filled with the mean colour of a `width`-pixel ring
    around it."""
    grown = tf.nn.max_pool2d(masks, 2 * width + 1, 1, "SAME")
    ring = grown - masks
    mean = (tf.reduce_sum(ring * images, axis=[1, 2], keepdims=True)
            / tf.maximum(tf.reduce_sum(ring, axis=[1, 2], keepdims=True), 1.0))
    return images * (1.0 - masks) + mean * masks


def evaluate(restore, dataset, on_batch=None):
    """Mean metrics of the model's composite and of the baseline over a test dataset."""
    model, baseline, count = {}, {}, 0
    for image_batch, masks in dataset:
        images, masked, _, composite = restore(image_batch, masks)
        width = max(1, images.shape[1] // 32)
        for totals, filled in ((model, composite), (baseline, mean_border_fill(images, masks, width))):
            for name, values in image_metrics(images, filled, masks).items():
                totals[name] = totals.get(name, 0.0) + float(tf.reduce_sum(values))
        if on_batch:
            on_batch(count, images, masked, composite)
        count += int(images.shape[0])
    return ({k: v / count for k, v in model.items()}, {k: v / count for k, v in baseline.items()},
            count)


# ----------------------------------------------------------------------------- pictures

def _to_uint8(images):
    return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def _mosaic(images, columns):
    n, h, w, c = images.shape
    rows = -(-n // columns)
    canvas = np.zeros((rows * h, columns * w, c), images.dtype)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        canvas[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
    return canvas


def _labelled_panels(panels, titles, path, gap=4):
    """Panels side by side on white, each under its title; saved as PNG."""
    font = ImageFont.load_default(size=max(12, panels[0].shape[0] // 40))
    title_h = font.size + 8
    height = max(p.shape[0] for p in panels) + title_h
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for panel, title in zip(panels, titles):
        draw.text((x + panel.shape[1] // 2, 4), title, fill="black", font=font, anchor="ma")
        canvas.paste(Image.fromarray(panel), (x, title_h))
        x += panel.shape[1] + gap
    tmp = path + ".tmp.png"
    canvas.save(tmp)
    os.replace(tmp, path)


def save_sample_grid(path, images, masked, restored, composite):
    """The original's four grids: Input, Masked, Restoration (composite) and Difference."""
    columns = int(np.ceil(np.sqrt(len(images))))
    difference = np.square(np.asarray(images) - np.asarray(restored))
    panels = [_mosaic(_to_uint8(p), columns) for p in (images, masked, composite, difference)]
    _labelled_panels(panels, ["Input", "Masked", "Restoration", "Difference"], path)


def save_test_image(path, image, masked, composite):
    """One test picture: original | masked | restored composite."""
    Image.fromarray(np.concatenate(_to_uint8([image, masked, composite]), axis=1)).save(path)


def _smooth(values, window):
    if len(values) < window:
        return np.asarray(values)
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_losses(out_dir):
    """loss.png: smoothed training losses per step and test metrics per epoch."""
    steps = read_csv(os.path.join(out_dir, "train_loss.csv"))
    epochs = read_csv(os.path.join(out_dir, "metrics.csv"))
    if not steps:
        return
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    window = max(1, min(25, len(steps) // 10))
    x = np.array([r["step"] for r in steps])
    ax = axes[0]
    ax.plot(x, [r["rec"] for r in steps], color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(x[window - 1:], _smooth([r["rec"] for r in steps], window), color="tab:blue",
            label="train (smoothed)")
    if epochs:
        ax.plot([r["step"] for r in epochs], [r["test_rec"] for r in epochs], "o-",
                color="tab:red", label="test")
        ax.plot([r["step"] for r in epochs], [r["baseline_rec"] for r in epochs], "--",
                color="tab:gray", label="test, mean-colour baseline")
    ax.set(title="Reconstruction loss (sum over hole)", xlabel="step", yscale="log")
    ax.legend()
    ax = axes[1]
    for name, label, color in (("adv", "generator adversarial", "tab:green"),
                               ("disc", "discriminator", "tab:purple")):
        ax.plot(x[window - 1:], _smooth([r[name] for r in steps], window), color=color, label=label)
    ax.set(title="Adversarial losses (smoothed)", xlabel="step")
    ax.legend()
    ax = axes[2]
    if epochs:
        e = [r["epoch"] for r in epochs]
        ax.plot(e, [r["test_hole_psnr"] for r in epochs], "o-", label="hole PSNR")
        ax.plot(e, [r["baseline_hole_psnr"] for r in epochs], "--", color="tab:blue", alpha=0.6,
                label="hole PSNR, mean-colour baseline")
        ax.plot(e, [r["test_psnr"] for r in epochs], "s-", label="image PSNR")
        ax.set(xlabel="epoch", ylabel="dB")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        twin = ax.twinx()
        twin.plot(e, [r["test_ssim"] for r in epochs], "^--", color="tab:gray", label="SSIM")
        twin.set_ylabel("SSIM")
        twin.legend(loc="lower right")
        ax.legend(loc="center right", fontsize="small")
    ax.set_title("Test metrics per epoch")
    fig.tight_layout()
    tmp = os.path.join(out_dir, "loss.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, os.path.join(out_dir, "loss.png"))


# ----------------------------------------------------------------------------- records

def read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def append_csv(path, rows):
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------- loops

def make_optimizer(args, model):
    optimizer = tf.keras.optimizers.Adam(args.lr, beta_1=args.beta1, beta_2=args.beta2)
    if tf.keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)  # slots exist before tracing and restoring
    return optimizer


def make_ema_generator(generator):
    """A copy of the generator, starting from its weights, for the train step to average into."""
    ema_generator = tf.keras.models.clone_model(generator)
    ema_generator.set_weights(generator.get_weights())
    return ema_generator


class TrainingStopped(Exception):
    """Training ended early, with its state saved where it could be; run.py prints the message
    and exits with `exit_code`."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def _checkpoint(generator, ema_generator, discriminator, g_optimizer, d_optimizer):
    return tf.train.Checkpoint(generator=generator, ema_generator=ema_generator,
                               discriminator=discriminator,
                               g_optimizer=g_optimizer, d_optimizer=d_optimizer,
                               epoch=tf.Variable(0, dtype=tf.int64),
                               step_in_epoch=tf.Variable(0, dtype=tf.int64),
                               train_seconds=tf.Variable(0.0, dtype=tf.float64))


def _restore(checkpoint, path, img_size, full=True):
    """Restores a checkpoint, turning a mismatch into a one-line error."""
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched() if full else status.expect_partial()
    except (ValueError, AssertionError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0][:300]
        raise TrainingStopped(f"checkpoint {path} does not fit this model (trained with another "
                              f"--img_size than {img_size}, or another architecture): {reason}",
                              2) from None


def _save(manager, number):
    """Saves a checkpoint; on failure the previous one stays the latest (the manager updates
    its index only after the new files are complete)."""
    try:
        return manager.save(checkpoint_number=number)
    except (OSError, tf.errors.OpError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "message", str(error))
        raise TrainingStopped(f"could not write a checkpoint in {manager.directory} ({reason}); "
                              f"the last good one, {manager.latest_checkpoint}, is kept", 1) from None


def _truncate_csv(path, column, last):
    """Drops rows written after the checkpoint a run resumes from."""
    rows = [r for r in read_csv(path) if r[column] <= last]
    if os.path.exists(path):
        os.remove(path)
    if rows:
        append_csv(path, rows)


def _catch_stop_signals():
    """SIGINT/SIGTERM set a flag the loop checks between steps, so the step in flight ends."""
    caught = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    return caught, previous


def _resume_command():
    return "python " + " ".join(shlex.quote(a) for a in sys.argv
                                if a != "--resume") + " --resume"


def train(args, images, train_idx, test_idx, generator, discriminator, strategy):
    """Trains for args.epoch epochs, writing grids, checkpoints, metrics and loss.png.

    Raises TrainingStopped on SIGINT/SIGTERM (after checkpointing the finished steps) and on
    a non-finite loss (keeping the last good checkpoint)."""
    # Every worker of a cluster runs the same code and must save checkpoints (saving takes
    # part in collectives); all but the chief write into a scratch folder.
    out = args.out_dir if is_chief(strategy) else tempfile.mkdtemp(prefix="worker-")
    os.makedirs(os.path.join(out, "training"), exist_ok=True)
    with strategy.scope():
        g_optimizer, d_optimizer = (make_optimizer(args, model)
                                    for model in (generator, discriminator))
        ema_generator = make_ema_generator(generator)
    ckpt = _checkpoint(generator, ema_generator, discriminator, g_optimizer, d_optimizer)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(out, "checkpoints"), max_to_keep=3)

    def global_step():  # .numpy() also reads a multi-worker MirroredVariable
        return int(g_optimizer.iterations.numpy())

    if args.resume:
        latest = tf.train.latest_checkpoint(os.path.join(args.out_dir, "checkpoints"))
        _restore(ckpt, latest, args.img_size)
        _truncate_csv(os.path.join(out, "train_loss.csv"), "step", global_step())
        _truncate_csv(os.path.join(out, "metrics.csv"), "epoch", int(ckpt.epoch))
        print(f"resumed from {latest}: epoch {int(ckpt.epoch)}, "
              f"step {global_step()}")
    train_step = make_train_step(generator, discriminator, g_optimizer, d_optimizer,
                                 args.adv_weight, args.batch, strategy, ema_generator, args.ema,
                                 args.xla)
    restore = make_restore(ema_generator)
    writer = tf.summary.create_file_writer(os.path.join(out, "logs"))

    sample = images.read(train_idx[:SAMPLE_COUNT])
    sample_masks = datamanager.make_masks("center", len(sample), images.size, [0, 0])
    test_data = datamanager.test_dataset(images, test_idx, args.batch, args.test_mask)
    steps_per_epoch = len(train_idx) // args.batch

    def write_grid(epoch):
        save_sample_grid(os.path.join(out, "training", f"{epoch:08d}.png"),
                         *restore(sample, sample_masks))

    caught, previous_handlers = _catch_stop_signals()
    try:
        for epoch in range(int(ckpt.epoch), args.epoch):
            done = int(ckpt.step_in_epoch)
            if done == 0:
                write_grid(epoch)
            data = strategy.experimental_distribute_dataset(
                datamanager.train_dataset(images, train_idx, args.batch, args.train_mask,
                                          args.seed, epoch, skip_batches=done))
            bar = tf.keras.utils.Progbar(steps_per_epoch, stateful_metrics=["img/s"],
                                         unit_name="step")
            history, last_shown, start = [], 0.0, time.perf_counter()
            for step, (image_batch, masks) in enumerate(data, start=done + 1):
                history.append(train_step(image_batch, masks))
                now = time.perf_counter()
                if now - last_shown >= 1.0 or step == steps_per_epoch or caught:
                    bar.update(step, [(k, float(v)) for k, v in history[-1].items()]
                               + [("img/s", len(history) * args.batch / (now - start))])
                    last_shown = now
                if caught:
                    break
            seconds = time.perf_counter() - start
            first_step = global_step() - len(history) + 1
            losses = {k: np.array([float(h[k]) for h in history]) for k in LOSS_NAMES}
            bad = np.flatnonzero(~np.all([np.isfinite(v) for v in losses.values()], axis=0))
            if bad.size:
                raise TrainingStopped(
                    f"loss became {losses['total'][bad[0]]} at step {first_step + bad[0]} "
                    f"(epoch {epoch + 1}); the last good checkpoint "
                    f"{manager.latest_checkpoint} is kept. Try a lower --lr.", 1)
            ckpt.train_seconds.assign_add(seconds)
            with writer.as_default():
                for i in range(len(history)):
                    for k in LOSS_NAMES:
                        tf.summary.scalar(f"train/{k}", losses[k][i], step=first_step + i)
            append_csv(os.path.join(out, "train_loss.csv"),
                       [{"step": first_step + i, "epoch": epoch + 1,
                         **{k: losses[k][i] for k in LOSS_NAMES}} for i in range(len(history))])
            if caught:
                ckpt.step_in_epoch.assign(done + len(history))
                saved = _save(manager, global_step())
                writer.flush()
                raise TrainingStopped(
                    f"stopped by signal {caught[0]} at step {global_step()}; "
                    f"saved {saved}. Resume with: {_resume_command()}", 128 + caught[0])

            ckpt.epoch.assign(epoch + 1)
            ckpt.step_in_epoch.assign(0)
            model, baseline, _ = evaluate(restore, test_data)
            mean = {k: float(v.mean()) for k, v in losses.items()}
            print(f"Epoch [{epoch + 1} / {args.epoch}] ({global_step()} "
                  f"iterations) Rec: {mean['rec']:.2f}  Adv: {mean['adv']:.3f}  "
                  f"Tot: {mean['total']:.2f}  D: {mean['disc']:.3f} | test Rec: "
                  f"{model['rec']:.2f}  hole PSNR: {model['hole_psnr']:.2f} dB  "
                  f"SSIM: {model['ssim']:.4f}", flush=True)
            with writer.as_default():
                for k, v in model.items():
                    tf.summary.scalar(f"test/{k}", v, step=global_step())
            append_csv(os.path.join(out, "metrics.csv"),
                       [{"epoch": epoch + 1, "step": global_step(),
                         **{f"train_{k}": mean[k] for k in LOSS_NAMES},
                         **{f"test_{k}": v for k, v in model.items()},
                         "baseline_rec": baseline["rec"],
                         "baseline_hole_psnr": baseline["hole_psnr"],
                         "train_seconds": float(ckpt.train_seconds),
                         "images_per_second": len(history) * args.batch / seconds}])
            _save(manager, global_step())
            plot_losses(out)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        writer.flush()
    write_grid(args.epoch)


def test(args, images, test_idx, generator):
    """Restores the latest checkpoint's averaged generator and writes test/%08d.png and
    test_metrics.json."""
    out = args.out_dir
    ckpt = tf.train.Checkpoint(ema_generator=generator)
    latest = tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))
    if latest is None:
        raise TrainingStopped(f"no checkpoint in {os.path.join(out, 'checkpoints')}: train first "
                              "(--mode train_test or train) or point --out_dir at a trained run",
                              2)
    _restore(ckpt, latest, args.img_size, full=False)
    os.makedirs(os.path.join(out, "test"), exist_ok=True)

    def write_images(first, images_, masked, composite):
        for i in range(images_.shape[0]):
            save_test_image(os.path.join(out, "test", f"{first + i:08d}.png"),
                            images_[i].numpy(), masked[i].numpy(), composite[i].numpy())

    restore = make_restore(generator)
    data = datamanager.test_dataset(images, test_idx, args.batch, args.test_mask)
    restore(*next(iter(data)))  # trace outside the timed loop
    start = time.perf_counter()
    model, baseline, count = evaluate(restore, data, write_images)
    seconds = time.perf_counter() - start
    history = read_csv(os.path.join(out, "metrics.csv"))
    train_seconds = history[-1]["train_seconds"] if history else None
    trained = history[-1]["step"] * args.batch if history else None
    result = {
        "checkpoint": latest, "images": count, "mask": args.test_mask,
        "model": model, "baseline_mean_border_fill": baseline,
        "timing": {"train_seconds": train_seconds,
                   "train_images_per_second": trained / train_seconds if history else None,
                   "test_ms_per_image": 1000.0 * seconds / count},
    }
    with open(os.path.join(out, "test_metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"Test on {count} images ({args.test_mask} hole): "
          f"model hole PSNR {model['hole_psnr']:.2f} dB vs baseline {baseline['hole_psnr']:.2f} dB; "
          f"PSNR {model['psnr']:.2f} vs {baseline['psnr']:.2f}; "
          f"SSIM {model['ssim']:.4f} vs {baseline['ssim']:.4f}; "
          f"Rec {model['rec']:.2f} vs {baseline['rec']:.2f}")
    if history:
        print(f"Training time {train_seconds:.0f} s ({result['timing']['train_images_per_second']:.1f} "
              f"images/s); test {result['timing']['test_ms_per_image']:.1f} ms per image "
              "(including writing its PNG)")
    return result
