"""The restore page in Debian's Chromium as a person uses it: on a laptop with a large photo
(zoom, brush, undo, a history of results, continue, download), on an emulated phone with
touch, against stale answers and failed requests, and the tab's memory over many strokes.
A browser that cannot start fails these tests: they are never skipped."""
import contextlib
from urllib.parse import urlparse

import numpy as np
import pytest
import requests
from PIL import Image

import synthetic_faces

LARGE = (3200, 2400)


def scene(path, size, face_box):
    """A JPEG of `size` with a synthetic face in face_box (left, top, side) on a plain ground."""
    left, top, side = face_box
    face = Image.fromarray(synthetic_faces.synthetic_face(11, 3, 128)).resize((side, side))
    picture = Image.new("RGB", size, (96, 120, 140))
    picture.paste(face, (left, top))
    picture.save(path, quality=92)
    return path


def open_photo(page, url, path):
    from playwright.sync_api import expect
    page.goto(url)
    expect(page.locator("#run")).to_contain_text("epoch 2 of 2")
    page.set_input_files("#photo-file", str(path))
    expect(page.locator("#status")).to_contain_text("Paint over what is hidden", timeout=60000)


def hole_pixels(page, box=None):
    """How many mask pixels are hole (opaque), in box (left, top, width, height) or all."""
    return page.evaluate("""(box) => {
        const canvas = document.getElementById("mask-canvas");
        const [x, y, w, h] = box || [0, 0, canvas.width, canvas.height];
        const data = canvas.getContext("2d").getImageData(x, y, w, h).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) n += data[i] > 127;
        return n;
    }""", box)


def settle(page, expected, box=None):
    """Waits for the mask to be redrawn (undo replays it asynchronously) to `expected`."""
    page.wait_for_function("""([expected, box]) => {
        const canvas = document.getElementById("mask-canvas");
        const [x, y, w, h] = box || [0, 0, canvas.width, canvas.height];
        const data = canvas.getContext("2d").getImageData(x, y, w, h).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) n += data[i] > 127;
        return n === expected;
    }""", arg=[expected, box], timeout=10000)


def preset(page, kind):
    """Clicks a training-hole preset and waits until it is drawn."""
    page.click(f"[data-action=preset][data-hole={kind}]")
    wait_for_hole(page)


def wait_for_hole(page):
    """Waits until some of the mask is painted."""
    page.wait_for_function("""() => {
        const canvas = document.getElementById("mask-canvas");
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 127) return true;
        return false;
    }""")


def view(page):
    """The photo canvas on screen: (left, top, screen pixels per photo pixel)."""
    box = page.locator("#photo-canvas").bounding_box()
    width = page.evaluate("document.getElementById('photo-canvas').width")
    return box["x"], box["y"], box["width"] / width


def drag(page, points):
    """A mouse stroke through photo points at the current view."""
    left, top, scale = view(page)
    screen = [(left + x * scale, top + y * scale) for x, y in points]
    page.mouse.move(*screen[0])
    page.mouse.down()
    for point in screen[1:]:
        page.mouse.move(*point, steps=10)
    page.mouse.up()


def test_a_large_photo_zoomed_painted_undone_restored_in_rounds_and_downloaded(
        server, browser, tmp_path):
    from playwright.sync_api import expect
    url, _ = server
    _, chromium = browser
    face = (1000, 600, 1200)
    photo = scene(tmp_path / "face.jpg", LARGE, face)
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url)
    page.click("[data-action=clear]")  # before any photo: nothing happens, nothing breaks
    open_photo(page, url, photo)
    found = requests.post(f"{url}/api/faces", files={"photo": photo.read_bytes()},
                          timeout=60).json()["faces"]
    side = found[0]["square"][2] if found else LARGE[1]
    expect(page.locator("#square-side-value")).to_have_text(str(side))

    # The wheel zooms at the pointer: the photo point under it stays under it.
    box = page.locator("#viewport").bounding_box()
    # whole pixels: a wheel event's position is in whole CSS pixels
    pointer = (round(box["x"] + box["width"] * 0.6), round(box["y"] + box["height"] * 0.45))
    left, top, scale = view(page)
    before = ((pointer[0] - left) / scale, (pointer[1] - top) / scale)
    page.mouse.move(*pointer)
    for _ in range(3):
        page.mouse.wheel(0, -240)
    page.wait_for_timeout(200)
    left, top, zoomed = view(page)
    after = ((pointer[0] - left) / zoomed, (pointer[1] - top) / zoomed)
    assert zoomed > 2 * scale
    assert np.hypot(after[0] - before[0], after[1] - before[1]) < 1.0, (before, after)
    page.click("[data-action=fit]")
    page.click("[data-action=zoom-in]")
    _, _, scale = view(page)

    # The brush is sized on screen: ] makes it bigger, its outline shows it, and the stroke's
    # width in photo pixels is the screen size over the zoom.
    page.keyboard.press("]")
    expect(page.locator("#brush-size-value")).to_have_text("37")
    expect(page.locator("#brush-photo")).to_contain_text(f"{37 / scale:.1f} photo px")
    y1 = face[1] + face[2] * 0.7
    stroke1 = [(face[0] + face[2] * 0.4, y1), (face[0] + face[2] * 0.6, y1)]
    left, top, _ = view(page)
    page.mouse.move(left + stroke1[0][0] * scale, top + stroke1[0][1] * scale)
    expect(page.locator("#brush-cursor")).to_be_visible()
    assert page.locator("#brush-cursor").bounding_box()["width"] == pytest.approx(37, abs=1)
    drag(page, stroke1)
    middle = round((stroke1[0][0] + stroke1[1][0]) / 2)
    column = hole_pixels(page, [middle, 0, 1, LARGE[1]])
    assert column == pytest.approx(37 / scale, abs=2), (column, 37 / scale)
    painted = hole_pixels(page)

    # Undo and redo, with every shortcut.
    page.keyboard.press("Control+z")
    settle(page, 0)
    page.keyboard.press("Control+Shift+z")
    settle(page, painted)
    page.keyboard.press("Control+z")
    settle(page, 0)
    page.keyboard.press("Control+y")
    settle(page, painted)

    # Restore twice with different settings; both stay in the history.
    page.click("#restore")
    expect(page.locator("#history li")).to_have_count(1, timeout=60000)
    expect(page.locator("#result-caption")).to_contain_text("Poisson blend, painted")
    page.uncheck("#poisson")
    page.click("#restore")
    expect(page.locator("#history li")).to_have_count(2, timeout=60000)
    expect(page.locator("#result-caption")).to_contain_text("2 of 2: the model, feathered")
    expect(page.locator("#error")).to_be_hidden()
    page.click("[data-action=compare]")
    expect(page.locator("#result-which")).to_contain_text("before")
    page.click("[data-action=compare]")
    image = page.locator("#result-image").bounding_box()
    page.mouse.move(image["x"] + 20, image["y"] + 20)
    page.mouse.down()  # hold to compare
    expect(page.locator("#result-which")).to_contain_text("before")
    page.mouse.up()
    expect(page.locator("#result-which")).to_contain_text("restored")

    # Continue from the first result and restore a second hole on it.
    page.locator("#history li button").first.click()
    expect(page.locator("#result-caption")).to_contain_text("1 of 2: the model, Poisson blend")
    page.click("[data-action=continue]")
    expect(page.locator("#status")).to_contain_text("Editing the result")
    settle(page, 0)
    y2 = face[1] + face[2] * 0.35
    stroke2 = [(face[0] + face[2] * 0.3, y2), (face[0] + face[2] * 0.45, y2)]
    drag(page, stroke2)
    second = hole_pixels(page)
    assert second > 0
    # Undo goes back across the round (to the first photo and its stroke), and redo returns.
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    settle(page, painted)
    page.keyboard.press("Control+y")
    page.keyboard.press("Control+y")
    settle(page, second)
    page.check("#poisson")
    page.click("#restore")
    expect(page.locator("#history li")).to_have_count(3, timeout=60000)
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "face_restored_3.png"
    saved = tmp_path / "restored.png"
    download.value.save_as(saved)
    page.close()

    restored = np.asarray(Image.open(saved), np.int16)
    original = np.asarray(Image.open(photo), np.int16)
    assert restored.shape == original.shape
    rows, cols = np.mgrid[0:LARGE[1], 0:LARGE[0]] + 0.5

    def near(stroke, radius):
        (x0, y0), (x1, _) = stroke  # horizontal strokes
        along = np.clip((cols - x0) / (x1 - x0), 0, 1)
        return np.hypot(cols - (x0 + along * (x1 - x0)), rows - y0) < radius

    brush = 37 / scale / 2
    far = ~near(stroke1, brush + 3) & ~near(stroke2, brush + 3)
    assert np.array_equal(restored[far], original[far])  # the context, byte for byte
    for stroke in (stroke1, stroke2):  # both holes restored, the first in round one
        assert np.abs(restored[near(stroke, brush - 2)] - original[near(stroke, brush - 2)]).mean() > 1
    elsewhere = [u for u in requested if urlparse(u).scheme not in ("blob", "data")
                 and urlparse(u).hostname != "127.0.0.1"]
    assert not elsewhere and any(u.endswith("/api/inpaint") for u in requested)


def touch(cdp, kind, points):
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
        {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]})


def test_on_a_phone_the_photo_fills_the_width_one_finger_paints_two_zoom(server, browser,
                                                                        tmp_path):
    from playwright.sync_api import expect
    url, _ = server
    playwright, chromium = browser
    photo = scene(tmp_path / "phone.jpg", (1600, 1200), (500, 300, 600))
    phone = {**playwright.devices["Pixel 5"], "viewport": {"width": 360, "height": 740}}
    context = chromium.new_context(**phone)
    page = context.new_page()
    open_photo(page, url, photo)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scroll
    assert page.locator("#photo-canvas").bounding_box()["width"] >= 0.9 * 360
    assert page.locator("#viewport").bounding_box()["width"] >= 0.9 * 360
    for control in ("#restore", "[data-action=undo]", "#brush-size", "#poisson"):
        box = page.locator(control).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, control
    expect(page.locator("#restore")).to_be_visible()

    cdp = context.new_cdp_session(page)
    left, top, scale = view(page)
    start = (left + 700 * scale, top + 650 * scale)
    touch(cdp, "touchStart", [start])
    for step in range(1, 6):
        touch(cdp, "touchMove", [(start[0] + step * 8, start[1])])
    touch(cdp, "touchEnd", [])
    painted = hole_pixels(page)
    assert painted > 0  # one finger paints

    a, b = (start[0] - 30, start[1] + 60), (start[0] + 30, start[1] + 60)
    touch(cdp, "touchStart", [a, b])
    for step in range(1, 6):
        touch(cdp, "touchMove", [(a[0] - step * 10, a[1]), (b[0] + step * 10, b[1])])
    touch(cdp, "touchEnd", [])
    settle(page, painted)  # two fingers painted nothing
    assert view(page)[2] > 1.5 * scale  # and zoomed
    context.close()


def test_a_late_answer_is_never_shown_and_a_failure_leaves_restore_working(server, browser,
                                                                          tmp_path):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect
    url, _ = server
    _, chromium = browser
    first = scene(tmp_path / "first.jpg", (640, 480), (160, 80, 320))
    second = scene(tmp_path / "second.jpg", (640, 480), (200, 100, 300))
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    held, fail = [], [True]

    def route(route):
        if fail[0]:
            fail[0] = False
            route.fulfill(status=500, content_type="application/json",
                          body='{"error": "the server failed on this request (Boom)"}')
        elif not held:
            held.append(route)  # answered only after another photo is opened
        else:
            route.continue_()
    page.route("**/api/inpaint", route)
    open_photo(page, url, first)
    preset(page, "center")
    page.click("#restore")
    expect(page.locator("#error")).to_have_text("the server failed on this request (Boom)")
    expect(page.locator("#restore")).to_be_enabled()
    expect(page.locator("#cancel")).to_be_hidden()

    page.click("#restore")
    for _ in range(100):  # until the request reaches the route (the page encodes the mask first)
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1
    expect(page.locator("#status")).to_contain_text("Restoring")
    open_photo(page, url, second)
    with contextlib.suppress(PlaywrightError):  # the page may have cancelled it already
        held[0].continue_()  # the first answer comes back now, too late
    preset(page, "center")
    page.click("#restore")
    expect(page.locator("#history li")).to_have_count(1, timeout=60000)
    page.wait_for_timeout(1000)
    expect(page.locator("#history li")).to_have_count(1)
    assert page.locator("#download").get_attribute("download") == "second_restored.png"
    expect(page.locator("#error")).to_be_hidden()
    page.close()


def test_thirty_strokes_on_a_12_megapixel_photo_keep_the_tab_small(server, browser, tmp_path):
    """The tab's memory with its pixel buffers (the heap's backing stores, where ImageData
    lives): 30 strokes grow it by less than 200 MB, where 30 snapshots of the mask, as
    undo kept before, grow it by over 1 GB."""
    url, _ = server
    _, chromium = browser
    photo = scene(tmp_path / "big.jpg", (4000, 3000), (1400, 700, 1600))
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    open_photo(page, url, photo)
    cdp = page.context.new_cdp_session(page)

    def used():
        cdp.send("HeapProfiler.collectGarbage")
        usage = cdp.send("Runtime.getHeapUsage")
        return usage["usedSize"] + usage["backingStorageSize"]

    base = used()
    for i in range(30):
        drag(page, [(1600 + 40 * i, 1000), (1600 + 40 * i, 2000)])
    assert hole_pixels(page, [1600, 1500, 1200, 1]) > 0
    strokes = used() - base
    page.evaluate("""() => {
        const canvas = document.getElementById("mask-canvas");
        window.snapshots = Array.from({ length: 30 },
            () => canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height));
    }""")
    snapshots = used() - base - strokes
    page.close()
    assert strokes < 200e6, strokes
    assert snapshots > 1e9, snapshots  # the measure sees what the old undo kept


# Holds createImageBitmap for the files (or thumbnails) named, so that a step the page waits
# for finishes after the next one starts, whatever this machine's speed.
SLOW_DECODE = """() => {
    const decode = window.createImageBitmap.bind(window);
    window.slowDecodes = 0;
    window.createImageBitmap = async (source, ...options) => {
        const thumbnail = options[0] && options[0].resizeHeight;
        if ((source.name || "").startsWith("slow") || (thumbnail && window.slowThumbnails)) {
            window.slowDecodes += 1;
            await new Promise((resolve) => setTimeout(resolve, 2000));
        }
        return decode(source, ...options);
    };
}"""


def test_a_slow_photo_then_a_fast_one_leaves_the_fast_one_with_its_faces(server, browser,
                                                                         tmp_path):
    from playwright.sync_api import expect
    url, _ = server
    _, chromium = browser
    slow = scene(tmp_path / "slow.jpg", (1600, 1200), (500, 300, 600))
    fast = tmp_path / "fast.png"
    Image.open(scene(tmp_path / "fast.jpg", (640, 480), (160, 80, 320))).save(fast)
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(f"({SLOW_DECODE})()")
    page.goto(url)
    expect(page.locator("#run")).to_contain_text("epoch 2 of 2")
    page.set_input_files("#photo-file", str(slow))
    page.wait_for_function("window.slowDecodes === 1")
    page.set_input_files("#photo-file", str(fast))
    expect(page.locator("#status")).to_contain_text("fast: 640x480. 1 face found", timeout=60000)
    page.wait_for_timeout(3000)  # the slow photo's decode has ended by now
    assert page.evaluate("document.getElementById('photo-canvas').width") == 640
    expect(page.locator("#status")).to_contain_text("fast: 640x480. 1 face found")
    assert errors == []
    page.close()


def test_a_photo_opened_while_a_thumbnail_is_made_starts_a_clean_strip(server, browser,
                                                                        tmp_path):
    from playwright.sync_api import expect
    url, _ = server
    _, chromium = browser
    first = scene(tmp_path / "first.jpg", (640, 480), (160, 80, 320))
    second = scene(tmp_path / "second.jpg", (640, 480), (200, 100, 300))
    page = chromium.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(f"({SLOW_DECODE})()")
    open_photo(page, url, first)
    preset(page, "center")
    page.evaluate("window.slowThumbnails = true")
    page.click("#restore")
    page.wait_for_function("window.slowDecodes === 1", timeout=60000)  # its thumbnail is made
    page.set_input_files("#photo-file", str(second))
    expect(page.locator("#status")).to_contain_text("Paint over what is hidden", timeout=60000)
    page.evaluate("window.slowThumbnails = false")
    page.wait_for_timeout(2500)  # the first result's thumbnail is done now, and dropped
    expect(page.locator("#history li")).to_have_count(0)
    preset(page, "center")
    page.click("#restore")
    expect(page.locator("#history li")).to_have_count(1, timeout=60000)
    expect(page.locator("#result-caption")).to_contain_text("1 of 1: the model")
    assert page.locator("#download").get_attribute("download") == "second_restored.png"
    assert errors == []
    page.close()


def test_the_strip_keeps_the_latest_results_and_space_is_left_to_focused_controls(
        server, browser, tmp_path):
    from playwright.sync_api import expect
    url, _ = server
    _, chromium = browser
    photo = scene(tmp_path / "face.jpg", (640, 480), (160, 80, 320))
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    open_photo(page, url, photo)
    preset(page, "center")
    page.check("input[name=fill][value=telea]")  # no model: quick
    keep = page.evaluate("import('/static/history.js').then((h) => h.MAX_RESULTS)")
    for made in range(1, keep + 2):
        page.click("#restore")
        expect(page.locator("#result-caption")).to_contain_text(f"{made} of {made}:",
                                                               timeout=60000)
    expect(page.locator("#history li")).to_have_count(keep)  # the first left the strip
    page.locator("#history li button").first.click()
    expect(page.locator("#result-caption")).to_contain_text(f"2 of {keep + 1}:")

    page.check("input[name=fill][value=model]")
    poisson = page.locator("#poisson")
    before = poisson.is_checked()
    poisson.focus()
    page.keyboard.press(" ")  # ticks the focused checkbox; the page does not take it to pan
    assert poisson.is_checked() != before
    page.close()
