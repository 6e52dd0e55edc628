"""The losses and the evaluation metrics, as plain per-image tensor functions: the train step
and the evaluation both take them from here."""
import tensorflow as tf

# ----------------------------------------------------------------------------- losses

def reconstruction_loss(images, restored, masks):
    """Per image: the sum of squared errors inside the hole (the original's "Error(MSE)")."""
    return tf.reduce_sum(tf.square(masks * (images - restored)), axis=[1, 2, 3])


def discriminator_loss(real_logits, fake_logits):
    """Per image: cross-entropy of calling real images real and composites fake."""
    real = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits)
    return tf.reduce_sum(real + fake, axis=-1)


def generator_adversarial_loss(fake_logits):
    """Per image: the non-saturating GAN loss, -log D(composite)."""
    return tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits), axis=-1)


# ----------------------------------------------------------------------------- metrics

def _erode(masks):
    """The hole less its 1-pixel rim: the pixels whose 8 neighbours are all hidden."""
    return 1.0 - tf.nn.max_pool2d(1.0 - masks, 3, 1, "SAME")


def central_differences(images):
    """d/dx and d/dy by central differences, per channel; 0 on the image's outer border."""
    dx = (images[:, 1:-1, 2:] - images[:, 1:-1, :-2]) / 2.0
    dy = (images[:, 2:, 1:-1] - images[:, :-2, 1:-1]) / 2.0
    border = [[0, 0], [1, 1], [1, 1], [0, 0]]
    return tf.pad(dx, border), tf.pad(dy, border)


def gradient_magnitude(images):
    """|d/dx| + |d/dy| by central differences, per channel; 0 on the image's outer border."""
    dx, dy = central_differences(images)
    return tf.abs(dx) + tf.abs(dy)


def _masked_mean(values, region):
    """Per image: the mean of values [b, h, w, c] over region [b, h, w, 1] and the channels."""
    channels = tf.cast(tf.shape(values)[-1], tf.float32)
    return (tf.reduce_sum(region * values, axis=[1, 2, 3])
            / tf.maximum(tf.reduce_sum(region, axis=[1, 2, 3]) * channels, 1.0))


def hole_psnr(images, filled, masks):
    """PSNR over the hidden pixels alone (tf.image.psnr has no mask argument)."""
    mse = _masked_mean(tf.square(images - filled), masks)
    return 10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-10)) / tf.math.log(10.0)


def hole_l1(images, filled, masks):
    """Mean absolute error over the hidden pixels, on the 0-255 scale."""
    return 255.0 * _masked_mean(tf.abs(images - filled), masks)


def seam(images, filled, masks):
    """How much the fill's edges differ from the photo's where the hole meets the context:
    over the hole's 1-pixel inner rim, the mean |gradient magnitude of the fill - that of
    the original|, per channel, on the 0-255 scale. A pasted patch with a visible outline
    scores high; lower is better."""
    rim = masks - _erode(masks)
    difference = tf.abs(gradient_magnitude(filled) - gradient_magnitude(images))
    return 255.0 * _masked_mean(difference, rim)


def detail(images, filled, masks):
    """The fill's texture against the photo's: inside the hole less its rim, the mean
    gradient magnitude (of the mean of the channels) of the fill over that of the original.
    A real face scores 1.0; a blur far less; noise can score more."""
    inner = _erode(masks)

    def texture(x):
        return _masked_mean(gradient_magnitude(tf.reduce_mean(x, -1, keepdims=True)), inner)
    return texture(filled) / tf.maximum(texture(images), 1e-6)


def image_metrics(images, filled, masks):
    """Per image: reconstruction loss, PSNR and SSIM of the whole picture; PSNR, L1, seam
    and detail of the hole."""
    return {"rec": reconstruction_loss(images, filled, masks),
            "psnr": tf.image.psnr(images, filled, max_val=1.0),
            "ssim": tf.image.ssim(images, filled, max_val=1.0),
            "hole_psnr": hole_psnr(images, filled, masks),
            "hole_l1": hole_l1(images, filled, masks),
            "seam": seam(images, filled, masks),
            "detail": detail(images, filled, masks)}
