"""What makes a run fast on every CPU, and what it says about its own length."""
import os
import subprocess
import sys

import pytest
from conftest import no_gpu

import datamanager
import outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("user_value, expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_onednn_is_on_unless_the_user_said_otherwise(user_value, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if user_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = user_value
    done = subprocess.run(
        [sys.executable, "-c", "import os, run; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == expected


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (45, "45 s"), (790, "13 min 10 s"),
                                           (7500, "2 h 5 min")])
def test_duration(seconds, text):
    assert datamanager.duration(seconds) == text


def test_estimate_of_a_run_within_the_budget():
    # 30 epochs of 42 steps of 32 images at 64 images/s: 1,260 steps of 0.5 s = 630 s, of
    # which 10 steps (and 20 s of tracing) are done.
    line = outputs.estimate_line(64.0, 32, 42, 30, 1250, 25.0)
    assert line == ("speed: 64.0 images/s, so training takes about 10 min 50 s (30 epochs of "
                    "42 steps; 10 min 25 s from now), plus each epoch's evaluation")


def test_estimate_over_the_budget_names_the_epochs_that_fit():
    # 10 images/s: an epoch of 42 steps of 32 images takes 134.4 s; 900 s fit 6 of them.
    line = outputs.estimate_line(10.0, 32, 42, 30, 1255, 16.0)
    assert "about 1 h 7 min (30 epochs of 42 steps; 1 h 6 min from now)" in line
    assert line.endswith(". Over 15 min 0 s: --epoch 6 fits it")


def test_estimate_of_a_resumed_run_counts_the_time_already_trained():
    # resumed at step 840 of 1,260 after 600 s of training: 420 steps of 0.5 s are left
    line = outputs.estimate_line(64.0, 32, 42, 30, 420, 600.0)
    assert "about 13 min 30 s (30 epochs of 42 steps; 3 min 30 s from now)" in line


def test_estimate_when_one_epoch_exceeds_the_budget():
    line = outputs.estimate_line(1.0, 32, 42, 2, 84, 0.0)
    assert line.endswith("One epoch alone takes over 15 min 0 s: use fewer images (--limit, "
                         "--n_synthetic) or a smaller --img_size")


class _Printed:
    def __init__(self):
        self.lines = []

    def note(self, text):
        self.lines.append(text)


def test_estimate_waits_for_the_warm_up_and_prints_once(monkeypatch):
    clock = iter([0.0, 10.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0])
    monkeypatch.setattr(outputs.time, "perf_counter", lambda: next(clock))
    estimate, printed = outputs.Estimate(32, 10, 2, 0, 0.0), _Printed()
    for _ in range(7):  # steps end at 10 (tracing), 12 (warm-up), then one a second
        estimate.on_step(printed)
    assert len(printed.lines) == 1  # printed at 17 s: 5 steps, 5 s after the warm-up
    # 5 steps of 32 images in 5 s: 32 images/s; 13 steps left of 1 s, after 17 s
    assert printed.lines[0].startswith("speed: 32.0 images/s, so training takes about 30 s ")
    estimate.on_epoch_end(printed)
    assert len(printed.lines) == 1


def test_the_epochs_left_are_timed_with_their_evaluations_once():
    estimate, printed = outputs.Estimate(32, 42, 36, 0, 0.0), _Printed()
    estimate._say(printed, 56.0, estimate.start)
    estimate.on_epoch_work(printed, 9.0, 35)  # the first also traces: not said
    assert len(printed.lines) == 1
    # an epoch: 42 steps of 32 images at 56 images/s = 24 s, and 6 s of evaluation
    estimate.on_epoch_work(printed, 6.0, 34)
    estimate.on_epoch_work(printed, 6.0, 33)
    assert printed.lines[1:] == [
        ("each epoch also spends 6.0 s on its evaluation, checkpoint and pictures: the 34 "
         "epochs left end in about 17 min 0 s. With them, --epoch 30 fits 15 min 0 s")]
    assert outputs.overhead_line(84.0, 32, 42, 36, 35, 4.0).endswith("about 11 min 40 s")
    assert "the 1 epoch left end in about 20 s" in outputs.overhead_line(84.0, 32, 42, 3, 1, 4.0)


@no_gpu
@pytest.mark.parametrize("env", [{"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"TF_ENABLE_ONEDNN_OPTS": "0"}])
def test_no_bfloat16_where_onednn_cannot_run_it(env):
    """oneDNN limited to AVX2 has no bfloat16 convolutions, and TensorFlow's own kernels
    only emulate it: both train in float32 whatever the CPU."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import run, devices; print(devices.configure_devices(None, mixed_precision=True)[1])"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "float32"
