"""The inference core (model.py): what sampling imports, and each way loading a run's weights
fails, as one line for the CLI and once in the server's log while it keeps serving."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

import model
import run
import serve


def test_the_inference_path_imports_nothing_of_training():
    """Keras itself imports OpenCV and matplotlib when they are installed (its
    visualization package), so what counts is what serve and inpaint add to it."""
    done = subprocess.run([sys.executable, "-c", """
import sys
import tensorflow
before = set(sys.modules)
import serve, inpaint, export
print(" ".join(sorted(set(sys.modules) - before)))
"""], cwd=ROOT, capture_output=True, text=True, check=True)
    added = set(done.stdout.split())
    assert {"serve", "inpaint", "model", "neuralnet", "photo_io"} <= added
    for training in ("tf_process", "outputs", "references", "losses", "datamanager"):
        assert training not in added
    assert not [m for m in added if m.split(".")[0] in ("matplotlib", "cv2")]


def _copy(trained_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    return out


def _inpaint(out, photo, capsys):
    code = run.main(["--mode", "inpaint", "--out_dir", str(out), "--input", str(photo),
                     "--hole", "center", "--output", str(out / "inpainted")])
    return code, capsys.readouterr().err


def _latest(out):
    return tf.train.latest_checkpoint(str(out / "checkpoints"))


def _rewrite(out, **objects):
    """Replaces the run's checkpoints by one holding only `objects`, numbered as the last."""
    step = int(_latest(out).rsplit("-", 1)[1])
    shutil.rmtree(out / "checkpoints")
    tf.train.CheckpointManager(tf.train.Checkpoint(**objects), str(out / "checkpoints"),
                               1).save(checkpoint_number=step)


@pytest.fixture
def photo(tmp_path):
    from PIL import Image
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), np.uint8)).save(path)
    return path


def test_a_checkpoint_of_another_size_is_one_line_and_exit_2(trained_run, tmp_path, photo,
                                                             capsys):
    out = _copy(trained_run, tmp_path)
    config = model.load_config(str(out))
    bigger = model.build_generator(model.TrainConfig(img_size=64, upsample=config.upsample,
                                                     mask_channel=config.mask_channel))
    _rewrite(out, ema_generator=bigger, epoch=tf.Variable(2, dtype=tf.int64))
    code, err = _inpaint(out, photo, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "does not fit this model (trained with another --img_size than 32" in err


def test_missing_generator_weights_are_an_error_not_random_weights(trained_run, tmp_path, photo,
                                                                  capsys):
    out = _copy(trained_run, tmp_path)
    generator = model.build_generator(model.load_config(str(out)))
    # the encoder's first layer alone: every other weight of the generator is missing
    _rewrite(out, ema_generator=tf.train.Checkpoint(layer_with_weights_0=generator.layers[1]),
             epoch=tf.Variable(2, dtype=tf.int64))
    code, err = _inpaint(out, photo, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "lacks some of the model's weights, which would stay random" in err


def test_a_checkpoint_deleted_while_it_is_read_is_told_apart(trained_run, tmp_path, monkeypatch):
    """The trainer keeps three checkpoints: a reader can find the latest and lose it to the
    next save before reading it. That is Vanished (try again), not a damaged file."""
    out = _copy(trained_run, tmp_path)
    latest = _latest(out)
    restore = tf.train.Checkpoint.restore

    def rotated_away(self, path, *args, **kwargs):
        for name in os.listdir(out / "checkpoints"):  # as the manager deletes the oldest
            if name.startswith(os.path.basename(path) + "."):
                os.remove(out / "checkpoints" / name)
        newer = int(path.rsplit("-", 1)[1]) + 1
        with open(out / "checkpoints" / "checkpoint", "w") as f:  # the newer one is listed
            f.write(f'model_checkpoint_path: "ckpt-{newer}"\n')
        (out / "checkpoints" / f"ckpt-{newer}.index").touch()
        return restore(self, path, *args, **kwargs)
    monkeypatch.setattr(tf.train.Checkpoint, "restore", rotated_away)
    generator = model.build_generator(model.load_config(str(out)))
    with pytest.raises(model.Vanished, match=f"checkpoint {latest} was deleted while it was read"):
        model.load_generator(str(out), generator, 32)


def test_the_server_says_once_that_a_checkpoint_does_not_fit_and_keeps_its_weights(
        trained_run, tmp_path, photo, capsys, monkeypatch):
    out = _copy(trained_run, tmp_path)
    monkeypatch.setattr(serve, "CHECK_EVERY", 0.05)
    served = serve.Model(str(out))
    good = served.checkpoint
    before = [w.copy() for w in served.generator.get_weights()]
    capsys.readouterr()
    config = model.load_config(str(out))
    bigger = model.build_generator(model.TrainConfig(img_size=64, upsample=config.upsample,
                                                     mask_channel=config.mask_channel))
    step = int(good.rsplit("-", 1)[1]) + 10
    tf.train.CheckpointManager(tf.train.Checkpoint(ema_generator=bigger),
                               str(out / "checkpoints"), 5).save(checkpoint_number=step)
    time.sleep(1.0)  # twenty looks for a newer checkpoint
    printed = capsys.readouterr().out
    assert printed.count("warning: checkpoint") == 1, printed
    assert f"ckpt-{step} does not fit this model" in printed and f"still restoring with {good}" in printed
    assert served.checkpoint == good and served.run_info()["checkpoint"] == os.path.basename(good)
    assert all(np.array_equal(a, b) for a, b in zip(before, served.generator.get_weights()))
    png, epoch, _, _, _ = served.inpaint(photo.read_bytes(), None, "center", "center", False)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and epoch == 2
