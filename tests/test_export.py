"""--mode export: SavedModel, ONNX and LiteRT files that restore outside the project as
--mode test does, a Keras file of the generator, and nothing half-written left behind."""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import export
import holes
import model
import run
import run_folder

pytestmark = pytest.mark.slow

# What a user of the export runs: a Python that cannot import the project, from another folder.
OUTSIDE = r"""
import importlib.util, sys
import numpy as np
assert importlib.util.find_spec("export") is None, "the project is importable"
folder, given = sys.argv[1], np.load(sys.argv[2])
image, mask = given["image"], given["mask"]
import tensorflow as tf
restore = tf.saved_model.load(f"{folder}/saved_model").signatures["serving_default"]
saved_model = restore(image=tf.constant(image), mask=tf.constant(mask))["restored"].numpy()
import onnxruntime
session = onnxruntime.InferenceSession(f"{folder}/restorer.onnx")
onnx = session.run(["restored"], {"image": image, "mask": mask})[0]
from ai_edge_litert.interpreter import Interpreter
runner = Interpreter(model_path=f"{folder}/restorer.tflite").get_signature_runner()
litert = runner(image=image, mask=mask)["restored"]
np.savez(sys.argv[3], saved_model=saved_model, onnx=onnx, litert=litert)
"""


def _main(*argv):
    """run.main as a user runs it: its exit code, what it printed, its error lines."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _copy(run_dir, to):
    shutil.copytree(run_dir, to)
    return to


@pytest.fixture(scope="module")
def exported(trained_run, face_folder, tmp_path_factory):
    """A copy of the trained run tested as the export restores (float32, no Poisson blend),
    then exported; its folder and what the export printed."""
    out = _copy(trained_run, tmp_path_factory.mktemp("exported") / "run")
    assert _main("--mode", "test", "--data_dir", face_folder, "--test_ratio", "0.25", "--out_dir",
                 out, "--no-poisson", "--no-mixed_precision")[0] == 0
    code, printed, err = _main("--mode", "export", "--out_dir", out)
    assert code == 0, err
    return out, printed


def _test_pictures(out, size):
    """The originals and the composites --mode test wrote, side by side in test/*.png."""
    pictures = np.stack([np.asarray(Image.open(p).convert("RGB"))
                         for p in sorted((out / "test").glob("*.png"))])
    return pictures[:, :, :size], pictures[:, :, 2 * size:3 * size]


def test_the_exports_restore_the_test_pictures_outside_the_project_as_mode_test_does(
        exported, tmp_path):
    out, printed = exported
    folder = out / "export"
    assert sorted(os.listdir(folder)) == sorted(export.FILES)
    assert not [name for name in os.listdir(out) if name.startswith(".export")]
    for name in export.FILES:
        assert f"wrote {name}: " in printed
    assert "contract: image uint8 [N, 32, 32, 3] RGB and mask uint8 [N, 32, 32, 1]" in printed

    config = model.load_config(str(out))
    images, composites = _test_pictures(out, 32)
    assert len(images) == 9 and config.test_mask == "center"  # 36 faces, 25 % held out
    masks = holes.make_masks(config.test_mask, len(images), 32, [0, 0])
    context = model.composite_weights(masks, config).numpy()[..., 0] == 0
    hole = masks.numpy()[..., 0] > 0.5
    np.savez(tmp_path / "given.npz", image=images,
             mask=(masks.numpy() > 0.5).astype(np.uint8) * 255)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-I", "-c", OUTSIDE, str(folder),
                           str(tmp_path / "given.npz"), str(tmp_path / "got.npz")],
                          cwd=elsewhere, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    got = dict(np.load(tmp_path / "got.npz"))

    for name, restored in got.items():
        assert restored.dtype == np.uint8 and restored.shape == images.shape, name
        levels = np.abs(restored.astype(int) - composites.astype(int))
        assert levels.max() <= 2, f"{name} differs from --mode test by {levels.max()} levels"
        assert np.array_equal(restored[context], images[context]), name
        assert (restored[hole] != 0).mean() > 0.9, f"{name} left the hole black"
        assert np.abs(restored[hole].astype(int) - images[hole]).mean() < 64, name
    for a, b in [("saved_model", "onnx"), ("saved_model", "litert"), ("onnx", "litert")]:
        assert np.abs(got[a].astype(int) - got[b].astype(int)).max() <= 2, (a, b)

    generator = tf.keras.models.load_model(folder / "generator.keras", compile=False)
    assert generator.input_shape == (None, 32, 32, 4)


def test_a_grey_run_exports_grey_while_it_trains_and_a_format_that_disagrees_is_left_out(
        trained_run, tmp_path, monkeypatch):
    out = _copy(trained_run, tmp_path / "run")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "grey": True}))
    honest = export.litert_runner
    monkeypatch.setattr(export, "litert_runner", lambda path: lambda images, masks: np.clip(
        honest(path)(images, masks).astype(int) + 3, 0, 255).astype(np.uint8))
    with run_folder.lock(str(out)):  # as a training process holds it: export only reads
        code, printed, _ = _main("--mode", "export", "--out_dir", out)
    assert code == 1
    assert ("refused restorer.tflite: it differs from the project's restoration by 3 levels "
            "(at most 2); it is left out") in printed
    assert "(grey: all three channels equal)" in printed
    folder = out / "export"
    assert sorted(os.listdir(folder)) == sorted(set(export.FILES) - {"restorer.tflite"})
    images, _ = _test_pictures(out, 32)
    hidden = (holes.make_masks("center", len(images), 32, [0, 0]).numpy() > 0.5)
    restore = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
    restored = restore(image=tf.constant(images), mask=tf.constant(hidden.astype(np.uint8) * 255))
    restored = restored["restored"].numpy()[hidden[..., 0]]
    assert np.array_equal(restored[:, 0], restored[:, 1])
    assert np.array_equal(restored[:, 0], restored[:, 2])


def _error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_no_run_and_an_unwritable_folder_are_one_line_and_exit_2(trained_run, tmp_path):
    code, _, err = _main("--mode", "export", "--out_dir", tmp_path / "nothing")
    assert code == 2 and _error_line(err).startswith(
        f"error: --out_dir {tmp_path / 'nothing'}: no trained run there")

    out = _copy(trained_run, tmp_path / "run")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: a read-only mount stops it
        subprocess.run(["mount", "--bind", str(out), str(read_only)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(read_only)], check=True)
    else:
        os.rmdir(read_only)
        read_only = out
        os.chmod(out, 0o555)
    try:
        code, _, err = _main("--mode", "export", "--out_dir", read_only)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(read_only)], check=False)
        else:
            os.chmod(out, 0o755)
    assert code == 2 and _error_line(err).startswith(
        f"error: --out_dir {read_only}: cannot write there")
    assert not (out / "export").exists()


def _fail_onnx_write(monkeypatch):
    """Where no tmpfs can be mounted: the ONNX file is started, then the disk is full."""
    def full(generator, config, path):
        Path(path).write_bytes(b"half an onnx file")
        raise OSError(28, "No space left on device", path)
    monkeypatch.setattr(export, "_write_onnx", full)


def test_a_full_disk_leaves_no_export_behind(trained_run, tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    disk.mkdir()
    run_bytes = sum(f.stat().st_size for f in Path(trained_run).rglob("*") if f.is_file())
    # room for the run and half of the SavedModel's weights, so the export starts and fails
    real = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={run_bytes + 7 * 2**20}",
                           "tmpfs", str(disk)], check=False, capture_output=True).returncode == 0
    if not real:
        _fail_onnx_write(monkeypatch)
    try:
        out = _copy(trained_run, disk / "run")
        code, _, err = _main("--mode", "export", "--out_dir", out)
        assert code == 2
        line = _error_line(err)
        assert line.startswith(f"error: could not write {out / 'export'}")
        assert line.endswith("; nothing was exported (free some space, then run the same "
                             "command again)")
        assert "no space left on device" in line.lower()
        assert sorted(os.listdir(out)) == sorted(os.listdir(trained_run))
    finally:
        if real:
            subprocess.run(["umount", "-l", str(disk)], check=False)
