from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import with_bfloat16_kernels

import model
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
    logits = neuralnet.Discriminator(size)(x)
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
    # the previous default's decoder (still built for the runs it trained) has the transposed
    # convolution's kernels; the mask channel adds one input channel to the first convolution
    assert neuralnet.Generator(128, upsample="nearest").count_params() == 3_607_331
    assert neuralnet.Generator(128, mask_channel=True).count_params() == 3_607_331 + 16 * 9
    x = tf.zeros([1, 128, 128, 3])
    normalised = neuralnet.Discriminator(128, spectral_norm=True)
    assert normalised(x).shape == (1, 1)
    assert normalised.count_params() > 1_478_033  # plus the power iteration's vectors
    assert len(normalised.trainable_weights) == len(neuralnet.Discriminator(128).trainable_weights)


def test_reduce_upsampling_narrows_the_channels_before_the_resize():
    generator = neuralnet.Generator(128, upsample="reduce")
    # each transposed convolution (in*out*9 + out) becomes a 1x1 (in*out + out) and a 3x3
    # convolution over the narrowed map (out*out*9 + out)
    ins, outs = (256, 128, 128, 64, 32), neuralnet.DECODER_FILTERS
    removed = sum(i * o * 9 for i, o in zip(ins, outs))
    added = sum(i * o + o * o * 9 + o for i, o in zip(ins, outs))
    assert generator.count_params() == 3_607_331 - removed + added == 3_471_763
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in generator.layers}
    assert shapes["g_dec6_reduce"] == (64, 64, 16) and shapes["g_dec6_resize"] == (128, 128, 16)
    assert shapes["g_dec2_reduce"] == (4, 4, 128) and shapes["g_dec2_upconv"] == (8, 8, 128)
    assert generator(tf.zeros([2, 128, 128, 3])).shape == (2, 128, 128, 3)


def test_an_unknown_upsampling_is_refused_by_name():
    with pytest.raises(ValueError, match="'bilinear' is not one of transpose, reduce"):
        neuralnet.Generator(32, upsample="bilinear")


def test_discriminator_logits_stay_float32_under_mixed_precision():
    with_bfloat16_kernels(check_discriminator_logits_under_bfloat16)


def check_discriminator_logits_under_bfloat16():
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        image = tf.zeros([1, 32, 32, 3])
        logits = [neuralnet.Discriminator(32, spectral_norm=True, halvings=halvings)(image)
                  for halvings in neuralnet.DISCRIMINATORS.values()]
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert all(x.dtype == tf.float32 and x.shape == (1, 1) for x in logits)


ORIGINAL_RECIPE = ("--discriminator whole --upsample transpose --no-mask_channel --band 0 --no-feather "
                   "--no-spectral_norm --d_shift 0 --adv_weight 1 --lr 1e-4 --batch 64 --epoch 20")


def test_the_documented_original_recipe_builds_the_original_networks():
    quality = (Path(__file__).parents[1] / "docs" / "quality.md").read_text()
    assert f"python run.py {ORIGINAL_RECIPE}" in quality
    config = run.train_config(run.parse_args(ORIGINAL_RECIPE.split()))
    assert (config.discriminator, config.upsample, config.mask_channel, config.band,
            config.feather, config.spectral_norm, config.d_shift) == (
                "whole", "transpose", False, 0, False, False, 0)
    assert (config.lr, config.batch, config.epoch, config.adv_weight) == (1e-4, 64, 20, 1.0)
    assert model.build_generator(config).count_params() == 3_607_331
    assert tf_process.build_discriminator(config).count_params() == 1_478_033


def test_quarter_discriminator_is_the_original_at_a_quarter_of_the_resolution():
    quarter = tf_process.build_discriminator(model.TrainConfig(spectral_norm=False))
    assert quarter.count_params() == 1_478_033
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in quarter.layers}
    assert shapes["d_mean2"] == (32, 32, 3) and shapes["d_enc6_conv2"] == (4, 4, 256)
    # what it judges is the 3x3 mean at stride 2, twice: a one-pixel checkerboard reaches it
    # as a flat grey, so its gradient cannot ask for one
    checker = (np.indices((128, 128)).sum(0) % 2).astype(np.float32)
    image = np.repeat(checker[None, ..., None], 3, axis=-1)
    seen = tf.keras.Model(quarter.input, quarter.get_layer("d_mean2").output)(image).numpy()
    np.testing.assert_allclose(seen[0, :-1, :-1], 4 / 9, atol=1e-6)
    for size in (32, 64):
        logits = neuralnet.Discriminator(size, halvings=2)(tf.random.uniform([2, size, size, 3]))
        assert logits.shape == (2, 1) and logits.dtype == tf.float32
