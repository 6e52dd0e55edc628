import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import with_bfloat16_kernels
from PIL import Image

import datamanager
import holes
import losses
import model
import neuralnet
import run
import synthetic_faces
import tf_process

ROOT = Path(__file__).resolve().parents[1]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_epoch_run_writes_every_output(trained_run):
    out = trained_run
    # one grid before training, one per epoch after it
    assert sorted(os.listdir(os.path.join(out, "training"))) == [f"{e:08d}.png" for e in range(3)]
    with Image.open(os.path.join(out, "training", "00000000.png")) as grid:
        # four mosaics of the 27 training images (fewer than 100), 6 columns by 5 rows of
        # 32 px, side by side under their titles
        assert grid.mode == "RGB" and grid.width == 4 * 6 * 32 + 3 * 4 and grid.height > 5 * 32
    tests = sorted(os.listdir(os.path.join(out, "test")))
    assert tests == [f"{i:08d}.png" for i in range(9)]
    with Image.open(os.path.join(out, "test", tests[0])) as picture:
        assert picture.size == (3 * 32, 32)
        panels = np.asarray(picture).reshape(32, 3, 32, 3).transpose(1, 0, 2, 3)
    top, left, side = holes.center_box(32)
    hole = (slice(top, top + side), slice(left, left + side))
    assert panels[1][hole].max() == 0  # masked panel: hole blacked out
    band = model.band_pixels(model.load_config(out))
    # the composite keeps the context beyond the blend band
    assert np.array_equal(panels[0][:top - band], panels[2][:top - band])
    metrics = _rows(os.path.join(out, "metrics.csv"))
    assert [int(float(r["epoch"])) for r in metrics] == [1, 2]
    assert len(_rows(os.path.join(out, "train_loss.csv"))) == 2 * (27 // 4)
    assert os.path.getsize(os.path.join(out, "loss.png")) > 10_000
    # checkpoints are numbered by step: 2 epochs of 27 // 4 steps
    assert tf.train.latest_checkpoint(os.path.join(out, "checkpoints")).endswith("ckpt-12")
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(out, "logs")))
    with open(os.path.join(out, "test_metrics.json")) as f:
        result = json.load(f)
    assert result["images"] == 9 and result["mask"] == "center"
    names = {"rec", "psnr", "ssim", "hole_psnr", "hole_l1", "seam", "detail"}
    assert set(result["model"]) == names
    assert set(result["references"]) == {"telea", "navier_stokes", "mean_border"}
    assert all(set(scores) == names for scores in result["references"].values())
    assert result["best_reference"] == max(result["references"],
                                           key=lambda n: result["references"][n]["hole_psnr"])
    assert result["timing"]["test_ms_per_image"] > 0 and result["timing"]["train_seconds"] > 0


def test_reconstruction_loss_goes_down(trained_run):
    # Twelve steps of a GAN on 6 different batches: the step losses are noisy (a batch's
    # faces vary more than 12 steps improve them), so the test set decides.
    steps = [float(r["rec"]) for r in _rows(os.path.join(trained_run, "train_loss.csv"))]
    assert np.mean(steps[-6:]) < np.mean(steps[:6])
    epochs = _rows(os.path.join(trained_run, "metrics.csv"))
    assert float(epochs[1]["test_rec"]) < float(epochs[0]["test_rec"])
    assert float(epochs[1]["test_hole_psnr"]) > float(epochs[0]["test_hole_psnr"])


def test_checkpoint_round_trip_gives_identical_outputs(trained_run):
    config = model.load_config(trained_run)
    first = model.build_generator(config)
    second = model.build_generator(config)
    x = tf.random.uniform([2, 32, 32, first.input_shape[-1]], seed=1)
    checkpoint = tf.train.latest_checkpoint(os.path.join(trained_run, "checkpoints"))
    tf.train.Checkpoint(generator=first).restore(checkpoint).expect_partial()
    tf.train.Checkpoint(generator=second).restore(checkpoint).expect_partial()
    assert np.array_equal(first(x).numpy(), second(x).numpy())
    assert not np.array_equal(first(x).numpy(), model.build_generator(config)(x).numpy())


@pytest.mark.parametrize("fake_logit, expected", [(0.0, np.log(2.0)), (20.0, 0.0)])
def test_generator_adversarial_loss_is_non_saturating(fake_logit, expected):
    loss = losses.generator_adversarial_loss(tf.constant([[fake_logit]])).numpy()
    np.testing.assert_allclose(loss, [expected], atol=1e-6)
    d = losses.discriminator_loss(tf.constant([[20.0]]), tf.constant([[-20.0]])).numpy()
    np.testing.assert_allclose(d, [0.0], atol=1e-6)


def test_translate_moves_the_picture_and_mirrors_what_it_uncovers():
    image = tf.reshape(tf.range(2 * 6 * 6 * 3, dtype=tf.float32), [2, 6, 6, 3])
    np.testing.assert_array_equal(tf_process.translate(image, [2, 2], 2), image)
    moved = tf_process.translate(image, [0, 4], 2).numpy()  # 2 down, 2 left
    np.testing.assert_array_equal(moved[:, 2:, :4], image[:, :4, 2:])
    mirrored_rows, mirrored_columns = [2, 1], [2, 3, 4, 5, 4, 3]
    np.testing.assert_array_equal(moved[:, :2], image.numpy()[:, mirrored_rows][:, :, mirrored_columns])
    assert tf_process.shift_pixels(model.TrainConfig()) == 4
    assert tf_process.shift_pixels(model.TrainConfig(img_size=32)) == 1


def test_train_step_is_traced_once_across_epochs(face_folder, tmp_path):
    images = datamanager.prepare_images(str(tmp_path), 32, data_dir=face_folder)
    train, _ = datamanager.split(images.count, 0.25)
    config = model.TrainConfig(img_size=32)
    generator = model.build_generator(config)
    discriminator = tf_process.build_discriminator(config)
    ema = tf_process.make_ema_generator(generator)
    optimizers = [tf_process.make_optimizer(m, config.lr, config.beta1, config.beta2)
                  for m in (generator, discriminator)]
    step = tf_process.make_train_step(
        config=config, generator=generator, discriminator=discriminator,
        g_optimizer=optimizers[0], d_optimizer=optimizers[1], ema_generator=ema, global_batch=8,
        strategy=tf.distribute.get_strategy())
    for epoch in range(2):
        for image_batch, masks in datamanager.train_dataset(images, train, 8, "random", 0, epoch):
            losses = step(image_batch, masks)
    assert step.experimental_get_tracing_count() == 1
    assert int(optimizers[0].iterations.numpy()) == 2 * (27 // 8)
    assert set(losses) == {"rec", "adv", "total", "disc"}


def test_test_mode_reports_the_training_throughput_of_the_trained_batch(trained_run, face_folder,
                                                                       tmp_path):
    # trained_run: 2 epochs of 27 // 4 = 6 steps at batch 4; the test runs at batch 16
    out = tmp_path / "copy"
    shutil.copytree(trained_run, out)
    assert run.main(["--data_dir", face_folder, "--out_dir", str(out), "--mode", "test",
                     "--img_size", "32", "--batch", "16", "--test_ratio", "0.25"]) == 0
    with open(out / "test_metrics.json") as f:
        timing = json.load(f)["timing"]
    assert timing["train_images"] == 2 * 6 * 4
    assert timing["train_images_per_second"] == pytest.approx(48 / timing["train_seconds"])


def test_a_run_trained_with_the_pruned_patch_discriminator_still_tests(trained_run, face_folder,
                                                                       tmp_path):
    out = tmp_path / "old"
    shutil.copytree(trained_run, out)
    config = json.loads((out / "config.json").read_text())
    config["discriminator"] = "patch"  # the default until 7291642
    (out / "config.json").write_text(json.dumps(config))
    (out / "test_metrics.json").unlink()
    assert run.main(["--data_dir", face_folder, "--out_dir", str(out), "--mode", "test",
                     "--img_size", "32", "--batch", "16", "--test_ratio", "0.25"]) == 0
    with open(out / "test_metrics.json") as f:
        assert json.load(f)["images"] == 9


def test_test_mode_tests_the_recorded_split_and_refuses_another(trained_run, face_folder,
                                                                 tmp_path, capsys):
    """trained_run was split with --test_ratio 0.25: 9 of its 36 faces are held out."""
    out = tmp_path / "copy"
    shutil.copytree(trained_run, out)
    split = json.loads((out / "config.json").read_text())["split"]
    assert split == {"data_dir": os.path.abspath(face_folder), "limit": None, "n_synthetic": 1500,
                     "seed": 0, "align_faces": False, "test_ratio": 0.25, "images": 36}
    (out / "test" / "99999999.png").write_bytes(b"an earlier test's extra picture")
    assert run.main(["--out_dir", str(out), "--mode", "test", "--batch", "16"]) == 0
    with open(out / "test_metrics.json") as f:
        assert json.load(f)["images"] == 9
    assert sorted(os.listdir(out / "test")) == [f"{i:08d}.png" for i in range(9)]
    capsys.readouterr()
    refused = {"--test_ratio": ("0.1", "0.25"), "--n_synthetic": ("40", "1500"),
               "--data_dir": (str(tmp_path), face_folder)}
    for flag, (given, recorded) in refused.items():
        flags, said = [flag, given], f"{flag} {given}: this run was split with {flag} {recorded}"
        assert run.main(["--out_dir", str(out), "--mode", "test", *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, err


def test_console_written_to_a_file_is_plain(tmp_path):
    log = tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    with open(log, "w") as f:
        code = subprocess.run([sys.executable, str(ROOT / "run.py"), "--out_dir",
                               str(tmp_path / "out"), "--n_synthetic", "24", "--img_size", "32",
                               "--epoch", "1", "--batch", "8"],
                              stdout=f, stderr=subprocess.STDOUT, env=env, check=False).returncode
    text = log.read_text()
    assert code == 0, text
    assert "\r" not in text and "\x1b" not in text
    assert not re.search(r"^[IWEF]\d{4} |absl|cuInit|oneDNN", text, re.MULTILINE), text
    assert re.search(r"^  step 2/2  rec [\d.]+ ", text, re.MULTILINE), text
    assert re.search(r"^speed: [\d.]+ images/s, so training takes about ", text, re.MULTILINE)
    assert "Epoch [1 / 1] (2 iterations)" in text and "Test on 2 images" in text


def test_every_lever_trains_under_mixed_precision():
    with_bfloat16_kernels(check_every_lever_under_bfloat16)


def check_every_lever_under_bfloat16():
    for discriminator in neuralnet.DISCRIMINATORS:
        check_levers_under_bfloat16(model.TrainConfig(
            img_size=32, upsample="reduce", mask_channel=True, band=4, feather=True,
            discriminator=discriminator, spectral_norm=True))


def check_levers_under_bfloat16(config):
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        generator = model.build_generator(config)
        discriminator = tf_process.build_discriminator(config)
        optimizers = [tf_process.make_optimizer(m, 1e-3, 0.9, 0.999)
                      for m in (generator, discriminator)]
        step = tf_process.make_train_step(
            config=config, generator=generator, discriminator=discriminator,
            g_optimizer=optimizers[0], d_optimizer=optimizers[1],
            ema_generator=tf_process.make_ema_generator(generator), global_batch=4,
            strategy=tf.distribute.get_strategy())
        images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)), tf.uint8)
        losses_ = step(images, holes.make_masks("random", 4, 32, [0, 1]))
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(float(v)) for v in losses_.values())
    # the total adds the overlap band's error to the reported hole-only reconstruction loss
    assert float(losses_["total"]) > float(losses_["rec"]) + config.adv_weight * float(losses_["adv"])


def _all_grey(pixels):
    return bool(np.all(pixels == pixels[..., :1]))


def test_a_greyscale_folder_is_restored_grey_and_a_colour_one_is_not(tmp_path, capsys,
                                                                    trained_run):
    folder = tmp_path / "pgm"
    folder.mkdir()
    for i in range(24):  # as the AT&T faces come: 8-bit greyscale .pgm files
        face = Image.fromarray(synthetic_faces.synthetic_face(5, i, 64)).convert("L")
        face.save(folder / f"{i:03d}.pgm")
    out = tmp_path / "run"
    assert run.main(["--data_dir", str(folder), "--out_dir", str(out), "--img_size", "32",
                     "--epoch", "2", "--batch", "4", "--test_ratio", "0.25"]) == 0
    assert "every image is greyscale: the restorations are made grey too" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["grey"] is True
    tests = sorted((out / "test").glob("*.png"))
    assert len(tests) == 6 and all(_all_grey(np.asarray(Image.open(p))) for p in tests)
    for grid in sorted((out / "training").glob("*.png")):
        pixels = np.asarray(Image.open(grid))
        panel = (pixels.shape[1] - 3 * 4) // 4  # four panels, 4-pixel gaps
        assert _all_grey(pixels[:, :3 * panel + 2 * 4])  # all but the coloured difference map
    photo = tmp_path / "photo.png"  # greyscale content stored as RGB
    Image.open(folder / "000.pgm").convert("RGB").resize((60, 48)).save(photo)
    assert run.main(["--mode", "inpaint", "--out_dir", str(out), "--input", str(photo),
                     "--hole", "center", "--output", str(tmp_path / "restored")]) == 0
    restored = np.asarray(Image.open(tmp_path / "restored" / "photo.png"))
    assert restored.shape == (48, 60, 3) and _all_grey(restored)
    assert json.loads(Path(trained_run, "config.json").read_text())["grey"] is False
