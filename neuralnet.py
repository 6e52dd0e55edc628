"""The context encoder (generator) and its discriminator, as in DESIGN.md."""
import tensorflow as tf
from tensorflow.keras import layers

# Every stage halves the side five times, so sides must be multiples of 32.
DOWNSAMPLING = 32
ENCODER_FILTERS = (16, 32, 64, 128, 128, 256)
DECODER_FILTERS = (128, 128, 64, 32, 16)


def _initializer():
    # The original's tf.contrib variance_scaling_initializer defaults: scale 1, fan-in, normal.
    return tf.keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal")


def _conv(filters, name, activation="elu", dtype=None):
    return layers.Conv2D(filters, 3, padding="same", activation=activation,
                         kernel_initializer=_initializer(), name=name, dtype=dtype)


def encoder(x, prefix):
    """Six stages of two 3x3 convolutions; the first five end in a 2x2 max-pool."""
    for stage, filters in enumerate(ENCODER_FILTERS, start=1):
        x = _conv(filters, f"{prefix}enc{stage}_conv1")(x)
        x = _conv(filters, f"{prefix}enc{stage}_conv2")(x)
        if stage < len(ENCODER_FILTERS):
            x = layers.MaxPool2D(2, name=f"{prefix}enc{stage}_pool")(x)
    return x


class ChannelWiseDense(layers.Layer):
    """A dense layer per channel over its HxW values, with no mixing across channels.

    The original ran one matmul per channel (256 of them); one batched einsum over a
    [channels, H*W, H*W] kernel is the same mathematics in a single kernel launch.
    """

    def build(self, input_shape):
        _, height, width, channels = input_shape
        area = height * width
        self.kernel = self.add_weight(name="kernel", shape=(channels, area, area),
                                      initializer=_initializer())
        self.bias = self.add_weight(name="bias", shape=(channels, area), initializer="zeros")

    def call(self, x):
        shape = tf.shape(x)
        per_channel = tf.transpose(x, [0, 3, 1, 2])
        per_channel = tf.reshape(per_channel, [shape[0], shape[3], shape[1] * shape[2]])
        kernel = tf.cast(self.kernel, per_channel.dtype)
        bias = tf.cast(self.bias, per_channel.dtype)
        y = tf.nn.elu(tf.einsum("bci,cio->bco", per_channel, kernel) + bias)
        y = tf.reshape(y, [shape[0], shape[3], shape[1], shape[2]])
        return tf.transpose(y, [0, 2, 3, 1])


def _check_size(img_size):
    if img_size < DOWNSAMPLING or img_size % DOWNSAMPLING:
        raise ValueError(f"image side must be a positive multiple of {DOWNSAMPLING}, got {img_size}")


def Generator(img_size=128, channels=3):
    """Masked image in [0, 1] -> full restored image in [0, 1]."""
    _check_size(img_size)
    masked = layers.Input((img_size, img_size, channels), name="masked")
    x = encoder(masked, "g_")
    x = ChannelWiseDense(name="g_channelwise_dense")(x)
    x = _conv(256, "g_dec1_conv1")(x)
    x = _conv(256, "g_dec1_conv2")(x)
    for stage, filters in enumerate(DECODER_FILTERS, start=2):
        x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="elu",
                                   kernel_initializer=_initializer(),
                                   name=f"g_dec{stage}_upconv")(x)
        x = _conv(filters, f"g_dec{stage}_conv")(x)
    # The output layer stays float32 under mixed precision: losses and pictures need it.
    restored = _conv(channels, "g_output", activation="sigmoid", dtype="float32")(x)
    return tf.keras.Model(masked, restored, name="generator")


def Discriminator(img_size=128, channels=3):
    """Image in [0, 1] -> one real/fake logit (no sigmoid: the loss takes logits)."""
    _check_size(img_size)
    image = layers.Input((img_size, img_size, channels), name="image")
    x = encoder(image, "d_")
    x = layers.Flatten(name="d_flatten")(x)
    logit = layers.Dense(1, kernel_initializer=_initializer(), name="d_logit", dtype="float32")(x)
    return tf.keras.Model(image, logit, name="discriminator")
