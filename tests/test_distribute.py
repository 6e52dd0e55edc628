"""tf.distribute on CPU: logical devices stand in for GPUs, local processes for machines."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter: logical devices must be set before TensorFlow starts.
_ONE_STEP = """
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
import tf_process, datamanager, holes, model

config = model.TrainConfig(img_size=32, lr=1e-3)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
masks = holes.make_masks("random", 8, 32, [1, 2])
results = {}
for name, strategy in (("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
                       ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    tf.keras.utils.set_random_seed(0)
    with strategy.scope():
        generator = model.build_generator(config)
        discriminator = tf_process.build_discriminator(config)
        ema = tf_process.make_ema_generator(generator)
        g_opt, d_opt = (tf_process.make_optimizer(m, config.lr, config.beta1, config.beta2)
                        for m in (generator, discriminator))
    step = tf_process.make_train_step(
        config=config, generator=generator,
        discriminator=discriminator, g_optimizer=g_opt, d_optimizer=d_opt, ema_generator=ema,
        global_batch=8, strategy=strategy)
    trainable = generator.trainable_weights + discriminator.trainable_weights
    before = np.concatenate([w.numpy().ravel() for w in trainable])
    data = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((images, masks)).batch(8))
    losses = step(*next(iter(data)))
    results[name] = {"replicas": strategy.num_replicas_in_sync,
                     "losses": {k: float(v) for k, v in losses.items()},
                     "update": np.concatenate([w.numpy().ravel() for w in trainable]) - before,
                     "others": np.concatenate([w.numpy().ravel() for w in
                                               generator.non_trainable_weights
                                               + discriminator.non_trainable_weights])}
one, two = results["one"], results["two"]
print(json.dumps({
    "replicas": [one["replicas"], two["replicas"]], "losses": [one["losses"], two["losses"]],
    "update_difference": float(np.linalg.norm(two["update"] - one["update"])
                               / np.linalg.norm(one["update"])),
    "others_difference": float(np.max(np.abs(two["others"] - one["others"])
                                      / np.maximum(np.abs(one["others"]), 1e-12)))}))
"""


def test_two_replicas_give_the_same_step_as_one_device():
    done = subprocess.run([sys.executable, "-c", _ONE_STEP, ROOT], capture_output=True, text=True,
                          check=False,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [1, 2]
    # The losses are means of a few thousand float32 terms summed in another order across
    # two replicas: a few ulps apart (measured: 1e-7 relative).
    one, two = result["losses"]
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5)
    # Adam's first step moves each weight by lr * g / (|g| + eps), and most gradients of a
    # fresh network are within a few eps of 0: there, a summation-order ulp changes a single
    # weight's step by up to 4 % of lr (measured on TensorFlow's own kernels,
    # TF_ENABLE_ONEDNN_OPTS=0). The update as a whole moves by 1e-4 of its norm there
    # (3e-7 with oneDNN), while a dropped replica or a doubled gradient moves it by 84 %.
    assert result["update_difference"] < 1e-3, result
    # the spectral-norm vectors (the power iteration's state) follow the same weights
    assert result["others_difference"] < 1e-5, result


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_local_workers_train_together_and_the_chief_writes_one_checkpoint(face_folder,
                                                                               tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    out = tmp_path / "out"
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                     "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "run.py"), "--data_dir", face_folder,
             "--out_dir", str(out), "--mode", "train", "--epoch", "1", "--img_size", "32",
             "--batch", "8", "--test_ratio", "0.25", "--no-mixed_precision"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    printed = [w.communicate(timeout=600) for w in workers]
    for worker, (stdout, stderr) in zip(workers, printed):
        assert worker.returncode == 0, stderr[-3000:]
    assert "2 replica(s)" in printed[0][0]
    checkpoints = sorted(f for f in os.listdir(out / "checkpoints") if f.endswith(".index"))
    assert checkpoints == [f"ckpt-{27 // 8}.index"]
    rows = run_folder.read_csv(str(out / "metrics.csv"))
    assert [r["epoch"] for r in rows] == [1]  # one writer, not two
    reader = tf.train.load_checkpoint(str(out / "checkpoints" / f"ckpt-{27 // 8}"))
    assert reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1
