"""One process per run folder, whole files only, and a full disk that costs nothing but the
write in flight."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import run
import run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--img_size", "32", "--batch", "4", "--test_ratio", "0.25", "--lr", "1e-3"]


def _error_line(err):
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "function_node" not in err
    return lines[0]


def _steps_and_losses(out):
    """What two runs of the same command must share: every step's losses, every epoch's row
    (less its timings)."""
    steps = run_folder.read_csv(os.path.join(out, "train_loss.csv"))
    epochs = [{k: v for k, v in row.items() if k not in ("train_seconds", "images_per_second")}
              for row in run_folder.read_csv(os.path.join(out, "metrics.csv"))]
    return steps, epochs


def _assert_same_records(a, b):
    (steps_a, epochs_a), (steps_b, epochs_b) = _steps_and_losses(a), _steps_and_losses(b)
    assert [r["step"] for r in steps_a] == [r["step"] for r in steps_b]
    assert [r["epoch"] for r in epochs_a] == [r["epoch"] for r in epochs_b]
    for x, y in zip(steps_a + epochs_a, steps_b + epochs_b):
        assert x.keys() == y.keys()
        np.testing.assert_allclose([x[k] for k in x], [y[k] for k in x], rtol=1e-5)


# ----------------------------------------------------------------------------- the lock

def test_lock_is_exclusive_names_the_holder_and_is_released(tmp_path):
    with run_folder.lock(str(tmp_path)):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        with (pytest.raises(run_folder.FolderBusy, match=f"in use by process {os.getpid()}"),
              run_folder.lock(str(tmp_path))):
            pass
    with run_folder.lock(str(tmp_path)):  # released when the block ended
        pass


def test_second_process_on_a_run_folder_exits_2_and_a_killed_holder_frees_it(
        face_folder, tmp_path, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--data_dir",
                              face_folder, "--out_dir", str(out), "--epoch", "50", *SMALL],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "training" / "00000000.png").exists():  # it is training
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        assert (out / ".lock").read_text().strip() == str(first.pid)
        before = sorted(p.name for p in out.iterdir())
        code = run.main(["--data_dir", face_folder, "--out_dir", str(out), *SMALL])
        captured = capsys.readouterr()
        assert code == 2
        assert f"--out_dir {out} is in use by process {first.pid}" in _error_line(captured.err)
        assert "images at" not in captured.out  # refused before any image was loaded
        # --resume typed in a second terminal is refused the same way
        assert run.main(["--data_dir", face_folder, "--out_dir", str(out), "--resume",
                         *SMALL]) == 2
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with run_folder.lock(str(out)):  # the operating system released the killed holder's lock
        pass


def test_inpaint_reads_a_run_that_is_locked(trained_run, face_folder, tmp_path, capsys):
    photo = min(p for p in os.listdir(os.path.join(face_folder, "a")) if p.endswith(".png"))
    with run_folder.lock(trained_run):
        code = run.main(["--mode", "inpaint", "--out_dir", trained_run, "--input",
                         os.path.join(face_folder, "a", photo), "--hole", "center",
                         "--output", str(tmp_path / "restored")])
    assert code == 0, capsys.readouterr().err
    assert os.listdir(tmp_path / "restored")


# ----------------------------------------------------------------------------- whole files

def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "test_metrics.json"
    run_folder.write_text(str(path), "old")
    with pytest.raises(OSError), run_folder.atomic_path(str(path)) as tmp, open(tmp, "w") as f:
        f.write("half")
        raise OSError(28, "No space left on device")
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["test_metrics.json"]


def test_a_torn_last_csv_line_is_dropped(tmp_path):
    path = tmp_path / "train_loss.csv"
    path.write_text("step,epoch,rec\r\n1,1,2.5\r\n2,1,2.")
    [row] = run_folder.read_csv(str(path))
    assert row == {"step": 1, "epoch": 1, "rec": 2.5}
    # counts stay integers (1 == 1.0 would hide it): a resumed run rewrites "epoch" as 1
    assert [type(row[k]) for k in ("step", "epoch", "rec")] == [int, int, float]


# ----------------------------------------------------------------------------- a full disk

TWO_EPOCHS = ["--mode", "train", "--epoch", "2", *SMALL]  # conftest's straight_run
SECOND_CHECKPOINT = 2 * (27 // 4)  # 27 training faces, batch 4


def _small_disk(folder):
    """Mounts a 110 MB tmpfs on folder: it holds one checkpoint of the 32x32 networks (75 MB)
    but not two. Returns False where mounting needs a root this process does not have."""
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=110m", "tmpfs", str(folder)],
                          check=False, capture_output=True).returncode == 0


def _fail_second_save(monkeypatch):
    """Where no tmpfs can be mounted: the second save fails as TensorFlow's does on a full
    disk, after it has started its PREFIX_temp folder, with TensorFlow's own error text."""
    save = tf.train.CheckpointManager.save

    def fails_second_time(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number == SECOND_CHECKPOINT:
            os.makedirs(os.path.join(manager.directory, f"ckpt-{checkpoint_number}_temp"))
            raise tf.errors.ResourceExhaustedError(
                None, None, "{{function_node __wrapped__SaveV2_dtypes_309_device_/job:localhost"
                "/replica:0/task:0/device:CPU:0}} ckpt_temp/part-00000-of-00001.data-00000-of-"
                "00001.tempstate1046; No space left on device")
        return save(manager, checkpoint_number=checkpoint_number, **kwargs)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", fails_second_time)


def test_full_disk_is_one_line_and_resume_finishes_as_if_nothing_happened(
        face_folder, straight_run, tmp_path, monkeypatch, capsys):
    """The issue's experiment on a real tmpfs, grown to 400 MB before --resume; by injection
    where this machine cannot mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    real = _small_disk(disk)
    if not real:
        _fail_second_save(monkeypatch)
    try:
        out = disk / "run"
        argv = ["--data_dir", face_folder, "--out_dir", str(out), *TWO_EPOCHS]
        assert run.main(argv) == 1
        line = _error_line(capsys.readouterr().err)
        good = os.path.join(str(out), "checkpoints", f"ckpt-{27 // 4}")
        assert line.startswith(f"error: could not write {out}/checkpoints/ckpt-"
                               f"{SECOND_CHECKPOINT}: no space left on device; free some space, "
                               f"then continue from the last good checkpoint, {good}, with: "
                               "python ")
        assert line.endswith(" --resume")
        assert not [f for f in os.listdir(out / "checkpoints") if "_temp" in f]
        assert tf.train.latest_checkpoint(str(out / "checkpoints")) == good
        if real:
            subprocess.run(["mount", "-o", "remount,size=400m", str(disk)], check=True)
        monkeypatch.undo()
        assert run.main([*argv, "--resume"]) == 0
        _assert_same_records(str(out), straight_run)
    finally:
        if real:
            subprocess.run(["umount", "-l", str(disk)], check=False)
