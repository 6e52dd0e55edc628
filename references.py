"""The training-free fills the model is judged against, on the same images and holes: OpenCV's
Telea and Navier-Stokes inpainting (what a user could pick instead of a trained model) and
the naive mean colour of the hole's border."""
import cv2
import numpy as np
import tensorflow as tf

import holes

OPENCV_RADIUS = 5  # pixels of context each inpainted pixel is estimated from


def mean_border_fill(images, masks, width):
    """The hole filled with the mean colour of a `width`-pixel ring around it."""
    ring = holes.grow(masks, width) - masks
    mean = (tf.reduce_sum(ring * images, axis=[1, 2], keepdims=True)
            / tf.maximum(tf.reduce_sum(ring, axis=[1, 2], keepdims=True), 1.0))
    return images * (1.0 - masks) + mean * masks


def opencv_fill(images, masks, method):
    """cv2.inpaint of each image (float [0, 1]) inside its hole; the context is kept exactly."""
    pixels = np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)
    holes = (np.asarray(masks)[..., 0] > 0.5).astype(np.uint8)
    filled = np.stack([cv2.inpaint(p, h, OPENCV_RADIUS, method) for p, h in zip(pixels, holes)])
    masks = tf.convert_to_tensor(masks)
    return images * (1.0 - masks) + tf.constant(filled, tf.float32) / 255.0 * masks


def telea_photo(pixels, hole):
    """A photo's uint8 pixels ([h, w] or [h, w, 3]) with the bool hole filled by Telea's
    method at their own resolution: the classical fill the page offers beside the model."""
    return cv2.inpaint(np.ascontiguousarray(pixels), hole.astype(np.uint8), OPENCV_RADIUS,
                       cv2.INPAINT_TELEA)


REFERENCES = {
    "telea": lambda images, masks: opencv_fill(images, masks, cv2.INPAINT_TELEA),
    "navier_stokes": lambda images, masks: opencv_fill(images, masks, cv2.INPAINT_NS),
    "mean_border": lambda images, masks: mean_border_fill(images, masks,
                                                          max(1, images.shape[1] // 32)),
}
