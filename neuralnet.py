"""The context encoder (generator) and its discriminator, layer by layer as the original.

Every convolution is 3x3, stride 1, "same" padding, ELU, with the original's variance-scaling
initialiser (scale 1, fan-in, untruncated normal). At 128x128x3:

| stage      | generator layers                                         | output     | parameters |
|------------|----------------------------------------------------------|------------|-----------:|
| enc 1      | conv 16, conv 16, maxpool 2                              | 64x64x16   |      2,768 |
| enc 2      | conv 32, conv 32, maxpool 2                              | 32x32x32   |     13,888 |
| enc 3      | conv 64, conv 64, maxpool 2                              | 16x16x64   |     55,424 |
| enc 4      | conv 128, conv 128, maxpool 2                            | 8x8x128    |    221,440 |
| enc 5      | conv 128, conv 128, maxpool 2                            | 4x4x128    |    295,168 |
| enc 6      | conv 256, conv 256                                       | 4x4x256    |    885,248 |
| bottleneck | channel-wise dense: per channel 16 -> 16 values, ELU     | 4x4x256    |     69,632 |
| dec 1      | conv 256, conv 256                                       | 4x4x256    |  1,180,160 |
| dec 2      | transposed conv 128 stride 2, conv 128                   | 8x8x128    |    442,624 |
| dec 3      | transposed conv 128 stride 2, conv 128                   | 16x16x128  |    295,168 |
| dec 4      | transposed conv 64 stride 2, conv 64                     | 32x32x64   |    110,720 |
| dec 5      | transposed conv 32 stride 2, conv 32                     | 64x64x32   |     27,712 |
| dec 6      | transposed conv 16 stride 2, conv 16, conv 3 (sigmoid)   | 128x128x3  |      7,379 |
|            | generator total                                          |            |  3,607,331 |

The default decoder ("reduce" upsampling) replaces each transposed convolution by a 1x1
convolution at the input's resolution, a 2x nearest resize and a 3x3 convolution: dec 2 to
dec 6 hold 328,064 / 311,680 / 82,112 / 20,576 / 5,168 parameters, the generator 3,471,763.

The original's discriminator ("whole") is the same six encoder stages with weights of its
own (1,473,936 parameters), flattened (4*4*256) into one dense unit (4,097): 1,478,033
parameters. The original ended it in a sigmoid; it gives logits here, for the numerically
stable cross-entropy. The default ("quarter") is the same network shown the picture at a
quarter of its resolution (two 3x3 means, stride 2: 32x32 at 128) with two max-pools fewer,
so it ends at the same 4x4x256 with the same 1,478,033 parameters (1,479,282 with spectral
normalisation's power-iteration vectors) and a sixteenth of the arithmetic.
"""
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


def encoder(x, prefix, spectral_norm=False, pools=5):
    """Six stages of two 3x3 convolutions; the first `pools` end in a 2x2 max-pool."""
    wrap = layers.SpectralNormalization if spectral_norm else (lambda layer: layer)
    for stage, filters in enumerate(ENCODER_FILTERS, start=1):
        x = wrap(_conv(filters, f"{prefix}enc{stage}_conv1"))(x)
        x = wrap(_conv(filters, f"{prefix}enc{stage}_conv2"))(x)
        if stage <= pools:
            x = layers.MaxPool2D(2, name=f"{prefix}enc{stage}_pool")(x)
    return x


# registered, so that export/generator.keras loads wherever this module is imported
@tf.keras.utils.register_keras_serializable(package="context_encoder")
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
        # static sides, so the output keeps its shape for the next layer and for converters
        # (LiteRT refuses a convolution whose input shape is unknown)
        _, height, width, channels = x.shape
        per_channel = tf.transpose(x, [0, 3, 1, 2])
        per_channel = tf.reshape(per_channel, [-1, channels, height * width])
        kernel = tf.cast(self.kernel, per_channel.dtype)
        bias = tf.cast(self.bias, per_channel.dtype)
        y = tf.nn.elu(tf.einsum("bci,cio->bco", per_channel, kernel) + bias)
        y = tf.reshape(y, [-1, channels, height, width])
        return tf.transpose(y, [0, 2, 3, 1])


def _check_size(img_size):
    if img_size < DOWNSAMPLING or img_size % DOWNSAMPLING:
        raise ValueError(f"image side must be a positive multiple of {DOWNSAMPLING}, got {img_size}")


# What --upsample trains. "nearest" (the resize first, then the 3x3 convolution over the
# input's channels) is still built, so that runs trained with it, the default until
# eb86279, still test and restore photos.
UPSAMPLING = ("transpose", "reduce")


def _upsample(x, filters, name, kind):
    """2x upsampling to `filters` channels. "transpose": the original's stride-2 transposed
    3x3 convolution, whose uneven overlaps leave a checkerboard (Odena et al. 2016).
    "reduce": a 1x1 convolution to `filters` channels (linear) at the input's resolution,
    a 2x nearest resize, then a 3x3 convolution: no checkerboard, and the 3x3 convolution
    at the output's resolution reads `filters` channels, half of what the input has at
    every stage but dec 3. Resizing the input itself instead made the train step a fifth
    slower for the same scores (docs/ablation.md)."""
    if kind == "transpose":
        return layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="elu",
                                      kernel_initializer=_initializer(), name=f"{name}_upconv")(x)
    if kind == "reduce":
        x = layers.Conv2D(filters, 1, kernel_initializer=_initializer(), name=f"{name}_reduce")(x)
    elif kind != "nearest":
        raise ValueError(f"upsampling {kind!r} is not one of {', '.join(UPSAMPLING)}")
    x = NearestUpsampling(name=f"{name}_resize")(x)
    return _conv(filters, f"{name}_upconv")(x)


@tf.keras.utils.register_keras_serializable(package="context_encoder")
class NearestUpsampling(layers.Layer):
    """2x nearest-neighbour upsampling: UpSampling2D's pixels, each copied to its right,
    then each row below it, with static sides. UpSampling2D's repeats lose the sides under a
    free batch size, which leaves LiteRT an unconvertible convolution; a nearest resize
    converts, but its gradient has no XLA kernel on the CPU."""

    def call(self, x):
        _, height, width, channels = x.shape
        x = tf.reshape(tf.stack([x, x], axis=3), [-1, height, 2 * width, channels])
        return tf.reshape(tf.stack([x, x], axis=2), [-1, 2 * height, 2 * width, channels])


def Generator(img_size=128, channels=3, upsample="transpose", mask_channel=False):
    """Masked image in [0, 1] -> full restored image in [0, 1].

    mask_channel: the hole as a fourth input channel, so a black pixel of the photo and a
    hidden one differ."""
    _check_size(img_size)
    masked = layers.Input((img_size, img_size, channels + int(mask_channel)), name="masked")
    x = encoder(masked, "g_")
    x = ChannelWiseDense(name="g_channelwise_dense")(x)
    x = _conv(256, "g_dec1_conv1")(x)
    x = _conv(256, "g_dec1_conv2")(x)
    for stage, filters in enumerate(DECODER_FILTERS, start=2):
        x = _upsample(x, filters, f"g_dec{stage}", upsample)
        x = _conv(filters, f"g_dec{stage}_conv")(x)
    # The output layer stays float32 under mixed precision: losses and pictures need it.
    restored = _conv(channels, "g_output", activation="sigmoid", dtype="float32")(x)
    return tf.keras.Model(masked, restored, name="generator")


# How many times each discriminator halves the picture before the original's network.
DISCRIMINATORS = {"whole": 0, "quarter": 2}


def Discriminator(img_size=128, channels=3, spectral_norm=False, halvings=0):
    """Image in [0, 1] -> one real/fake logit per image, [batch, 1] (no sigmoid: the loss
    takes logits).

    spectral_norm: each layer's kernel is divided by its largest singular value (Miyato et
    al. 2018), which keeps the discriminator from winning outright.
    halvings: judge the picture after this many 3x3 means at stride 2, with as many max-pools
    fewer, so it ends at the same 4x4x256 with the same parameters. At full resolution its
    gradient draws the one-pixel edges of the decoder's resize blocks as a plaid, at half
    resolution the edges of its 8x8 cells as coloured lines (docs/ablation.md); at a quarter
    both are averaged out of its view, and what it asks the generator for is the face's
    features."""
    _check_size(img_size)
    image = layers.Input((img_size, img_size, channels), name="image")
    x = image
    for halving in range(1, halvings + 1):
        x = layers.AveragePooling2D(3, strides=2, padding="same", name=f"d_mean{halving}")(x)
    x = encoder(x, "d_", spectral_norm, pools=len(ENCODER_FILTERS) - 1 - halvings)
    x = layers.Flatten(name="d_flatten")(x)
    dense = layers.Dense(1, kernel_initializer=_initializer(), name="d_logit", dtype="float32")
    # The logit stays float32 under mixed precision; a wrapper takes the policy's dtype
    # unless told.
    dense = layers.SpectralNormalization(dense, dtype="float32") if spectral_norm else dense
    return tf.keras.Model(image, dense(x), name="discriminator")
