"""Measures data preparation, the train step (on this CPU and in the AVX2 class, with oneDNN
on and off), an epoch, test inference, restorations through the page and through the
exported files, and peak memory, and prints one table of min / median
/ max over repeats, then the train step's top op types.

    python benchmark.py            # about 20 minutes on 2 CPU cores
    python benchmark.py --quick    # about 6 minutes: fewer repeats and images, same rows

Its input is a folder of synthetic 512x512 face JPEGs that it writes itself and keeps, with
its caches, in --dir between runs. TensorFlow's precision policy is global, so every
measurement that builds the models runs in its own child process of this script.
"""
import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import tf_environment  # noqa: F401  (before TensorFlow: the project's oneDNN default)

# isort: split
import numpy as np
import psutil
import tensorflow as tf
from PIL import Image
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import benchmark_server
import datamanager
import devices
import export
import holes
import inpaint
import model
import neuralnet
import photo_io
import synthetic_faces
import tf_process
from benchmark_server import PeakMemory, page_run, report

SIZE, BATCH = 128, model.TrainConfig().batch  # the default run's
TEST_RATIO = 0.1  # run.py's default --test_ratio
JPEG_SIDE, JPEG_QUALITY = 512, 90
MATMUL_SIDE = 4096
# faces: JPEGs written and decoded; epoch_faces: the set one epoch is trained on (the
# default run's size); rss_images: the cached set whose epoch's memory is measured.
SETTINGS = {
    "full": {"faces": 2000, "decode_repeats": 5, "step_repeats": 5, "steps": 5,
             "epoch_faces": 1500, "epoch_repeats": 3, "rss_images": 20_000,
             "short_run": ["--n_synthetic", "640", "--epoch", "4"], "inpaint_photos": 128},
    "quick": {"faces": 640, "decode_repeats": 3, "step_repeats": 3, "steps": 1,
              "epoch_faces": 448, "epoch_repeats": 1, "rss_images": 640,
              "short_run": ["--n_synthetic", "320", "--epoch", "3"], "inpaint_photos": 32},
}


# The other CPU class, most laptops' (AVX2 and FMA, no AVX-512 or bfloat16), on any newer
# x86 CPU: oneDNN limited to AVX2, in float32. TensorFlow's own kernels are built for AVX
# whatever the CPU, so with oneDNN off they are what an AVX2-only CPU runs. Clock speed and
# caches still differ from a real laptop's: these rows stand in for one, they are not one.
AVX2_CLASS = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
ONEDNN_OFF = {**AVX2_CLASS, "TF_ENABLE_ONEDNN_OPTS": "0"}
PROFILE_STEPS, TOP_OPS = 3, 10


def _seconds(work):
    return _timed(work)[0]


def _timed(work):
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


# ----------------------------------------------------------------------------- input files

def write_faces(folder, count):
    """Writes the synthetic portraits 0..count-1 as JPEGs, skipping those already there."""
    os.makedirs(folder, exist_ok=True)
    missing = [i for i in range(count) if not os.path.exists(os.path.join(folder, f"{i:06d}.jpg"))]
    if missing:
        print(f"writing {len(missing)} synthetic {JPEG_SIDE}x{JPEG_SIDE} JPEGs to {folder}",
              file=sys.stderr, flush=True)

    def write(i):
        path = os.path.join(folder, f"{i:06d}.jpg")
        face = Image.fromarray(synthetic_faces.synthetic_face(0, i, JPEG_SIDE))
        face.save(path + ".part", "JPEG", quality=JPEG_QUALITY)
        os.replace(path + ".part", path)  # an interrupted run leaves no half-written JPEG
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write, missing))


def link_faces(folder, faces, count):
    """A folder of `count` links cycling through the face JPEGs: a large set for the memory
    measurement without drawing that many faces."""
    os.makedirs(folder, exist_ok=True)
    sources = photo_io.find_images(faces)
    for i in range(count):
        link = os.path.join(folder, f"{i:06d}.jpg")
        if not os.path.lexists(link):
            os.symlink(sources[i % len(sources)], link)


# ----------------------------------------------------------------------------- measurements

def measure_preparation(faces, count, repeats, cache_dir):
    """Images/s of prepare_images from the JPEGs with no cache, and with the cache present."""
    cold, warm = [], []
    for _ in range(repeats):
        shutil.rmtree(cache_dir, ignore_errors=True)
        seconds, images = _timed(
            lambda: datamanager.prepare_images(cache_dir, SIZE, data_dir=faces, limit=count))
        cold.append(count / seconds)
        written = os.stat(images.path)
        warm.append(count / _seconds(
            lambda: datamanager.prepare_images(cache_dir, SIZE, data_dir=faces, limit=count)))
        again = os.stat(images.path)
        if (again.st_ino, again.st_mtime_ns) != (written.st_ino, written.st_mtime_ns):
            raise RuntimeError("a warm prepare_images rewrote its cache: it decoded again")
    return cold, warm


def forward_flops(network):
    """FLOPs of one image's forward pass: 2 (a multiply and an add) x kernel size x the
    positions the kernel is applied at: the output grid of a convolution, the input grid of
    a transposed convolution (each input pixel scatters one kernel), once for a dense layer
    and for the channel-wise dense layer (its [channels, 16, 16] kernel is one einsum).
    Biases, activations and pooling are elementwise and left out."""
    flops = 0
    for layer in network.layers:
        if not layer.weights:
            continue
        # A spectral-normalised layer counts as the layer it wraps: its power iteration is a
        # few matrix-vector products.
        inner = layer.layer if isinstance(layer, tf.keras.layers.SpectralNormalization) else layer
        kernel = int(np.prod(inner.kernel.shape))
        if isinstance(inner, tf.keras.layers.Conv2DTranspose):
            positions = int(np.prod(layer.input.shape[1:3]))
        elif isinstance(inner, tf.keras.layers.Conv2D):
            positions = int(np.prod(layer.output.shape[1:3]))
        elif isinstance(inner, (tf.keras.layers.Dense, neuralnet.ChannelWiseDense)):
            positions = 1
        else:
            raise TypeError(f"no FLOP count for layer {layer.name} ({type(layer).__name__})")
        flops += 2 * kernel * positions
    return flops


def training_flops(generator, discriminator):
    """FLOPs of one training image. A layer's backward pass costs two forwards (the gradient
    of its input and of its kernel), so forward + backward = 3 forwards. Per image the step
    runs G forward and backward (3 G), D forward and backward on the real image and on the
    composite (2 x 3 D), and the generator's gradient flows back through D on the composite
    a second time, inputs only (1 D): 3 G + 7 D."""
    return 3 * forward_flops(generator) + 7 * forward_flops(discriminator)


def matmul_gflops(dtype, repeats):
    """GFLOP/s of a large dense matmul: the practical ceiling of this machine in `dtype`."""
    a = tf.cast(tf.random.normal([MATMUL_SIDE, MATMUL_SIDE]), dtype)
    b = tf.cast(tf.random.normal([MATMUL_SIDE, MATMUL_SIDE]), dtype)

    @tf.function
    def product(a, b):
        return tf.reduce_sum(tf.matmul(a, b))  # a scalar out: the copy is not timed
    product(a, b).numpy()
    return [2 * MATMUL_SIDE ** 3 / 1e9 / _seconds(lambda: product(a, b).numpy())
            for _ in range(repeats)]


def build_training(strategy):
    """The two networks and the project's compiled train step, with run.py's default flags."""
    config = model.TrainConfig()
    with strategy.scope():
        generator = model.build_generator(config)
        discriminator = tf_process.build_discriminator(config)
        g_optimizer, d_optimizer = (
            tf_process.make_optimizer(network, config.lr, config.beta1, config.beta2)
            for network in (generator, discriminator))
        ema_generator = tf_process.make_ema_generator(generator)
    train_step = tf_process.make_train_step(
        config=config, generator=generator, discriminator=discriminator,
        g_optimizer=g_optimizer, d_optimizer=d_optimizer, ema_generator=ema_generator,
        global_batch=BATCH, strategy=strategy)
    return generator, discriminator, train_step, config


def _face_batch(mask):
    images = tf.constant(np.stack([synthetic_faces.synthetic_face(0, i, SIZE) for i in range(BATCH)]))
    return images, holes.make_masks(mask, BATCH, SIZE, [0, 0])


def child_train_step(precision, settings):
    """Train step and test inference images/s in one precision, the model's FLOPs and the
    matmul ceiling in the policy's compute dtype."""
    strategy, policy = devices.configure_devices(None, mixed_precision=precision == "mixed")
    generator, discriminator, train_step, config = build_training(strategy)
    repeats, steps = settings["step_repeats"], settings["steps"]
    images, masks = _face_batch("random")
    for _ in range(2):  # the first call traces; the second is still slower than the rest
        train_step(images, masks)
    step_rates = [steps * BATCH / _seconds(lambda: [train_step(images, masks) for _ in range(steps)])
                  for _ in range(repeats)]
    restore = model.make_restore(generator, config)
    images, masks = _face_batch("center")
    for _ in range(2):
        restore(images, masks)
    calls = 2 * steps  # a forward pass of G is ~1/6 of a step: a third of the steps' time
    test_rates = [calls * BATCH / _seconds(lambda: [restore(images, masks) for _ in range(calls)])
                  for _ in range(repeats)]
    compute_dtype = tf.keras.mixed_precision.global_policy().compute_dtype
    return {"policy": policy, "compute_dtype": compute_dtype, "step": step_rates,
            "onednn": devices.onednn_enabled(),
            "test": test_rates, "flops": training_flops(generator, discriminator),
            "ceiling": matmul_gflops(compute_dtype, repeats)}


def child_profile(bench_dir):
    """Seconds per step of each op type of the default float32 train step, from TensorFlow's
    profiler (its trace of the executor threads; ops on the two threads overlap, so the
    shares are of the summed op time, not of the wall time)."""
    strategy, _ = devices.configure_devices(None, mixed_precision=False)
    _, _, train_step, _ = build_training(strategy)
    images, masks = _face_batch("random")
    for _ in range(2):
        train_step(images, masks)
    logdir = tempfile.mkdtemp(prefix="profile-", dir=bench_dir)
    tf.profiler.experimental.start(logdir)
    for _ in range(PROFILE_STEPS):
        float(train_step(images, masks)["total"])
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    for root, _, files in os.walk(logdir):
        for name in files:
            if name.endswith(".xplane.pb"):
                with open(os.path.join(root, name), "rb") as f:
                    space.ParseFromString(f.read())
    shutil.rmtree(logdir)
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    seconds = {}
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for event in line.events:
            name = host.event_metadata[event.metadata_id].name  # "scope/op_name:OpType"
            if ":" in name and not name.startswith(("ThreadpoolListener", "ExecutorState")):
                op_type = name.rsplit(":", 1)[1]
                seconds[op_type] = seconds.get(op_type, 0.0) + event.duration_ps / 1e12
    return {op: total / PROFILE_STEPS for op, total in seconds.items()}


def onednn_isa(env):
    """The instruction set oneDNN reports under `env` (ONEDNN_VERBOSE names it at its first
    primitive)."""
    code = ("import tf_environment, tensorflow as tf; "
            "tf.nn.conv2d(tf.ones([1, 8, 8, 8]), tf.ones([3, 3, 8, 8]), 1, 'SAME')")
    printed = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.abspath(__file__)),
                             env={**os.environ, **env, "ONEDNN_VERBOSE": "1"},
                             capture_output=True, text=True, check=True).stdout
    return next((line.split("isa:", 1)[1] for line in printed.splitlines() if ",isa:" in line),
                "not reported")


def timed_epoch(train_step, cache_dir, data_dir, limit, epoch):
    """Seconds of one epoch from the files (preparing the images included), the sum of its
    train steps' seconds, and the seconds of deleting the dataset's iterator at its end."""
    config = model.TrainConfig()
    step_seconds = 0.0
    start = time.perf_counter()
    images = datamanager.prepare_images(cache_dir, SIZE, data_dir=data_dir, limit=limit)
    train_idx, _ = datamanager.split(images.count, TEST_RATIO)
    batches = iter(datamanager.train_dataset(images, train_idx, BATCH, config.train_mask,
                                             config.seed, epoch))
    for image_batch, masks in batches:
        step_start = time.perf_counter()
        train_step(image_batch, masks)
        step_seconds += time.perf_counter() - step_start
    # A training loop's `for` over the dataset deletes its iterator here; tf.data can block
    # in that deletion, so it is timed on its own.
    teardown_start = time.perf_counter()
    del batches
    end = time.perf_counter()
    return end - start, step_seconds, end - teardown_start


def _traced_step():
    """The default run's policy (as run.py chooses it) and its train step, already traced."""
    strategy, policy = devices.configure_devices(None, mixed_precision=True)
    _, _, train_step, _ = build_training(strategy)
    train_step(*_face_batch("random"))
    return policy, train_step


def child_epoch(settings, bench_dir):
    """Epochs from the JPEGs with the cache deleted first (cold) and then present (warm)."""
    policy, train_step = _traced_step()
    cache_dir = os.path.join(bench_dir, "cache_epoch")
    epochs = {"cold": [], "warm": []}
    for repeat in range(settings["epoch_repeats"]):
        shutil.rmtree(cache_dir, ignore_errors=True)
        for state in ("cold", "warm"):
            epochs[state].append(timed_epoch(train_step, cache_dir, os.path.join(bench_dir, "faces"),
                                             settings["epoch_faces"], repeat))
    return {"policy": policy, **epochs}


def child_rss(settings, bench_dir):
    """Peak resident memory, sampled every 20 ms, of an epoch over the large cached set."""
    policy, train_step = _traced_step()
    before = psutil.Process().memory_info().rss
    with PeakMemory(os.getpid()) as memory:
        timed_epoch(train_step, os.path.join(bench_dir, "cache_rss"),
                    os.path.join(bench_dir, "faces_linked"), settings["rss_images"], 0)
    return {"policy": policy, "peak": memory.peak, "before": before}


def write_masked_photos(folder, faces, count):
    """count of the face JPEGs, each with a NAME_mask.png (a face-mask-shaped hole), for
    --mode inpaint."""
    os.makedirs(folder, exist_ok=True)
    hole = Image.fromarray(holes.facemask_region(JPEG_SIDE).astype(np.uint8) * 255)
    for i, source in enumerate(photo_io.find_images(faces)[:count]):
        photo = os.path.join(folder, f"{i:06d}.jpg")
        if not os.path.lexists(photo):
            os.symlink(source, photo)
            hole.save(os.path.join(folder, f"{i:06d}_mask.png"))


def child_inpaint(settings, bench_dir):
    """Photos restored per second by inpaint.inpaint over the folder of masked 512x512 JPEGs,
    with the model built and traced first (TensorFlow's start-up is not timed)."""
    _, policy = devices.configure_devices(None, mixed_precision=True)
    config = model.TrainConfig()
    restore = model.contract(model.build_generator(config), config)
    folder = os.path.join(bench_dir, "masked_photos")
    jobs = inpaint.find_jobs(folder, None, None)
    out = tempfile.mkdtemp(prefix="inpainted-", dir=bench_dir)
    inpaint.inpaint(restore, config, jobs[:inpaint.BATCH], out)  # traces the forward pass
    rates = []
    for _ in range(settings["step_repeats"]):
        seconds = _seconds(lambda: inpaint.inpaint(restore, config, jobs, out))
        rates.append(len(jobs) / seconds)
    shutil.rmtree(out)
    return {"policy": policy, "photos": len(jobs), "rate": rates}


EXPORT_RUNTIMES = {"TensorFlow (SavedModel)": (export.SAVED_MODEL, export.saved_model_runner),
                   "ONNX Runtime": (export.ONNX_FILE, export.onnx_runner),
                   "LiteRT": (export.LITERT_FILE, export.litert_runner)}


def child_export(args, settings):
    """--mode export of the default run's generator: each file's size, and seconds for one
    restoration of a batch of 1 and of BATCH through each runtime, after one untimed call."""
    run_dir = page_run(args)
    kept = export.export(run_dir, report=lambda line: None)
    folder = os.path.join(run_dir, export.EXPORT_DIR)
    rng = np.random.default_rng(0)
    result = {"mb": {name: size / 2**20 for name, (size, _) in kept.items()}, "seconds": {}}
    for runtime, (name, load) in EXPORT_RUNTIMES.items():
        restore = load(os.path.join(folder, name))
        for batch in (1, BATCH):
            images = rng.integers(0, 256, (batch, SIZE, SIZE, 3), np.uint8)
            masks = (holes.make_masks("center", batch, SIZE, [0, 0]).numpy() * 255
                     ).astype(np.uint8)
            once = functools.partial(restore, images, masks)
            once()
            result["seconds"][f"{runtime}, batch {batch}"] = [
                _seconds(once) for _ in range(settings["step_repeats"])]
    return result


def short_run_hole_psnr(args, start, precision):
    """Test hole PSNR of a short default training run (64x64, batch 32) in one precision:
    mixed precision must not cost quality."""
    report(f"measuring: short training run, {precision}", start)
    out = tempfile.mkdtemp(prefix=f"short-{precision}-", dir=args.dir)
    flag = "--mixed_precision" if precision == "mixed" else "--no-mixed_precision"
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "run.py"), "--out_dir", out, flag,
                    "--img_size", "64", "--batch", "32",
                    *SETTINGS["quick" if args.quick else "full"]["short_run"]],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(out, "test_metrics.json")) as f:
        return json.load(f)["model"]["hole_psnr"]


def run_child(args, start, *child, env=None):
    """Runs one measurement in a fresh process, with `env` added to the environment, and
    returns what it printed as JSON."""
    command = [sys.executable, os.path.abspath(__file__), "--dir", args.dir, "--_child", *child]
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    report(f"measuring: {' '.join(child)} {shown}", start)
    output = subprocess.run(command + (["--quick"] if args.quick else []), check=True,
                            env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the table

def _number(value):
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(rows):
    """Markdown table: one row per measurement with the min, median and max of its runs."""
    lines = ["| measurement | unit | min | median | max | runs |", "|---|---|--:|--:|--:|--:|"]
    for label, unit, values in rows:
        lines.append(f"| {label} | {unit} | {_number(min(values))} | "
                     f"{_number(statistics.median(values))} | {_number(max(values))} | {len(values)} |")
    return "\n".join(lines)


def step_rows(result, where):
    ceiling = statistics.median(result["ceiling"])
    achieved = [rate * result["flops"] / 1e9 for rate in result["step"]]
    onednn = "oneDNN on" if result["onednn"] else "oneDNN off"
    return [
        (f"train step, {result['policy']}, batch {BATCH}, {where}, {onednn}", "images/s",
         result["step"]),
        ("↳ achieved", "GFLOP/s", achieved),
        (f"↳ ceiling: tf.matmul {result['compute_dtype']} {MATMUL_SIDE}x{MATMUL_SIDE}",
         "GFLOP/s", result["ceiling"]),
        ("↳ achieved / median ceiling", "%", [100 * a / ceiling for a in achieved]),
    ]


def epoch_rows(result, faces):
    train = faces - round(faces * TEST_RATIO)
    rows = []
    for state, what in (("cold", "no cache: decodes the JPEGs"), ("warm", "cache present")):
        runs = result[state]
        rows += [
            (f"epoch, {train:,} of {faces:,} JPEGs, {what}, {result['policy']}", "s",
             [total for total, _, _ in runs]),
            (f"↳ its {train // BATCH} train steps alone", "s", [steps for _, steps, _ in runs]),
            ("↳ overhead over the steps", "%",
             [100 * (total / steps - 1) for total, steps, _ in runs]),
            ("↳ of which deleting the dataset iterator at the end", "s",
             [teardown for _, _, teardown in runs]),
        ]
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and images (about 6 min)")
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "context_encoder_bench"),
                   help="where the JPEGs and caches are kept between runs")
    p.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    settings = SETTINGS["quick" if args.quick else "full"]
    if args._child:
        name, *rest = args._child
        measure = {"train_step": lambda: child_train_step(rest[0], settings),
                   "epoch": lambda: child_epoch(settings, args.dir),
                   "rss": lambda: child_rss(settings, args.dir),
                   "inpaint": lambda: child_inpaint(settings, args.dir),
                   "export": lambda: child_export(args, settings),
                   "profile": lambda: child_profile(args.dir)}[name]
        print(json.dumps(measure()))
        return 0

    start = time.perf_counter()
    cpu, features = devices.cpu_features()
    print(f"{cpu}, {os.cpu_count()} cores: "
          + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in features.items())
          + f"; TensorFlow {tf.__version__}; oneDNN under ONEDNN_MAX_CPU_ISA=AVX2 reports "
          f"isa: {onednn_isa(AVX2_CLASS)}\n", flush=True)
    faces = os.path.join(args.dir, "faces")
    write_faces(faces, settings["faces"])
    report("measuring: data preparation", start)
    cold, warm = measure_preparation(faces, settings["faces"], settings["decode_repeats"],
                                     os.path.join(args.dir, "cache_decode"))
    # (where, result): this CPU in both precisions, then the AVX2 class with oneDNN on (the
    # project's default) and off (TensorFlow's default on such CPUs)
    steps = [("this CPU", run_child(args, start, "train_step", precision))
             for precision in ("float32", "mixed")]
    steps += [(where, run_child(args, start, "train_step", "float32", env=env))
              for where, env in (("AVX2 class", AVX2_CLASS), ("AVX2 class", ONEDNN_OFF))]
    profile = run_child(args, start, "profile", env=AVX2_CLASS)
    epochs = run_child(args, start, "epoch")
    linked = os.path.join(args.dir, "faces_linked")
    link_faces(linked, faces, settings["rss_images"])
    datamanager.prepare_images(os.path.join(args.dir, "cache_rss"), SIZE, data_dir=linked,
                               limit=settings["rss_images"])
    rss = run_child(args, start, "rss")
    write_masked_photos(os.path.join(args.dir, "masked_photos"), faces, settings["inpaint_photos"])
    restored = run_child(args, start, "inpaint")
    page = benchmark_server.measure_page(args, start, settings)
    phone = benchmark_server.measure_phone(args, start, settings)
    burst = benchmark_server.measure_burst(args, start)
    exported = run_child(args, start, "export")
    psnr = {p: short_run_hole_psnr(args, start, p) for p in ("float32", "mixed")}

    jpegs = f"{settings['faces']:,} JPEGs {JPEG_SIDE}x{JPEG_SIDE} q{JPEG_QUALITY}"
    rows = [
        (f"data preparation, cold: {jpegs} -> {SIZE}x{SIZE} cache", "images/s", cold),
        ("data preparation, warm: cache present, nothing decoded", "images/s", warm),
        ("model FLOPs per training image (counted, 3 G + 7 D)", "GFLOP",
         [steps[0][1]["flops"] / 1e9]),
    ]
    for where, result in steps:
        rows += step_rows(result, where)
    (_, on), (_, off) = steps[2:]
    rows.append(("↳ AVX2 class: train step with oneDNN on / off", "x",
                 [statistics.median(on["step"]) / statistics.median(off["step"])]))
    rows += epoch_rows(epochs, settings["epoch_faces"])
    rows += [((f"test inference (make_restore), {result['policy']}, batch {BATCH}, {where}, "
               f"oneDNN {'on' if result['onednn'] else 'off'}"), "images/s", result["test"])
             for where, result in steps]
    quick = " (quick mode: fewer images)" if args.quick else ""
    rss_set = f"{settings['rss_images']:,} cached {SIZE}x{SIZE} images, {rss['policy']}{quick}"
    inpainted = (f"--mode inpaint: {restored['photos']} {JPEG_SIDE}x{JPEG_SIDE} JPEGs with mask "
                 f"PNGs, restored and written, {restored['policy']}")
    rows.append((inpainted, "photos/s", restored["rate"]))
    rows += benchmark_server.rows(page, phone, burst)
    rows += [(f"--mode export: {name}", "MB", [mb]) for name, mb in exported["mb"].items()]
    rows += [(f"exported restoration, {SIZE}x{SIZE}, {runtime}", "ms", [1000 * s for s in seconds])
             for runtime, seconds in exported["seconds"].items()]
    rows.append((f"peak RSS, epoch over {rss_set}", "GB", [rss["peak"] / 1e9]))
    rows.append(("↳ RSS before the epoch (models built, step traced)", "GB", [rss["before"] / 1e9]))
    faces, epochs = settings["short_run"][1], settings["short_run"][3]
    short = f"short training run (64x64, batch 32, {faces} faces, {epochs} epochs)"
    rows += [(f"{short}, test hole PSNR, {p}", "dB", [v]) for p, v in psnr.items()]
    rows.append(("↳ mixed minus float32", "dB", [psnr["mixed"] - psnr["float32"]]))
    print(table(rows))
    total = sum(profile.values())
    print(f"\nTop {TOP_OPS} op types of the train step, float32, AVX2 class, oneDNN on "
          f"(TensorFlow's profiler over {PROFILE_STEPS} steps; share of the summed op time):\n")
    print("| op type | ms per step | share |\n|---|--:|--:|")
    for op, seconds in sorted(profile.items(), key=lambda item: -item[1])[:TOP_OPS]:
        print(f"| {op} | {1000 * seconds:.1f} | {100 * seconds / total:.1f} % |")
    print(f"| all ops | {1000 * total:.0f} | 100 % |")
    print(f"\n{time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
