"""Bad input, bad flags, interruption and resume: a run is never lost."""
import os
import pty
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import datamanager
import losses
import outputs
import run
import run_folder
import synthetic_faces

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--img_size", "32", "--batch", "4", "--test_ratio", "0.25", "--lr", "1e-3"]


def _run(capsys, *argv):
    code = run.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _error_line(err):
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _child(*argv, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _weights(out):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(out, "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("generator/", "discriminator/", "g_optimizer/", "d_optimizer/"))}


# ----------------------------------------------------------------------------- bad data

@pytest.mark.parametrize("make, expected", [
    (lambda tmp: tmp / "missing", "no such directory"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "not a directory"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no .jpg"),
])
def test_bad_data_dir_is_one_line_and_exit_2(tmp_path, capsys, make, expected):
    path = make(tmp_path)
    code, _, err = _run(capsys, "--data_dir", path, "--out_dir", tmp_path / "out", *SMALL)
    assert code == 2
    line = _error_line(err)
    assert str(path) in line and expected in line


def _bad_files(folder):
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a JPEG")
    good = folder / "good.jpg"
    Image.fromarray(synthetic_faces.synthetic_face(0, 0, 64)).save(good)
    (folder / "corrupt.jpg").write_bytes(good.read_bytes()[:200] + b"\x00" * 50)
    png = folder / "whole.png"
    Image.fromarray(synthetic_faces.synthetic_face(0, 1, 64)).save(png)
    (folder / "truncated.png").write_bytes(png.read_bytes()[:-400])
    png.unlink()
    good.unlink()
    (folder / "dir.jpg").mkdir()
    os.symlink(folder / "nowhere.png", folder / "unreadable.png")
    return ["corrupt.jpg", "text.jpg", "truncated.png", "unreadable.png", "zero.jpg"]


def test_bad_files_are_skipped_with_warnings_and_counted(face_folder, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in sorted(os.listdir(os.path.join(face_folder, "a")))[:10]:
        os.symlink(os.path.join(face_folder, "a", name), folder / name)
    bad = _bad_files(folder)
    with pytest.warns(UserWarning) as caught:
        images = datamanager.prepare_images(str(tmp_path / "cache"), 32, data_dir=str(folder))
    assert images.count == 10
    messages = " ".join(str(w.message) for w in caught)
    for name in bad + ["dir.jpg"]:
        assert name in messages
    assert sorted(os.path.basename(p) for p, _ in images.skipped) == bad


def test_bad_files_count_is_printed_and_the_run_goes_on(face_folder, tmp_path, capfd):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in sorted(os.listdir(os.path.join(face_folder, "a")))[:16]:
        os.symlink(os.path.join(face_folder, "a", name), folder / name)
    _bad_files(folder)
    code = run.main(["--data_dir", str(folder), "--out_dir", str(tmp_path / "out"), "--epoch", "1",
                     *SMALL])
    err = capfd.readouterr().err
    assert code == 0
    assert "skipped 5 of 21 files" in err
    assert os.path.exists(tmp_path / "out" / "test_metrics.json")


def test_every_file_bad_is_a_clear_error(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    _bad_files(folder)
    with pytest.warns(UserWarning):
        code, _, err = _run(capsys, "--data_dir", folder, "--out_dir", tmp_path / "out", *SMALL)
    assert code == 2
    assert "none of its 5 image files could be read" in _error_line(err)


def test_unusual_images_load_as_upright_rgb(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(folder / "a_16bit.png")
    Image.new("CMYK", (50, 50), (0, 255, 255, 0)).save(folder / "b_cmyk.jpg")  # red
    upright = Image.new("RGB", (60, 40), (0, 0, 0))
    upright.paste((255, 255, 255), (0, 0, 60, 20))  # white on top, as displayed
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "c_exif.jpg", exif=exif,
                                                       quality=95)
    Image.new("RGB", (10, 10), (0, 0, 255)).save(folder / "d_tiny.png")
    Image.new("RGB", (6000, 4000), (0, 128, 0)).save(folder / "e_huge.jpg", quality=90)
    Image.new("LA", (30, 70), (200, 255)).save(folder / "f_gray_alpha_tall.png")
    images = datamanager.prepare_images(str(tmp_path / "cache"), 32, data_dir=str(folder))
    pixels = images.read(range(images.count)).astype(int)
    assert images.count == 6 and pixels.shape == (6, 32, 32, 3)
    assert np.abs(pixels[0] - 40000 // 257).max() <= 1
    assert pixels[1, 16, 16, 0] > 200 and pixels[1, 16, 16, 1:].max() < 60
    assert pixels[2, :12].min() > 200 and pixels[2, 20:].max() < 60  # upright: white on top
    assert np.array_equal(pixels[3, 5, 5], [0, 0, 255])
    assert np.abs(pixels[4] - [0, 128, 0]).max() <= 3
    assert np.all(pixels[5] == 200)


# ----------------------------------------------------------------------------- bad flags

@pytest.mark.parametrize("flags, named", [
    (["--batch", "0"], "--batch 0"),
    (["--epoch", "0"], "--epoch 0"),
    (["--lr", "0"], "--lr 0"),
    (["--lr=-1e-4"], "--lr -0.0001"),
    (["--img_size", "48"], "--img_size 48"),
    (["--test_ratio", "0"], "--test_ratio 0"),
    (["--test_ratio", "1.5"], "--test_ratio 1.5"),
    (["--d_shift", "33"], "--d_shift 33"),
])
def test_bad_flags_are_refused_before_any_work(tmp_path, capsys, flags, named):
    out = tmp_path / "out"
    code, _, err = _run(capsys, "--out_dir", out, "--n_synthetic", 20, *flags)
    assert code == 2 and named in _error_line(err)
    assert not (out / "cache").exists()


def test_batch_larger_than_training_set_and_empty_test_set_are_refused(tmp_path, capsys):
    code, _, err = _run(capsys, "--out_dir", tmp_path / "a", "--n_synthetic", 20,
                        "--img_size", 32, "--batch", 64)
    assert code == 2 and "--batch 64 is larger than the 18 training images" in _error_line(err)
    code, _, err = _run(capsys, "--out_dir", tmp_path / "b", "--n_synthetic", 20,
                        "--img_size", 32, "--test_ratio", 0.01)
    assert code == 2 and "--test_ratio 0.01 on 20 images" in _error_line(err)


def test_unwritable_out_dir_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "--out_dir", blocker / "out", "--n_synthetic", 20)
    assert code == 2 and "cannot write there" in _error_line(err)


def test_flag_types_are_checked_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_:
        run.parse_args(["--lr", "fast"])
    assert exit_.value.code == 2 and "--lr: invalid float value" in capsys.readouterr().err


# ----------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, face_folder):
    out = str(tmp_path_factory.mktemp("one_epoch"))
    assert run.main(["--data_dir", face_folder, "--out_dir", out, "--epoch", "1",
                     "--mode", "train", *SMALL]) == 0
    return out


def test_test_mode_without_checkpoint_is_a_clear_error(face_folder, tmp_path, capsys):
    code, _, err = _run(capsys, "--data_dir", face_folder, "--out_dir", tmp_path, "--mode", "test",
                        *SMALL)
    assert code == 2 and "no checkpoint in" in err and "Traceback" not in err


def test_test_mode_takes_the_network_settings_of_the_run(one_epoch_run, face_folder, tmp_path,
                                                         capsys):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", one_epoch_run, str(out)], check=True)
    code, printed, err = _run(capsys, "--data_dir", face_folder, "--out_dir", out, "--mode",
                              "test", "--img_size", 64, "--batch", 4, "--test_ratio", 0.25)
    assert code == 0, err
    assert "images at 32x32" in printed  # the run's side, not the flag's


def test_checkpoint_of_another_img_size_is_a_clear_error(one_epoch_run, face_folder, tmp_path,
                                                         capsys):
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", one_epoch_run, str(out)], check=True)
    os.remove(out / "config.json")  # a run that does not say how it was trained
    code, _, err = _run(capsys, "--data_dir", face_folder, "--out_dir", out,
                        "--mode", "test", "--img_size", 64, "--batch", 4, "--test_ratio", 0.25)
    assert code == 2 and "does not fit this model" in err and "--img_size than 64" in err


def test_existing_run_needs_resume_and_resume_needs_a_run(one_epoch_run, face_folder, tmp_path,
                                                          capsys):
    code, _, err = _run(capsys, "--data_dir", face_folder, "--out_dir", one_epoch_run, *SMALL)
    assert code == 2 and "pass --resume" in _error_line(err)
    code, _, err = _run(capsys, "--data_dir", face_folder, "--out_dir", tmp_path, "--resume",
                        *SMALL)
    assert code == 2 and "no checkpoint" in _error_line(err)


def test_resume_gives_the_same_weights_as_one_long_run(face_folder, straight_run, tmp_path):
    common = ["--data_dir", face_folder, "--mode", "train", *SMALL]
    split = str(tmp_path / "split")
    assert run.main([*common, "--out_dir", split, "--epoch", "1"]) == 0
    assert run.main([*common, "--out_dir", split, "--epoch", "2", "--resume"]) == 0
    a, b = _weights(straight_run), _weights(split)
    assert a.keys() == b.keys() and len(a) > 50
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # the history continues instead of restarting
    rows = run_folder.read_csv(os.path.join(split, "metrics.csv"))
    assert [r["epoch"] for r in rows] == [1, 2]
    # the rewrite on resume keeps counts as integers
    with open(os.path.join(split, "metrics.csv")) as f:
        assert [line.split(",")[:2] for line in f.read().splitlines()[1:]] == [["1", "6"],
                                                                            ["2", "12"]]
    steps = [r["step"] for r in run_folder.read_csv(os.path.join(split, "train_loss.csv"))]
    assert steps == list(range(1, 2 * (27 // 4) + 1))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(one_epoch_run, face_folder,
                                                                  tmp_path, monkeypatch, capsys):
    out = tmp_path / "nan"
    subprocess.run(["cp", "-r", one_epoch_run, str(out)], check=True)
    good = tf.train.latest_checkpoint(str(out / "checkpoints"))
    original = losses.reconstruction_loss
    monkeypatch.setattr(losses, "reconstruction_loss",
                        lambda *a: original(*a) * float("nan"))
    code, _, err = _run(capsys, "--data_dir", face_folder, "--out_dir", out, "--epoch", 2,
                        "--resume", *SMALL)
    assert code == 1
    assert f"loss became nan at step {27 // 4 + 1} (epoch 2)" in err and good in err
    assert tf.train.latest_checkpoint(str(out / "checkpoints")) == good


def test_failed_picture_write_is_a_clear_error(face_folder, tmp_path, monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", "results/training/00000000.png")
    monkeypatch.setattr(outputs, "save_sample_grid", disk_full)
    code, _, err = _run(capsys, "--data_dir", face_folder, "--out_dir", tmp_path, "--epoch", 1,
                        *SMALL)
    assert code == 1
    assert ("could not write results/training/00000000.png: no space left on device; free some "
            "space, then start again (no checkpoint yet): python ") in err
    assert "Traceback" not in err


_SAVE_LOOP = """
import sys, tensorflow as tf
counter = tf.Variable(0, dtype=tf.int64)
weights = tf.Variable(tf.zeros([4_000_000]))
manager = tf.train.CheckpointManager(tf.train.Checkpoint(counter=counter, weights=weights),
                                     sys.argv[1], max_to_keep=2)
for n in range(1, 10_000):
    counter.assign(n)
    weights.assign(tf.fill([4_000_000], float(n)))
    manager.save(checkpoint_number=n)
    print(n, flush=True)
"""


def test_sigkill_while_saving_leaves_the_previous_checkpoint_intact(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", _SAVE_LOOP, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    for _ in range(5):  # let several saves complete, then kill in the middle of later ones
        child.stdout.readline()
    time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    latest = tf.train.latest_checkpoint(str(tmp_path))
    reader = tf.train.load_checkpoint(latest)
    n = reader.get_tensor("counter/.ATTRIBUTES/VARIABLE_VALUE")
    assert latest.endswith(f"ckpt-{n}") and n >= 5
    assert np.all(reader.get_tensor("weights/.ATTRIBUTES/VARIABLE_VALUE") == n)


BATCH_OF_ONE = ["--mode", "train", "--epoch", 2, "--img_size", 32, "--batch", 1,
                "--test_ratio", 0.25, "--lr", 1e-3]


@pytest.fixture(scope="module")
def straight_batch_of_one(face_folder, tmp_path_factory):
    """The uninterrupted run the signal tests' resumed runs must end identical to."""
    out = str(tmp_path_factory.mktemp("straight"))
    assert run.main(["--data_dir", face_folder, "--out_dir", out, *map(str, BATCH_OF_ONE)]) == 0
    return out


# Both signals go to one handler, so the resume (a second run of the child) is checked
# once, after SIGTERM, the signal schedulers send.
@pytest.mark.parametrize("sig, code, resume", [(signal.SIGINT, 130, False),
                                               (signal.SIGTERM, 143, True)])
def test_signal_checkpoints_prints_resume_and_resume_finishes_identically(
        face_folder, request, tmp_path, sig, code, resume):
    common = ["--data_dir", face_folder, *BATCH_OF_ONE]
    out = tmp_path / "interrupted"
    child = _child(*common, "--out_dir", out)
    while not (out / "training" / "00000000.png").exists():  # training has started
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    time.sleep(1.0)
    child.send_signal(sig)
    _, err = child.communicate(timeout=120)
    assert child.returncode == code, err
    assert "Resume with: python" in err and "--resume" in err and "Traceback" not in err
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out / "checkpoints")))
    stopped_at = reader.get_tensor("step_in_epoch/.ATTRIBUTES/VARIABLE_VALUE")
    assert 0 < stopped_at < 27  # mid-epoch: the steps done so far were saved
    if not resume:
        return
    resumed = _child(*common, "--out_dir", out, "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    a, b = _weights(request.getfixturevalue("straight_batch_of_one")), _weights(out)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-5, err_msg=name)


# ----------------------------------------------------------------------------- load

@pytest.mark.slow
def test_memory_stays_flat_over_an_epoch_of_10000_images(tmp_path):
    psutil = pytest.importorskip("psutil")
    folder = tmp_path / "many"
    folder.mkdir()
    faces = [Image.fromarray(synthetic_faces.synthetic_face(3, i, 32)) for i in range(500)]
    for i in range(10_000):
        faces[i % 500].save(folder / f"{i:05d}.png", compress_level=1)
    # On a terminal the progress bar redraws every second: a pseudo-terminal gives the test
    # a step count to sample the memory at.
    leader, follower = pty.openpty()
    child = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--data_dir", folder,
                              "--out_dir", tmp_path / "out", "--img_size", "32", "--batch", "64",
                              "--epoch", "1", "--mode", "train", "--test_ratio", "0.05"],
                             stdout=follower, stderr=subprocess.PIPE, text=True)
    os.close(follower)
    process = psutil.Process(child.pid)
    samples, buffer = {}, ""
    while True:
        try:
            chunk = os.read(leader, 256).decode(errors="replace")
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        buffer += chunk
        *done, buffer = buffer.replace("\r", "\n").split("\n")
        for line in done:
            head = line.split("/", 1)[0].split("m")[-1].strip()
            if head.isdigit() and "img/s" in line:
                try:
                    samples[int(head)] = process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
    assert child.wait() == 0, child.stderr.read()
    steps = 9_500 // 64
    # The allocator still grows over the first steps and its resident size swings by ~5 %
    # from step to step (more with oneDNN off and another process on the cores): a leak is
    # the level of the last quarter above that of the second, medians against medians.
    second = [rss for step, rss in samples.items() if steps / 4 <= step <= steps / 2]
    last = [rss for step, rss in samples.items() if step >= steps * 3 / 4]
    assert len(second) >= 3 and len(last) >= 3, samples
    assert np.median(last) <= 1.05 * np.median(second), (second, last)
