"""Photos in and out: finding them in a folder, reading one upright with what its output
keeps (EXIF, ICC profile) in a mode that holds its exact values (8- or 16-bit, grey or
colour, with its alpha), the 8-bit RGB view the model and detector see, a mask, and writing
PNGs atomically."""
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageCms, ImageOps

import run_folder

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm", ".ppm", ".tif", ".tiff")


class PhotoError(Exception):
    """A problem with the user's photos, masks, folders or flags; run.py prints it as one
    line, the web page's server answers it with a 400, in the page's words (`page`) where
    the page's controls, not flags, caused it."""

    def __init__(self, message, page=None):
        super().__init__(message)
        self.page = page or message


class Unreadable(PhotoError):
    """A photo Pillow cannot read: a folder's run skips it, the server refuses it."""


def called(source):
    """What errors call a photo: its path, or an upload's field name."""
    return source if isinstance(source, str) else source.name


def find_images(data_dir, limit=None, flag="--data_dir"):
    """Every image file under data_dir, recursively, sorted by path; `flag` names the folder
    in errors."""
    if not os.path.exists(data_dir):
        raise PhotoError(f"{flag} {data_dir}: no such directory; point it at a folder of images")
    if not os.path.isdir(data_dir):
        raise PhotoError(f"{flag} {data_dir}: not a directory; point it at a folder of images")
    paths = []
    for root, dirs, files in os.walk(data_dir, followlinks=True):
        dirs.sort()
        for name in dirs:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                warnings.warn(f"skipping {os.path.join(root, name)}: a directory, not an image")
        paths += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
        raise PhotoError(f"{flag} {data_dir}: no {'/'.join(IMAGE_EXTENSIONS)} files found "
                         "in it or its subfolders")
    paths.sort()
    return paths[:limit] if limit else paths


SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L")


def as_rgb(image):
    """Any Pillow image as 8-bit RGB, what the model and the face detector see: 16-bit
    greyscale keeps its top 8 bits (instead of clipping to white), transparency is laid on
    white. Copies only when it changes something."""
    if image.mode in SIXTEEN_BIT:
        image = Image.fromarray((np.asarray(image, np.uint32) >> 8).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    return image if image.mode == "RGB" else image.convert("RGB")


def levels(image):
    """The largest value of a channel of a photo as read_photo keeps it: 65535 or 255."""
    return 65535 if image.mode == "I;16" else 255


def colour_channels(image):
    """How many of the photo's channels carry its picture (its alpha is never touched)."""
    return 1 if image.mode in ("L", "LA", "I;16") else 3


def _exact_mode(image):
    """The photo in a mode Pillow can paste into and write to PNG that keeps every value:
    16-bit grey as I;16, a palette as RGB or RGBA (its transparent pixels keep their colour
    and alpha), two-level as L, anything else as RGB."""
    if image.mode in ("L", "LA", "RGB", "RGBA", "I;16"):
        return image
    if image.mode in SIXTEEN_BIT:
        return Image.fromarray(np.asarray(image).astype(np.uint16))
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("P", "PA"):
        transparent = image.mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if transparent else "RGB")
    return as_rgb(image)


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
ORIENTATION = 0x0112  # the EXIF tag a viewer turns the photo by


def _corrupt_exif(source, error):
    return Unreadable(f"{called(source)}: its EXIF metadata is corrupt ({type(error).__name__}); "
                      "save it again without EXIF")


def read_photo(source):
    """A photo, upright as a viewer shows it and loaded, in a mode that keeps its values
    (_exact_mode), with what its output keeps of it (its ICC profile, its EXIF with the
    orientation reset). A CMYK photo is turned to RGB through its profile, then carries
    sRGB's. Raises Unreadable."""
    try:
        with Image.open(source) as image:
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise Unreadable(f"{called(source)}: not a photo Pillow can read "
                         f"({type(error).__name__})") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as error:  # noqa: BLE001  (Pillow's EXIF parser raises a dozen kinds)
        raise _corrupt_exif(source, error) from None
    profile = image.info.get("icc_profile")
    if image.mode == "CMYK" and profile:
        try:
            image = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                              SRGB, outputMode="RGB")
            profile = SRGB.tobytes()
        except (ImageCms.PyCMSError, OSError) as error:
            raise Unreadable(f"{called(source)}: its CMYK colour profile cannot be read "
                             f"({error})") from None
    elif image.mode == "CMYK":
        profile = None  # Pillow's plain conversion gives sRGB-like values
    try:
        exif = image.getexif()
        if len(exif):
            exif[ORIENTATION] = 1  # exif_transpose turned the pixels upright and dropped the tag
        exif = exif.tobytes() if len(exif) else None
    except Exception as error:  # noqa: BLE001  (Pillow's EXIF parser raises a dozen kinds)
        raise _corrupt_exif(source, error) from None
    if image.mode == "F" or (image.mode == "I" and image.getextrema()[1] > 65535):
        # floating-point or 32-bit levels have no one scale to 8 bits (as 8 bits they came
        # back black)
        raise Unreadable(f"{called(source)}: a {'floating-point' if image.mode == 'F' else '32-bit'}"
                         " photo; save it with 8 or 16 bits a channel")
    meta = {"icc_profile": profile, "exif": exif}
    return _exact_mode(image), {k: v for k, v in meta.items() if v}


def read_mask(source, size):
    """A mask image as bool [height, width], True where it is white (over half its range in
    greyscale). Transparent pixels are not hole: a hole painted on a transparent layer
    works. Its size is checked before its pixels are decoded."""
    def wrong_size(width, height):
        return PhotoError(f"{called(source)}: the mask is {width}x{height} but its photo is "
                          f"{size[0]}x{size[1]}; a mask must have its photo's size")
    try:
        with Image.open(source) as image:
            if sorted(image.size) != sorted(size):  # before decoding: a 150-megapixel "mask"
                raise wrong_size(*image.size)
            image = ImageOps.exif_transpose(image)
            if image.mode in SIXTEEN_BIT:
                grey = np.asarray(image, np.int64) > (np.iinfo(np.uint16).max // 2)
            else:
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    rgba = image.convert("RGBA")
                    image = Image.new("RGB", rgba.size)
                    image.paste(rgba, mask=rgba.getchannel("A"))
                grey = np.asarray(image.convert("L")) > 127
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise PhotoError(f"{called(source)}: not a mask image Pillow can read "
                         f"({type(error).__name__}); give a PNG of the photo's size, white "
                         "where the hole is") from None
    if grey.shape != (size[1], size[0]):
        raise wrong_size(grey.shape[1], grey.shape[0])
    return grey


# ----------------------------------------------------------------------------- writing

def to_uint8(images):
    return np.clip(np.rint(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def encode_png(image, meta=None):
    """A Pillow image as PNG bytes at zlib's fastest level: an epoch's 5132x1320 sample grid
    takes 0.6 s instead of 1.0 s to write, for a file 16 % larger. Every PNG the project
    writes or serves is encoded here, so the page's download and --mode inpaint's file of
    the same restoration are the same bytes. `meta`: a photo's icc_profile and exif."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, **(meta or {}))
    return buffer.getvalue()


def save_png(image, path, meta=None):
    """Writes through a temporary file, so a reader never sees half a picture. A restored
    photo keeps its ICC profile and EXIF (`meta`), so it shows in the photo's colours; PNG
    is lossless, so its untouched pixels keep their values."""
    with run_folder.atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(encode_png(image, meta))


def comparison(images, gap=8):
    """Input | masked | restored photos side by side on white, at full resolution."""
    width, height = images[0].size
    canvas = Image.new("RGB", (len(images) * width + (len(images) - 1) * gap, height), "white")
    for i, image in enumerate(images):
        canvas.paste(as_rgb(image), (i * (width + gap), 0))
    return canvas
