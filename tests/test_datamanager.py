import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import datamanager
import holes
import photo_io


def _load_folder(folder, cache, size=32):
    images = datamanager.prepare_images(str(cache), size, data_dir=str(folder))
    return images, images.read(range(images.count))


def test_mixed_modes_and_sizes_load_as_rgb(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("L", (50, 70), 128).save(folder / "a_gray.png")
    rgba = Image.new("RGBA", (33, 33), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 33, 5))  # a transparent strip becomes white
    rgba.save(folder / "b_rgba.png")
    palette = Image.new("RGB", (40, 20), (0, 0, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(folder / "c_palette.png")
    Image.new("RGB", (300, 100), (0, 200, 0)).save(folder / "d_wide.jpg", quality=95)
    Image.new("RGB", (64, 64), (10, 20, 30)).save(folder / "e.bmp")
    Image.new("RGB", (64, 64), (200, 100, 0)).save(folder / "f.webp", lossless=True)
    (folder / "notes.txt").write_text("not an image")

    images, pixels = _load_folder(folder, tmp_path / "cache")
    assert images.count == 6 and pixels.shape == (6, 32, 32, 3) and pixels.dtype == np.uint8
    assert np.all(pixels[0] == 128)
    assert np.array_equal(pixels[1][20, 20], [255, 0, 0]) and np.array_equal(pixels[1][0, 0], [255] * 3)
    assert np.array_equal(pixels[2][16, 16], [0, 0, 255])
    assert np.abs(pixels[3].astype(int) - [0, 200, 0]).max() <= 3
    assert np.array_equal(pixels[4][5, 5], [10, 20, 30])
    assert np.array_equal(pixels[5][5, 5], [200, 100, 0])


def test_non_square_images_are_centre_cropped(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    image = Image.new("RGB", (300, 100), (0, 0, 0))
    image.paste((255, 255, 255), (100, 0, 200, 100))  # the centre square is white
    image.save(folder / "wide.png")
    _, pixels = _load_folder(folder, tmp_path / "cache")
    assert pixels.min() >= 250


def test_exif_orientation_is_applied(tmp_path):
    folder = tmp_path / "exif"
    folder.mkdir()
    image = Image.new("RGB", (64, 64), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 64, 32))  # top half white as stored
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 degrees when displayed
    image.save(folder / "rotated.png", exif=exif)
    _, pixels = _load_folder(folder, tmp_path / "cache")
    assert pixels[0, :14].max() <= 5 and pixels[0, 18:].min() >= 250


def test_files_sorted_limit_and_split(face_folder):
    paths = photo_io.find_images(face_folder)
    assert len(paths) == 36 and paths == sorted(paths)
    assert photo_io.find_images(face_folder, limit=10) == paths[:10]
    train, test = datamanager.split(36, 0.1)
    assert list(train) == list(range(32)) and list(test) == [32, 33, 34, 35]


def test_second_prepare_reuses_the_cache_and_decodes_nothing(face_folder, tmp_path, monkeypatch):
    first = datamanager.prepare_images(str(tmp_path), 32, data_dir=face_folder)
    monkeypatch.setattr(datamanager, "load_image", lambda *a: pytest.fail("decoded again"))
    second = datamanager.prepare_images(str(tmp_path), 32, data_dir=face_folder)
    assert second == first
    assert os.path.getsize(first.path) == 36 * 32 * 32 * 3


def test_cache_key_changes_when_a_file_changes(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(folder / "a.png")
    first = datamanager.prepare_images(str(tmp_path / "cache"), 32, data_dir=str(folder))
    Image.new("RGB", (32, 32), (9, 9, 9)).save(folder / "a.png")
    os.utime(folder / "a.png", ns=(1, 1))
    second = datamanager.prepare_images(str(tmp_path / "cache"), 32, data_dir=str(folder))
    assert second.path != first.path and np.all(second.read([0]) == 9)


def test_train_batches_depend_on_seed_and_epoch_only(face_folder, tmp_path):
    images = datamanager.prepare_images(str(tmp_path), 32, data_dir=face_folder)
    train, _ = datamanager.split(images.count, 0.25)

    def epoch(seed, e, skip=0):
        return [(x.numpy(), m.numpy()) for x, m in
                datamanager.train_dataset(images, train, 8, "random", seed, e, skip)]
    first = epoch(0, 0)
    assert len(first) == 27 // 8 and first[0][0].shape == (8, 32, 32, 3)
    again = epoch(0, 0)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert not np.array_equal(first[0][0], epoch(0, 1)[0][0])  # reshuffled every epoch
    resumed = epoch(0, 0, skip=2)
    assert np.array_equal(resumed[0][0], first[2][0]) and np.array_equal(resumed[0][1], first[2][1])


def test_test_batches_are_in_file_order(face_folder, tmp_path):
    images = datamanager.prepare_images(str(tmp_path), 32, data_dir=face_folder)
    _, test = datamanager.split(images.count, 0.25)
    batches = list(datamanager.test_dataset(images, test, 4, "center"))
    assert [len(x) for x, _ in batches] == [4, 4, 1]
    stacked = np.concatenate([x.numpy() for x, _ in batches])
    assert np.array_equal(stacked, images.read(test))


@pytest.mark.parametrize("kind", ["random", "facemask"])
def test_growing_a_hole_by_one_pixel_k_times_is_one_chessboard_dilation_by_k(kind):
    masks = holes.make_masks(kind, 8, 64, [3, 4])
    for pixels in (1, 4, 9):
        one_pool = tf.nn.max_pool2d(masks, 2 * pixels + 1, 1, "SAME")
        np.testing.assert_array_equal(holes.grow(masks, pixels).numpy(), one_pool.numpy())
