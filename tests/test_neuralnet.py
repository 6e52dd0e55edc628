from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import with_bfloat16_kernels

import neuralnet
import run
import tf_process


def test_parameter_counts_at_128_match_design():
    assert neuralnet.Generator(128).count_params() == 3_607_331
    assert neuralnet.Discriminator(128).count_params() == 1_478_033


@pytest.mark.parametrize("size", [32, 64])
def test_output_shapes_and_ranges(size):
    x = tf.random.uniform([2, size, size, 3])
    restored = neuralnet.Generator(size)(x)
    logits = neuralnet.Discriminator(size)(x)["logits"]
    assert restored.shape == (2, size, size, 3)
    assert logits.shape == (2, 1)
    assert restored.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(restored)) and float(tf.reduce_max(restored)) <= 1.0


def test_generator_layer_shapes_follow_design_table():
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in neuralnet.Generator(128).layers}
    assert shapes["g_enc1_pool"] == (64, 64, 16)
    assert shapes["g_enc5_pool"] == (4, 4, 128)
    assert shapes["g_enc6_conv2"] == (4, 4, 256)
    assert shapes["g_channelwise_dense"] == (4, 4, 256)
    assert shapes["g_dec2_upconv"] == (8, 8, 128)
    assert shapes["g_dec6_conv"] == (128, 128, 16)
    assert shapes["g_output"] == (128, 128, 3)


@pytest.mark.parametrize("size", [0, 48, 100])
def test_sizes_not_multiple_of_32_are_refused(size):
    with pytest.raises(ValueError, match="multiple of 32"):
        neuralnet.Generator(size)


def test_channelwise_dense_equals_one_dense_layer_per_channel():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 4, 256)).astype(np.float32)
    layer = neuralnet.ChannelWiseDense()
    layer.build(x.shape)
    layer.bias.assign(rng.normal(size=(256, 16)).astype(np.float32))
    got = layer(x).numpy()
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    for c in range(256):
        dense = tf.keras.layers.Dense(16, activation="elu")
        dense.build((None, 16))
        dense.set_weights([kernel[c], bias[c]])
        expected = dense(x[..., c].reshape(3, 16)).numpy().reshape(3, 4, 4)
        np.testing.assert_allclose(got[..., c], expected, rtol=1e-5, atol=1e-5)


def test_levers_keep_the_parameter_counts():
    # a resize convolution has the transposed convolution's kernel; the mask channel adds one
    # input channel to the first convolution
    for kind in ("nearest", "bilinear", "smooth"):
        assert neuralnet.Generator(128, upsample=kind).count_params() == 3_607_331
    assert neuralnet.Generator(128, mask_channel=True).count_params() == 3_607_331 + 16 * 9
    # a skip doubles the input channels of each decoder stage's second convolution
    extra = sum(9 * f * f for f in neuralnet.DECODER_FILTERS)
    skipped = neuralnet.Generator(128, skip=True)
    assert skipped.count_params() == 3_607_331 + extra
    assert skipped.get_layer("g_dec6_skip").output.shape[1:] == (128, 128, 32)
    local = neuralnet.Discriminator(128, local=True)
    x = tf.zeros([1, 128, 128, 3])
    assert neuralnet.Discriminator(128, spectral_norm=True)(x)["logits"].shape == (1, 1)
    judged = local([x, tf.zeros([1, 64, 64, 3])])
    assert judged["logits"].shape == (1, 2)
    # the six stages of the picture's encoder, then the six of the window's
    assert [f.shape[1:] for f in judged["features"]] == [
        (128, 128, 16), (64, 64, 32), (32, 32, 64), (16, 16, 128), (8, 8, 128), (4, 4, 256),
        (64, 64, 16), (32, 32, 32), (16, 16, 64), (8, 8, 128), (4, 4, 128), (2, 2, 256)]


def test_smooth_upsampling_interpolates_instead_of_copying_blocks():
    generator = neuralnet.Generator(32, upsample="smooth")
    row = tf.constant([0.0, 1.0, 3.0])[None, None, :, None] * tf.ones([1, 3, 1, 1])
    up = generator.get_layer("g_dec2_smooth")(generator.get_layer("g_dec2_resize")(row))
    # nearest would give 0 0 1 1 3 3: each step between neighbours is halved, the edge kept
    np.testing.assert_allclose(up[0, 0, :, 0].numpy(), [0.0, 0.5, 1.0, 2.0, 3.0, 3.0])


def test_discriminator_logits_stay_float32_under_mixed_precision():
    with_bfloat16_kernels(check_discriminator_logits_under_bfloat16)


def check_discriminator_logits_under_bfloat16():
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = neuralnet.Discriminator(32, local=True, spectral_norm=True)
        logits = model([tf.zeros([1, 32, 32, 3]), tf.zeros([1, 32, 32, 3])])["logits"]
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert logits.dtype == tf.float32 and logits.shape == (1, 2)


ORIGINAL_RECIPE = ("--upsample transpose --no-mask_channel --band 0 --no-feather "
                   "--no-spectral_norm --no-local_d --lr 1e-4 --batch 64 --epoch 20")


def test_the_documented_original_recipe_builds_the_original_networks():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"python run.py {ORIGINAL_RECIPE}" in readme
    config = run.train_config(run.parse_args(ORIGINAL_RECIPE.split()))
    assert (config.upsample, config.mask_channel, config.band, config.feather) == (
        "transpose", False, 0, False)
    assert (config.lr, config.batch, config.epoch, config.adv_weight) == (1e-4, 64, 20, 1.0)
    assert tf_process.build_generator(config).count_params() == 3_607_331
    assert tf_process.build_discriminator(config).count_params() == 1_478_033


def test_dilated_design_parameter_counts_and_shapes():
    generator = neuralnet.DilatedGenerator(128)
    assert generator.count_params() == 1_861_331
    assert neuralnet.PatchDiscriminator(128).count_params() == 166_978
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in generator.layers}
    assert shapes["g_down192"] == (16, 16, neuralnet.TRUNK_FILTERS)  # 1/8 of the side
    assert shapes["g_residual8"] == (16, 16, neuralnet.TRUNK_FILTERS)
    assert shapes["g_output"] == (128, 128, 3)
    assert generator.input_shape == (None, 128, 128, 4)  # the hole is a channel


@pytest.mark.parametrize("size", [32, 64])
def test_dilated_design_outputs(size):
    restored = neuralnet.DilatedGenerator(size)(tf.random.uniform([2, size, size, 4]))
    judged = neuralnet.PatchDiscriminator(size)(restored)
    assert restored.shape == (2, size, size, 3) and restored.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(restored)) and float(tf.reduce_max(restored)) <= 1.0
    assert judged["logits"].shape == (2, size // 8, size // 8, 1)
    assert judged["logits"].dtype == tf.float32
