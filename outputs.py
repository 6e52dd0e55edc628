"""Everything a run writes for a person to read: the sample grids, the test pictures,
loss.png, the CSV records, the TensorBoard scalars and the console progress.

The training loop calls one Monitor at the end of each epoch, as keras-io's DCGAN example
calls its GANMonitor callback; it never lays out a picture itself.
"""
import csv
import os
import sys
import time

import matplotlib
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

import photo_io
import run_folder
from datamanager import duration

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

LOSS_NAMES = ("rec", "adv", "total", "disc")


# ----------------------------------------------------------------------------- pictures

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
    photo_io.save_png(canvas, path)


DIFFERENCE_SCALE = 0.25  # |x - x_hat| at or above this shows as the brightest colour


def difference_map(images, restored):
    """|x - restoration| averaged over the channels, through the magma colour map, so that
    errors of a few percent are visible (squared errors on a [0, 1] scale are almost black)."""
    error = np.abs(np.asarray(images) - np.asarray(restored)).mean(-1) / DIFFERENCE_SCALE
    return matplotlib.colormaps["magma"](np.clip(error, 0.0, 1.0))[..., :3]


def save_sample_grid(path, images, masked, composite):
    """The original's four grids: Input, Masked, Restoration (the composite a user sees) and
    Difference, where the restoration is wrong (0 outside the hole and its blend band)."""
    columns = int(np.ceil(np.sqrt(len(images))))
    panels = [_mosaic(photo_io.to_uint8(p), columns)
              for p in (images, masked, composite, difference_map(images, composite))]
    _labelled_panels(panels, ["Input", "Masked", "Restoration",
                              f"Difference |x - restoration|, 0 to {DIFFERENCE_SCALE}"], path)


def save_test_image(path, image, masked, composite):
    """One test picture: original | masked | restored composite."""
    row = np.concatenate(photo_io.to_uint8([image, masked, composite]), axis=1)
    photo_io.save_png(Image.fromarray(row), path)


def _smooth(values, window):
    if len(values) < window:
        return np.asarray(values)
    return np.convolve(values, np.ones(window) / window, mode="valid")


REFERENCE_STYLE = {"telea": ("OpenCV Telea", "tab:orange"),
                   "navier_stokes": ("OpenCV Navier-Stokes", "tab:brown"),
                   "mean_border": ("mean border colour", "tab:gray")}


def plot_losses(path, steps, epochs, references):
    """loss.png: smoothed training losses per step, and the test metrics per epoch against the
    training-free references (flat lines: they do not train)."""
    if not steps:
        return
    best = max(references, key=lambda name: references[name]["hole_psnr"])
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.5))
    window = max(1, min(25, len(steps) // 10))
    x = np.array([r["step"] for r in steps])
    ax = axes[0]
    ax.plot(x, [r["rec"] for r in steps], color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(x[window - 1:], _smooth([r["rec"] for r in steps], window), color="tab:blue",
            label="train (smoothed)")
    if epochs:
        ax.plot([r["step"] for r in epochs], [r["test_rec"] for r in epochs], "o-",
                color="tab:red", label="test")
    label, color = REFERENCE_STYLE[best]
    ax.axhline(references[best]["rec"], ls="--", color=color, label=f"test, {label}")
    ax.set(title="Reconstruction loss (sum over hole)", xlabel="step", yscale="log")
    ax.legend()
    ax = axes[1]
    for name, label, color in (("adv", "generator adversarial", "tab:green"),
                               ("disc", "discriminator", "tab:purple")):
        ax.plot(x[window - 1:], _smooth([r[name] for r in steps], window), color=color, label=label)
    ax.set(title="Adversarial losses (smoothed)", xlabel="step")
    ax.legend()
    e = [r["epoch"] for r in epochs]
    ax = axes[2]
    ax.plot(e, [r["test_hole_psnr"] for r in epochs], "o-", color="tab:red", label="model")
    for name, (label, color) in REFERENCE_STYLE.items():
        ax.axhline(references[name]["hole_psnr"], ls="--", color=color, label=label)
    ax.set(title="Test hole PSNR (dB)", xlabel="epoch")
    ax.legend(fontsize="small")
    ax = axes[3]
    ax.plot(e, [r["test_seam"] for r in epochs], "o-", color="tab:red", label="seam, model")
    ax.axhline(references[best]["seam"], ls="--", color="tab:red", alpha=0.6,
               label=f"seam, {REFERENCE_STYLE[best][0]}")
    ax.set(title="Test seam (lower is better) and detail (a face: 1)", xlabel="epoch",
           ylabel="seam")
    twin = ax.twinx()
    twin.plot(e, [r["test_detail"] for r in epochs], "s-", color="tab:blue", label="detail, model")
    twin.axhline(references[best]["detail"], ls="--", color="tab:blue", alpha=0.6,
                 label=f"detail, {REFERENCE_STYLE[best][0]}")
    twin.set_ylabel("detail")
    lines = ax.get_legend_handles_labels()
    twin_lines = twin.get_legend_handles_labels()
    ax.legend(lines[0] + twin_lines[0], lines[1] + twin_lines[1], fontsize="small",
              loc="center left")
    for ax in axes[2:]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # What tight_layout finds for this figure, fixed: computing it took 0.6 s of every
    # epoch's redraw.
    fig.subplots_adjust(left=0.035, right=0.965, bottom=0.13, top=0.92, wspace=0.16)
    try:
        with run_folder.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- records

def _append_csv(path, rows):
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if f.tell() == 0:
            writer.writeheader()
        writer.writerows(rows)


def _rewrite_csv(path, rows):
    with run_folder.atomic_path(path) as tmp:
        _append_csv(tmp, rows)


class Monitor:
    """The records of one run (train_loss.csv, metrics.csv, TensorBoard scalars, loss.png)
    and its sample grids. It keeps the rows in memory, so loss.png is drawn without reading
    the CSVs back.

    resumed_at: (step, epoch) of the checkpoint a resumed run starts from; rows written
    after it are dropped from the files, since those steps will be trained again."""

    def __init__(self, out_dir, restore, sample, sample_masks, references, resumed_at=None):
        self.out_dir, self.references = out_dir, references
        self.restore, self.sample, self.sample_masks = restore, sample, sample_masks
        self.steps_path = os.path.join(out_dir, "train_loss.csv")
        self.epochs_path = os.path.join(out_dir, "metrics.csv")
        self.steps, self.epochs = [], []
        if resumed_at:
            step, epoch = resumed_at
            self.steps = [r for r in run_folder.read_csv(self.steps_path) if r["step"] <= step]
            self.epochs = [r for r in run_folder.read_csv(self.epochs_path) if r["epoch"] <= epoch]
        for path, rows in ((self.steps_path, self.steps), (self.epochs_path, self.epochs)):
            if rows:
                _rewrite_csv(path, rows)
            elif os.path.exists(path):
                os.remove(path)
        os.makedirs(os.path.join(out_dir, "training"), exist_ok=True)
        self.writer = tf.summary.create_file_writer(os.path.join(out_dir, "logs"))

    def write_grid(self, epoch):
        """training/%08d.png: the fixed sample batch restored by the model after `epoch`
        epochs."""
        images, masked, _, composite = self.restore(self.sample, self.sample_masks)
        save_sample_grid(os.path.join(self.out_dir, "training", f"{epoch:08d}.png"), images,
                         masked, composite)

    def on_steps(self, first_step, epoch, losses):
        """Records the steps trained in an epoch: losses maps each name to one value a step."""
        rows = [{"step": first_step + i, "epoch": epoch,
                 **{k: float(losses[k][i]) for k in LOSS_NAMES}}
                for i in range(len(losses[LOSS_NAMES[0]]))]
        if not rows:
            return
        with self.writer.as_default():
            for row in rows:
                for k in LOSS_NAMES:
                    tf.summary.scalar(f"train/{k}", row[k], step=row["step"])
        _append_csv(self.steps_path, rows)
        self.steps += rows

    def on_epoch_end(self, row, test_metrics):
        """Records an epoch's row of metrics.csv and its test scalars. Called before the
        epoch's checkpoint is saved: if that save fails, the resumed run drops the row and
        trains the epoch again, so no epoch is recorded twice or lost."""
        with self.writer.as_default():
            for k, v in test_metrics.items():
                tf.summary.scalar(f"test/{k}", v, step=int(row["step"]))
        _append_csv(self.epochs_path, [row])
        self.epochs.append(row)

    def draw(self, epoch):
        """Redraws loss.png and writes the sample grid after `epoch` epochs: pictures only,
        drawn after the checkpoint (a resumed run draws them again)."""
        plot_losses(os.path.join(self.out_dir, "loss.png"), self.steps, self.epochs,
                    self.references)
        self.write_grid(epoch)

    def close(self):
        self.writer.flush()


# ----------------------------------------------------------------------------- console

class Progress:
    """An epoch's progress: Keras's bar on a terminal; when output goes to a file (a log,
    nohup, CI), a plain line every `every` seconds instead, with no carriage returns or
    colour codes."""

    def __init__(self, total, every=5.0):
        self.total, self.every = total, every
        self.tty = sys.stdout.isatty()
        self.bar = tf.keras.utils.Progbar(total, stateful_metrics=["img/s"], unit_name="step") \
            if self.tty else None
        self.last = time.perf_counter()

    def note(self, text):
        """A line of its own between progress updates (below the bar on a terminal)."""
        print(f"\n{text}" if self.bar else text, flush=True)

    def update(self, step, values, force=False):
        """values: (name, number) pairs; shown at most every second on a terminal."""
        now = time.perf_counter()
        due = force or step == self.total or now - self.last >= (1.0 if self.tty else self.every)
        if not due:
            return
        self.last = now
        if self.bar:
            self.bar.update(step, values)
        else:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in values)
            print(f"  step {step}/{self.total}  {shown}", flush=True)


BUDGET_SECONDS = 15 * 60  # what the default run is sized for on a CPU with bfloat16


def estimate_line(images_per_second, batch, steps_per_epoch, epochs, steps_left, seconds_so_far):
    """The run's length, from the measured speed: its whole training time (what it has
    trained so far, resumed runs included, plus the steps left at this speed) and, over
    the budget, the --epoch that fits it."""
    step_seconds = batch / images_per_second
    total = seconds_so_far + steps_left * step_seconds
    line = (f"speed: {images_per_second:.1f} images/s, so training takes about {duration(total)} "
            f"({epochs} epochs of {steps_per_epoch} steps; {duration(steps_left * step_seconds)} "
            "from now), plus each epoch's evaluation")
    if total > BUDGET_SECONDS:
        fits = int(BUDGET_SECONDS // (steps_per_epoch * step_seconds))
        line += (f". Over {duration(BUDGET_SECONDS)}: --epoch {fits} fits it" if fits else
                 f". One epoch alone takes over {duration(BUDGET_SECONDS)}: use fewer images "
                 "(--limit, --n_synthetic) or a smaller --img_size")
    return line


def overhead_line(images_per_second, batch, steps_per_epoch, epochs, epochs_left,
                  overhead_seconds):
    """Once an epoch's evaluation, checkpoint and pictures were timed: when the epochs left
    end with them, and over the budget the --epoch whose training and evaluations fit it."""
    epoch_seconds = steps_per_epoch * batch / images_per_second + overhead_seconds
    line = (f"each epoch also spends {overhead_seconds:.1f} s on its evaluation, checkpoint and "
            f"pictures: the {epochs_left} epoch{'s' * (epochs_left != 1)} left end in about "
            f"{duration(epochs_left * epoch_seconds)}")
    fits = int(BUDGET_SECONDS // epoch_seconds)
    if epochs * epoch_seconds > BUDGET_SECONDS and fits:
        line += f". With them, --epoch {fits} fits {duration(BUDGET_SECONDS)}"
    return line


class Estimate:
    """Prints estimate_line once, as soon as the step's speed is known: after the steps that
    trace and warm up the train step, over at least a few seconds of steps."""
    WARMUP_STEPS = 2  # the first call traces; the second is still slower than the rest
    MIN_STEPS, MIN_SECONDS = 3, 5.0

    def __init__(self, batch, steps_per_epoch, epochs, steps_done, seconds_done):
        self.batch, self.steps_per_epoch, self.epochs = batch, steps_per_epoch, epochs
        self.steps_done, self.seconds_done = steps_done, seconds_done
        self.steps, self.start, self.since = 0, time.perf_counter(), None
        # the speed the first line said, None before it
        self.images_per_second, self.epochs_worked, self.overhead_said = None, 0, False

    def _say(self, progress, images_per_second, now):
        steps_left = self.epochs * self.steps_per_epoch - self.steps_done - self.steps
        progress.note(estimate_line(images_per_second, self.batch, self.steps_per_epoch,
                                    self.epochs, steps_left, self.seconds_done + now - self.start))
        self.images_per_second = images_per_second

    def on_epoch_work(self, progress, seconds, epochs_left):
        """Call after an epoch's evaluation, checkpoint and pictures, which took `seconds`:
        after the second (the first also traces the evaluation), says once when the run's
        epochs end with them."""
        self.epochs_worked += 1
        if (self.overhead_said or self.epochs_worked < 2 or self.images_per_second is None
                or not epochs_left):
            return
        progress.note(overhead_line(self.images_per_second, self.batch, self.steps_per_epoch,
                                    self.epochs, epochs_left, seconds))
        self.overhead_said = True

    def on_step(self, progress):
        """Call after every train step of this process."""
        self.steps += 1
        if self.images_per_second is not None:
            return
        now = time.perf_counter()
        if self.steps == self.WARMUP_STEPS:
            self.since = now
        measured = self.steps - self.WARMUP_STEPS
        if self.since and measured >= self.MIN_STEPS and now - self.since >= self.MIN_SECONDS:
            self._say(progress, measured * self.batch / (now - self.since), now)

    def on_epoch_end(self, progress):
        """An epoch too short to measure in: the speed from what it did."""
        if self.images_per_second is not None or not self.steps:
            return
        measured = self.steps - self.WARMUP_STEPS
        now = time.perf_counter()
        self._say(progress, measured * self.batch / (now - self.since) if measured > 0
                  else self.steps * self.batch / (now - self.start), now)
