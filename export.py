"""--mode export: the run's averaged generator as files other programs run, each with the
restoration inside (normalisation, the mask channel, the generator, the composite and the
rounding) behind one contract:

    image uint8 [N, S, S, 3] RGB, mask uint8 [N, S, S, 1] (over 127 = hole)
    -> restored uint8 [N, S, S, 3], the composite --mode test --no-poisson writes

Every file is run on a check batch and compared with the project's own restoration before
the export is published: a format that differs by more than MAX_LEVELS is refused and left
out, never left behind looking right."""
import errno
import glob
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

import holes
import model
import run_folder
import synthetic_faces
from tf_environment import quiet_native_logs

with quiet_native_logs():
    import tensorflow as tf

EXPORT_DIR = "export"
SAVED_MODEL = "saved_model"
ONNX_FILE = "restorer.onnx"
LITERT_FILE = "restorer.tflite"
KERAS_FILE = "generator.keras"
FILES = (SAVED_MODEL, ONNX_FILE, LITERT_FILE, KERAS_FILE)
MAX_LEVELS = 2
ONNX_OPSET = 17


class ExportError(Exception):
    """A one-line reason the export could not be written."""


def signature(config):
    size = config.img_size
    return [tf.TensorSpec([None, size, size, 3], tf.uint8, name="image"),
            tf.TensorSpec([None, size, size, 1], tf.uint8, name="mask")]


def restorer(generator, config):
    """The contract's restored picture alone: what the exported files compute."""
    restore = model.restorer(generator, config)
    return lambda image, mask: {"restored": restore(image, mask)["restored"]}


def check_batch(out_dir, config):
    """The run's first test batch as --mode test wrote it (the originals of test/*.png) with
    its test hole; before the run was tested, the built-in synthetic faces. Returns
    (images, masks uint8 255 = hole, what they are)."""
    size = config.img_size
    paths = sorted(glob.glob(os.path.join(out_dir, "test", "*.png")))[:config.batch]
    if paths:
        images = np.stack([np.asarray(Image.open(p).convert("RGB"))[:, :size] for p in paths])
        what = f"the run's first {len(paths)} test pictures"
    else:
        images = np.stack([synthetic_faces.synthetic_face(config.seed, i, size)
                           for i in range(min(config.batch, 8))])
        what = f"{len(images)} synthetic faces (the run has no test pictures yet)"
    masks = holes.make_masks(config.test_mask, len(images), size, [0, 0]).numpy()
    return images, (masks > 0.5).astype(np.uint8) * 255, what


def saved_model_runner(path):
    """(images, masks) -> restored, through TensorFlow's SavedModel loader."""
    loaded = tf.saved_model.load(path)  # kept alive with the signature: it owns the variables
    restore = loaded.signatures["serving_default"]
    return lambda images, masks: restore(image=tf.constant(images),
                                         mask=tf.constant(masks))["restored"].numpy()


def onnx_runner(path):
    """(images, masks) -> restored, through ONNX Runtime on the CPU."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: tf2onnx's resize warns at every load
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda images, masks: session.run(["restored"], {"image": images, "mask": masks})[0]


def litert_runner(path):
    """(images, masks) -> restored, through LiteRT's interpreter (it resizes to the batch)."""
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=path, num_threads=os.cpu_count()).get_signature_runner()
    return lambda images, masks: runner(image=images, mask=masks)["restored"]


def keras_runner(path, config):
    """(images, masks) -> restored, the Keras generator inside this project's restorer."""
    restore = tf.function(restorer(tf.keras.models.load_model(path, compile=False), config))
    return lambda images, masks: restore(images, masks)["restored"].numpy()


def _write_saved_model(generator, config, path):
    # Keras's own exporter: the endpoint's variables are tracked so that LiteRT's converter
    # freezes them (a tf.Module holding the model gave a LiteRT file without its weights);
    # tracking the generator as well would store every weight twice
    archive = tf.keras.export.ExportArchive()
    archive.add_endpoint("serving_default", restorer(generator, config),
                         input_signature=signature(config))
    archive.write_out(path, verbose=False)


def _write_onnx(generator, config, path):
    import tf2onnx
    tf2onnx.convert.from_function(tf.function(restorer(generator, config)),
                                  input_signature=signature(config), opset=ONNX_OPSET,
                                  output_path=path)


def _write_litert(saved_model, path):
    with open(path, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names)
    return os.path.getsize(path)


def export(out_dir, report=print):
    """Writes out_dir/export/ from the run's latest complete checkpoint; returns
    {file: (bytes, largest difference in levels)} for the files kept. Raises ExportError."""
    config = model.load_config(out_dir)
    generator = model.build_generator(config)
    checkpoint, progress = model.load_generator(out_dir, generator, config.img_size)
    images, masks, what = check_batch(out_dir, config)
    expected = model.contract(generator, config)(images, masks)["restored"]
    report(f"exporting {checkpoint} (epoch {int(progress['epoch'])}), checked on {what}")
    final = os.path.join(out_dir, EXPORT_DIR)
    try:
        work = tempfile.mkdtemp(prefix=f".{EXPORT_DIR}.partial", dir=out_dir)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would hide the export from others
    except OSError as error:
        raise ExportError(f"--out_dir {out_dir}: cannot write there ({error.strerror}); make it "
                          "writable or copy the run elsewhere") from None
    try:
        kept = _write_all(generator, config, work, images, masks, expected, report)
        _publish(work, final)
    except OSError as error:
        shutil.rmtree(work, ignore_errors=True)
        where = str(error.filename or work).replace(work, final)  # the name a user knows
        raise ExportError(f"could not write {where}: {error.strerror}; nothing was exported "
                          "(free some space, then run the same command again)") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return kept


def _write_all(generator, config, work, images, masks, expected, report):
    saved_model = os.path.join(work, SAVED_MODEL)
    formats = [  # all written before any is checked: LiteRT converts the SavedModel's folder
        (SAVED_MODEL, lambda path: _write_saved_model(generator, config, path),
         saved_model_runner),
        (ONNX_FILE, lambda path: _write_onnx(generator, config, path), onnx_runner),
        (LITERT_FILE, lambda path: _write_litert(saved_model, path), litert_runner),
        (KERAS_FILE, generator.save, lambda path: keras_runner(path, config)),
    ]
    written = []
    for name, write, run in formats:
        try:
            with quiet_native_logs():
                write(os.path.join(work, name))
            written.append((name, run))
        except OSError:
            raise
        except Exception as error:  # noqa: BLE001  (each converter raises its own types)
            if run_folder.no_space(error):  # TensorFlow's writers raise their own errors
                raise OSError(errno.ENOSPC, "no space left on device",
                              os.path.join(work, name)) from None
            report(f"refused {name}: its converter failed ({_first_line(error)}); it is left out")
    kept = {}
    for name, run in written:
        path = os.path.join(work, name)
        with quiet_native_logs():
            got = run(path)(images, masks)
        levels = (int(np.abs(got.astype(np.int16) - expected.astype(np.int16)).max())
                  if got.shape == expected.shape else 255)
        if levels > MAX_LEVELS:
            report(f"refused {name}: it differs from the project's restoration by {levels} "
                   f"levels (at most {MAX_LEVELS}); it is left out")
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            continue
        kept[name] = (_size(path), levels)
        report(f"wrote {name}: {kept[name][0] / 2**20:.1f} MB, at most {levels} level"
               f"{'' if levels == 1 else 's'} from the project's restoration")
    return kept


def _first_line(error):
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]


def _publish(work, final):
    """Replaces final with work in one rename, so a reader sees the old export or the new
    one, never half of one."""
    old = None
    if os.path.exists(final):
        old = tempfile.mkdtemp(prefix=f".{EXPORT_DIR}.old", dir=os.path.dirname(final))
        os.replace(final, os.path.join(old, EXPORT_DIR))
    os.replace(work, final)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def contract(config, folder):
    """What the export takes and gives, for the command's last lines."""
    size = config.img_size
    return (f"contract: image uint8 [N, {size}, {size}, 3] RGB and mask uint8 [N, {size}, "
            f"{size}, 1] (over 127 = hole) -> restored uint8 [N, {size}, {size}, 3], the hole "
            f"filled and the context kept{' (grey: all three channels equal)' if config.grey else ''}; "
            f"the Poisson blend is not inside (docs/export.md). In {folder}")
