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
    return tf.reshape(real + fake, [-1])


def generator_adversarial_loss(fake_logits):
    """Per image: the non-saturating GAN loss, -log D(composite)."""
    return tf.reshape(
        tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(fake_logits), fake_logits), [-1])


# ----------------------------------------------------------------------------- metrics

def hole_psnr(images, filled, masks):
    """PSNR over the hidden pixels alone (tf.image.psnr has no mask argument)."""
    channels = tf.cast(tf.shape(images)[-1], tf.float32)
    mse = (tf.reduce_sum(masks * tf.square(images - filled), axis=[1, 2, 3])
           / (tf.reduce_sum(masks, axis=[1, 2, 3]) * channels))
    return 10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-10)) / tf.math.log(10.0)


def image_metrics(images, filled, masks):
    """Per image: reconstruction loss, PSNR and SSIM of the whole picture, PSNR of the hole."""
    return {"rec": reconstruction_loss(images, filled, masks),
            "psnr": tf.image.psnr(images, filled, max_val=1.0),
            "ssim": tf.image.ssim(images, filled, max_val=1.0),
            "hole_psnr": hole_psnr(images, filled, masks)}


def mean_border_fill(images, masks, width):
    """The naive baseline: the hole filled with the mean colour of a `width`-pixel ring
    around it."""
    grown = tf.nn.max_pool2d(masks, 2 * width + 1, 1, "SAME")
    ring = grown - masks
    mean = (tf.reduce_sum(ring * images, axis=[1, 2], keepdims=True)
            / tf.maximum(tf.reduce_sum(ring, axis=[1, 2], keepdims=True), 1.0))
    return images * (1.0 - masks) + mean * masks
