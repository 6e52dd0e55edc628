"""Procedural aligned face portraits, so the first run needs no download (numpy and Pillow
only, no TensorFlow).

Every face follows the aligned-dataset layout (eyes y=0.40, nose tip 0.53, mouth 0.63, chin
~0.78, all +-0.02) so the centre hole always hides the nose, the mouth and the inner eye
corners, while skin, hair, features, clothes and lighting vary enough that the hidden part
cannot be copied from a template. Each face depends only on (seed, index), so they can be
drawn in parallel.
"""
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Skin anchors from very light to very dark; a tone is interpolated between neighbours.
SKIN = np.array([(255, 228, 210), (240, 200, 172), (226, 178, 140), (203, 148, 105),
                 (170, 114, 75), (130, 84, 54), (95, 62, 42), (62, 42, 31)], float)
# black, dark brown, brown, blond, red (grey is drawn separately: any lightness)
HAIR = np.array([(24, 20, 18), (55, 38, 28), (100, 68, 42), (208, 172, 108), (158, 70, 34)], float)
HAIR_P = [0.28, 0.2, 0.2, 0.12, 0.07, 0.13]
# dark brown, brown, blue, green, hazel, grey
IRIS = np.array([(55, 35, 22), (105, 66, 34), (70, 110, 160), (78, 118, 80),
                 (128, 106, 58), (112, 122, 132)], float)
IRIS_P = [0.42, 0.25, 0.13, 0.08, 0.08, 0.04]
FRAMES = np.array([(20, 20, 22), (70, 45, 30), (180, 150, 80), (165, 168, 172), (120, 30, 40)], float)


def _rgb(c, alpha=None):
    c = tuple(min(255, max(0, int(v))) for v in c)  # plain Python: np.clip is slow on 3 values
    return c if alpha is None else (*c, int(alpha))


def _pts(x, y, s):
    """Fractional coordinates -> flat pixel list for ImageDraw."""
    xy = np.empty(2 * len(x))
    xy[0::2], xy[1::2] = x, y
    return (xy * s).tolist()


def _box(x0, y0, x1, y1, s):
    return [x0 * s, y0 * s, x1 * s, y1 * s]


def _muted(rng, lo, hi, sat):
    """Random colour pulled towards grey so backgrounds and clothes are not neon."""
    grey = rng.uniform(lo, hi)
    return grey + (rng.uniform(lo, hi, 3) - grey) * rng.uniform(0, sat)


def _geometry(rng):
    j = lambda: rng.uniform(-0.02, 0.02)
    g = {"cx": 0.5 + j(), "eye_y": 0.40 + j(), "spacing": rng.uniform(0.18, 0.24),
         "nose_y": 0.53 + j(), "mouth_y": 0.63 + j(), "chin_y": rng.uniform(0.76, 0.80),
         "a": rng.uniform(0.21, 0.26), "top_y": rng.uniform(0.12, 0.17),
         "jaw": rng.uniform(2.0, 3.2), "taper": rng.uniform(0.12, 0.35),
         "eye_w": rng.uniform(0.065, 0.09), "mouth_w": rng.uniform(0.1, 0.16)}
    g["cy"] = g["eye_y"] + 0.06  # widest point of the face sits just below the eyes
    return g


def _palette(rng):
    t = rng.uniform(0, len(SKIN) - 1)
    i = int(t)
    skin = SKIN[i] + (SKIN[min(i + 1, len(SKIN) - 1)] - SKIN[i]) * (t - i)
    # undertone jitter, kept R >= G >= B so skin never turns green or blue
    skin = np.sort(skin * rng.uniform(0.97, 1.03, 3))[::-1]
    h = rng.choice(len(HAIR_P), p=HAIR_P)
    hair = np.full(3, rng.uniform(110, 225)) if h == len(HAIR) else HAIR[h] * rng.uniform(0.8, 1.2)
    # lips: darker than the skin and pulled towards red so they read on every tone
    lip = skin * rng.uniform(0.68, 0.8) + (np.array([160, 55, 70]) - skin * 0.75) * rng.uniform(0.15, 0.35)
    if rng.random() < 0.15:  # lipstick
        lip = np.array([150, 25, 45]) * rng.uniform(0.7, 1.2) + rng.uniform(-15, 15, 3)
    return {"skin": skin, "hair": hair, "lip": lip,
            "brow": hair * (0.9 if hair.mean() < 80 else 0.62),
            "iris": IRIS[rng.choice(len(IRIS), p=IRIS_P)] * rng.uniform(0.8, 1.2)}


def _outline(g, n=64):
    """Egg-shaped face: elliptic skull, superelliptic tapered jaw."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, sn = np.cos(t), np.sin(t)
    lower = sn > 0
    e = np.where(lower, 2 / g["jaw"], 1.0)
    x = np.sign(c) * np.abs(c) ** e * g["a"] * (1 - g["taper"] * np.clip(sn, 0, 1) ** 2)
    y = np.sign(sn) * np.abs(sn) ** e * np.where(lower, g["chin_y"] - g["cy"], g["cy"] - g["top_y"])
    return g["cx"] + x, g["cy"] + y


def _background(rng, size, s):
    c1 = _muted(rng, 25, 235, 0.8)
    kind = rng.integers(3)
    if kind == 0:
        return Image.new("RGB", (s, s), _rgb(c1))
    c2 = c1 * rng.uniform(0.45, 1.25) + rng.uniform(-30, 30, 3)
    t = np.linspace(0, 1, size)[:, None]
    ramp = t if kind == 1 else (t + (t.T if rng.random() < 0.5 else 1 - t.T)) / 2
    arr = c1 + (c2 - c1) * np.broadcast_to(ramp, (size, size))[..., None]
    # drawn at the output size: nearest upscaling followed by box reduce is exact
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).resize((s, s), Image.NEAREST)


def _face_half(g, y):
    """Half-width of the face outline at heights y (0 below the chin)."""
    x, oy = _outline(g)
    right = x >= g["cx"]
    order = np.argsort(oy[right])
    return np.interp(y, oy[right][order], x[right][order] - g["cx"], left=0.0, right=0.0)


def _hair_back(d, s, g, col, rng):
    """Long hair behind head and shoulders; returns its side profile for the front locks."""
    vol, flare, end = rng.uniform(0.02, 0.06), rng.uniform(0.0, 0.07), rng.uniform(0.72, 1.02)
    t = np.linspace(np.pi, 2 * np.pi, 20)
    tx = g["cx"] + (g["a"] + vol) * np.cos(t)
    ty = g["cy"] + (g["cy"] - g["top_y"] + vol) * np.sin(t)
    y = np.linspace(g["cy"], end, 10)
    p = (y - g["cy"]) / (end - g["cy"])
    out = (g["a"] + vol + flare * p ** 1.5) * (1 - 0.3 * p ** 8)  # tips curl inwards
    d.polygon(_pts(np.r_[tx, g["cx"] + out, g["cx"] - out[::-1]], np.r_[ty, y, y[::-1]], s),
              fill=_rgb(col["hair"] * 0.8))
    return {"vol": vol, "y": y, "out": out}


def _body(d, s, g, col, rng):
    neck = col["skin"] * 0.78
    nw = g["a"] * rng.uniform(0.5, 0.65)
    d.rectangle(_box(g["cx"] - nw, g["mouth_y"], g["cx"] + nw, 1.01, s), fill=_rgb(neck))
    # shadow cast by the jaw onto the neck
    d.ellipse(_box(g["cx"] - nw, g["chin_y"] - 0.08, g["cx"] + nw, g["chin_y"] + 0.03, s),
              fill=_rgb(col["skin"] * 0.66))
    top, sw, hh = g["chin_y"] + rng.uniform(0.08, 0.13), rng.uniform(0.4, 0.56), rng.uniform(0.18, 0.3)
    cloth = _muted(rng, 15, 240, 1.0)
    d.ellipse(_box(g["cx"] - sw, top, g["cx"] + sw, top + 2 * hh, s), fill=_rgb(cloth * 0.8))
    d.ellipse(_box(g["cx"] - sw * 0.9, top + 0.03, g["cx"] + sw * 0.9, top + 2 * hh, s), fill=_rgb(cloth))
    kind, depth = rng.integers(3), rng.uniform(0.03, 0.09)
    if kind == 0:  # V neck
        d.polygon(_pts([g["cx"] - nw, g["cx"] + nw, g["cx"]], [top - 0.01, top - 0.01, top + depth], s),
                  fill=_rgb(neck))
    elif kind == 1:  # round neck
        d.chord(_box(g["cx"] - nw, top - depth * 0.6, g["cx"] + nw, top + depth * 0.6, s), 0, 180,
                fill=_rgb(neck))


def _ears(d, s, g, col):
    y = (g["eye_y"] + g["nose_y"]) / 2
    for sg in (-1, 1):
        x = g["cx"] + sg * g["a"] * 0.97
        d.ellipse(_box(x - 0.03, y - 0.055, x + 0.03, y + 0.05, s), fill=_rgb(col["skin"] * 0.86))
        xi = x + sg * 0.008
        d.ellipse(_box(xi - 0.014, y - 0.035, xi + 0.014, y + 0.03, s), fill=_rgb(col["skin"] * 0.68))


def _face(d, s, g, col, light, size):
    """Skin as nested outlines brightening towards a centre shifted to the light side."""
    x, y = _outline(g)
    ox, oy = g["cx"] + 0.03 * light[0], g["cy"] - 0.04 + 0.03 * light[1]
    n = 8 * max(1, size // 128)  # enough steps that the bands never show at the output size
    for k, b in zip(np.linspace(1, 0.5, n), np.linspace(0.8, 1.02, n)):
        d.polygon(_pts(ox + (x - ox) * k, oy + (y - oy) * k, s), fill=_rgb(col["skin"] * b))


def _eye(im, d, s, x, y, w, h, col, rng, look):
    u = np.linspace(-1, 1, 17)
    ex = x + u * w / 2
    up = y - h / 2 * (1 - u ** 2) ** 0.6
    lo = y + h / 2 * (1 - u ** 2) ** 0.85 * 0.8
    # sclera/iris are drawn in a patch and pasted through the almond mask so the iris
    # is clipped by the lids like a real eye
    x0, y0 = int((x - w / 2) * s) - 2, int((y - h / 2) * s) - 2
    pw, ph = int(w * s) + 5, int(h * s) + 5
    patch = Image.new("RGB", (pw, ph), _rgb(np.array([238, 234, 228]) * rng.uniform(0.85, 1.0)))
    mask = Image.new("L", (pw, ph), 0)
    poly = (np.stack([np.r_[ex, ex[::-1]], np.r_[up, lo[::-1]]], -1) * s - [x0, y0]).ravel().tolist()
    ImageDraw.Draw(mask).polygon(poly, fill=255)
    pd = ImageDraw.Draw(patch)
    r = w * rng.uniform(0.19, 0.24) * s
    ix, iy = (x + look) * s - x0, y * s - y0 - r * 0.15
    pd.ellipse([ix - r, iy - r, ix + r, iy + r], fill=_rgb(col["iris"] * 0.6))
    pd.ellipse([ix - r * 0.82, iy - r * 0.82, ix + r * 0.82, iy + r * 0.82], fill=_rgb(col["iris"]))
    p = r * rng.uniform(0.35, 0.5)
    pd.ellipse([ix - p, iy - p, ix + p, iy + p], fill=(12, 10, 10))
    hx, hy, hr = ix - r * 0.35, iy - r * 0.35, max(r * 0.22, 1)
    pd.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=(250, 250, 250))
    im.paste(patch, (x0, y0), mask)
    lw = max(1, int(h * rng.uniform(0.15, 0.25) * s))
    d.line(_pts(ex, up, s), fill=_rgb(col["skin"] * 0.25), width=lw, joint="curve")
    d.line(_pts(ex[2:-2], lo[2:-2], s), fill=_rgb(col["skin"] * 0.7), width=max(1, lw // 2))
    d.line(_pts(x + (ex - x) * 0.85, up - h * rng.uniform(0.3, 0.5), s),
           fill=_rgb(col["skin"] * 0.78), width=max(1, lw // 2), joint="curve")


def _eyes(im, d, s, g, col, rng):
    w = g["eye_w"]
    h = w * rng.uniform(0.36, 0.55)
    look = w * rng.uniform(-0.1, 0.1)
    for sg in (-1, 1):
        _eye(im, d, s, g["cx"] + sg * g["spacing"] / 2, g["eye_y"], w, h, col, rng, look)
    inner, length = rng.uniform(0.02, 0.045), rng.uniform(0.06, 0.085)
    by = g["eye_y"] - rng.uniform(0.042, 0.06)
    arch, slant = rng.uniform(0.004, 0.016), rng.uniform(-0.012, 0.012)
    th = rng.uniform(0.007, 0.018)
    u = np.linspace(0, 1, 10)
    yc = by - arch * np.sin(np.pi * u * 0.9) + slant * u
    t = th * (1 - 0.65 * u ** 1.5) / 2
    for sg in (-1, 1):
        x = g["cx"] + sg * (inner + length * u)
        d.polygon(_pts(np.r_[x, x[::-1]], np.r_[yc - t, (yc + t)[::-1]], s), fill=_rgb(col["brow"]))


def _nose(d, da, s, g, col, rng, light):
    nw, ny, cx, sk = rng.uniform(0.06, 0.1), g["nose_y"], g["cx"], col["skin"]
    side = -1 if light[0] > 0 else 1  # bridge shadow falls away from the light
    by = np.linspace(g["eye_y"] + 0.03, ny - 0.01, 8)
    bx = cx + side * (0.016 + nw * 0.3 * ((by - by[0]) / (by[-1] - by[0])) ** 3)
    da.line(_pts(bx, by, s), fill=_rgb(sk * 0.5, 150), width=max(1, int(0.007 * s)), joint="curve")
    da.line(_pts(bx - side * 0.02, by, s), fill=(255, 255, 255, 30), width=max(1, int(0.006 * s)))
    lw = max(1, int(0.005 * s))
    for sg in (-1, 1):
        ax, r = cx + sg * nw * 0.36, nw * 0.2
        da.arc(_box(ax - r, ny - 0.005 - r, ax + r, ny - 0.005 + r, s),
               *((-80, 110) if sg > 0 else (70, 260)), fill=_rgb(sk * 0.5, 210), width=lw)
        da.ellipse(_box(cx + sg * nw * 0.2 - nw * 0.1, ny, cx + sg * nw * 0.2 + nw * 0.1, ny + nw * 0.11, s),
                   fill=_rgb(sk * 0.3, 230))
    da.arc(_box(cx - nw * 0.22, ny - 0.025, cx + nw * 0.22, ny + 0.008, s), 25, 155,
           fill=_rgb(sk * 0.6, 150), width=lw)
    da.ellipse(_box(cx - 0.011, ny - 0.03, cx + 0.011, ny - 0.012, s), fill=(255, 255, 255, 40))


def _mouth(d, da, s, g, col, rng):
    mw, my, cx = g["mouth_w"], g["mouth_y"], g["cx"]
    curve = rng.choice([rng.uniform(0.006, 0.022), rng.uniform(-0.004, 0.004), rng.uniform(-0.014, -0.005)],
                       p=[0.45, 0.35, 0.2])
    ul, ll = rng.uniform(0.008, 0.018), rng.uniform(0.012, 0.026)
    u = np.linspace(-1, 1, 21)
    x = cx + u * mw / 2
    line = my - curve * (u ** 2 - 0.3)
    env = (1 - u ** 2) ** 0.6
    top = line - ul * env * (1 - 0.35 * np.exp(-(u / 0.18) ** 2))  # cupid's bow dip
    bot = line + ll * env
    d.polygon(_pts(np.r_[x, x[::-1]], np.r_[top, bot[::-1]], s), fill=_rgb(col["lip"]))
    da.ellipse(_box(cx - mw * 0.2, line.max() + ll * 0.25, cx + mw * 0.2, line.max() + ll * 0.75, s),
               fill=(255, 255, 255, 45))
    if rng.random() < 0.25:  # open mouth with teeth
        gap = rng.uniform(0.006, 0.018) * (1 - u ** 2) ** 0.8
        hi, lo = line - gap * 0.4, line + gap * 0.6
        d.polygon(_pts(np.r_[x, x[::-1]], np.r_[hi, lo[::-1]], s), fill=(55, 18, 22))
        d.polygon(_pts(np.r_[x[3:-3], x[3:-3][::-1]], np.r_[hi[3:-3], (hi + gap * 0.55)[3:-3][::-1]], s),
                  fill=_rgb(np.array([236, 232, 218]) * rng.uniform(0.85, 1.0)))
    else:
        d.line(_pts(x, line, s), fill=_rgb(col["lip"] * 0.5), width=max(1, int(0.005 * s)), joint="curve")


def _beard(d, da, s, g, c, kind, rng):
    """Drawn before the mouth so the lips stay visible through it."""
    mw = g["mouth_w"]
    if kind == "goatee":
        u = np.linspace(-1, 1, 11)
        top = g["mouth_y"] + 0.028 + 0.008 * u ** 2
        bot = g["chin_y"] + 0.012 - (g["chin_y"] - g["mouth_y"]) * 0.4 * u ** 4
        x = g["cx"] + u * mw * rng.uniform(0.25, 0.38)
        d.polygon(_pts(np.r_[x, x[::-1]], np.r_[top, bot[::-1]], s), fill=_rgb(c))
        return
    x, y = _outline(g)
    keep = (y > g["cy"]) & (np.arange(len(y)) < len(y) // 2)  # jaw line, right to left
    bx = g["cx"] + (x[keep] - g["cx"]) * 1.05  # a little volume beyond the jaw
    by = g["cy"] + (y[keep] - g["cy"]) * 1.04
    # top edge runs from the left sideburn under the nose to the right sideburn
    ix = g["cx"] + np.array([-0.9 * g["a"], -0.6 * mw, 0.6 * mw, 0.9 * g["a"]])
    iy = [g["cy"] + 0.02, g["nose_y"] + 0.02, g["nose_y"] + 0.02, g["cy"] + 0.02]
    pts = _pts(np.r_[bx, ix], np.r_[by, iy], s)
    if kind == "full":
        d.polygon(pts, fill=_rgb(c))
    else:  # stubble: same area, translucent
        da.polygon(pts, fill=_rgb(c, 80))


def _moustache(d, s, g, c, rng):
    u = np.linspace(-1, 1, 13)
    x = g["cx"] + u * g["mouth_w"] * 0.62
    b = g["mouth_y"] - 0.006 + 0.014 * u ** 2
    t = b - 0.005 - rng.uniform(0.01, 0.018) * (1 - u ** 2) ** 0.7
    d.polygon(_pts(np.r_[x, x[::-1]], np.r_[t, b[::-1]], s), fill=_rgb(c))


def _hair_front(d, da, s, g, col, rng, style, locks):
    cx, a, c = g["cx"], g["a"], col["hair"]
    if style == "bald":
        if rng.random() < 0.6:  # horseshoe of remaining hair hugging the sides of the skull
            ys = np.linspace(g["eye_y"] - 0.09, g["cy"] + 0.03, 8)
            h = _face_half(g, ys)
            for sg in (-1, 1):
                d.polygon(_pts(cx + sg * np.r_[h + 0.008, h[::-1] - 0.014], np.r_[ys, ys[::-1]], s), fill=_rgb(c))
        da.ellipse(_box(cx - a * 0.45, g["top_y"] + 0.015, cx + a * 0.25, g["top_y"] + 0.09, s),
                   fill=(255, 255, 255, 22))
        return
    if locks:  # long hair falling in front of the shoulders, framing the face
        ys = np.linspace(g["eye_y"] - 0.06, locks["y"][-1], 12)
        outer = np.interp(ys, locks["y"], locks["out"])
        inner = np.maximum(_face_half(g, ys) - 0.012, a * rng.uniform(0.6, 0.75))
        tip_x, tip_y = (inner[-1] + outer[-1]) / 2, ys[-1] + 0.02
        for sg in (-1, 1):
            d.polygon(_pts(cx + sg * np.r_[outer, tip_x, inner[::-1]], np.r_[ys, tip_y, ys[::-1]], s),
                      fill=_rgb(c))
        vol = locks["vol"]
    else:
        vol = rng.uniform(0.005, 0.03) if style == "bun" else rng.uniform(0.01, 0.07)
    temple = g["eye_y"] - rng.uniform(0.0, 0.04)
    b = g["cy"] - g["top_y"] + vol
    # the outer edge stops at temple height so the sides do not stick out as flaps
    alpha = np.arcsin(np.clip((g["cy"] - temple - 0.02) / b, 0, 1))
    t = np.linspace(np.pi + alpha, 2 * np.pi - alpha, 24)
    ox = cx + (a + vol) * np.cos(t)
    oy = g["cy"] + b * np.sin(t)
    line_y = rng.uniform(0.27, 0.31) if style == "fringe" else rng.uniform(0.2, 0.27)
    th = np.linspace(0, np.pi, 24)
    ix = cx + a * 0.96 * np.cos(th)
    flat = 0.25 if style == "fringe" else rng.uniform(0.4, 0.8)
    iy = temple - (temple - line_y) * np.sin(th) ** flat + rng.uniform(-0.03, 0.03) * np.cos(th)
    if style == "fringe":  # jagged strand tips
        iy = iy + 0.012 * (np.arange(24) % 2) * (np.sin(th) > 0.5)
    d.polygon(_pts(np.r_[ox, ix], np.r_[oy, iy], s), fill=_rgb(c))
    # highlight strands: blends of the outer edge and the hairline stay inside the cap
    for f in rng.uniform(0.15, 0.85, 4):
        i, j = rng.integers(5, 9), rng.integers(15, 19)
        sx, sy = ox * (1 - f) + ix[::-1] * f, oy * (1 - f) + iy[::-1] * f
        da.line(_pts(sx[i:j], sy[i:j], s), fill=_rgb(c * 1.3 + 20, 70), width=max(1, int(0.004 * s)),
                joint="curve")


def _glasses(d, da, s, g, rng):
    c = _rgb(FRAMES[rng.integers(len(FRAMES))])
    lw = min(max(rng.uniform(0.045, 0.06), g["eye_w"] / 2 + 0.012), g["spacing"] / 2 - 0.012)
    fw = max(1, int(rng.uniform(0.004, 0.01) * s))
    lh = lw * rng.uniform(0.65, 0.95)
    tint = rng.random() < 0.25
    round_ = rng.random() < 0.5
    for sg in (-1, 1):
        x, y = g["cx"] + sg * g["spacing"] / 2, g["eye_y"] + 0.005
        box = _box(x - lw, y - lh, x + lw, y + lh, s)
        if tint:
            da.ellipse(box, fill=_rgb(rng.uniform(20, 90, 3), 90))
        if round_:
            d.ellipse(box, outline=c, width=fw)
        else:
            d.rounded_rectangle(box, radius=lh * s * 0.5, outline=c, width=fw)
        d.line(_pts([x + sg * lw, g["cx"] + sg * g["a"] * 0.98], [y - lh * 0.5, y - lh * 0.6], s), fill=c, width=fw)
    xi = g["spacing"] / 2 - lw
    d.line(_pts(g["cx"] + np.array([-xi, 0, xi]), g["eye_y"] - lh * np.array([0.3, 0.5, 0.3]), s),
           fill=c, width=fw, joint="curve")


def synthetic_face(seed: int, index: int, size: int, randomised: bool = False) -> np.ndarray:
    """Deterministic aligned portrait, uint8 [size, size, 3] RGB. `randomised`: the training
    set's version, lit in three dimensions and varied as photos vary (see _photograph)."""
    rng = np.random.default_rng([seed, index])
    s = max(4 * size, 256)  # supersampled canvas, box-reduced for antialiasing
    g, col = _geometry(rng), _palette(rng)
    ang = rng.uniform(0, 2 * np.pi)
    light = (float(np.cos(ang)), float(np.sin(ang)))  # Python floats keep the ramp float32
    style = rng.choice(["short", "long", "bun", "bald", "fringe"], p=[0.32, 0.3, 0.1, 0.1, 0.18])
    im = _background(rng, size, s)
    d, da = ImageDraw.Draw(im), ImageDraw.Draw(im, "RGBA")  # RGBA blending is slow: small shapes only

    locks = None
    if style == "long" or (style == "fringe" and rng.random() < 0.5):
        locks = _hair_back(d, s, g, col, rng)
    if style == "bun":
        r = rng.uniform(0.05, 0.08)
        bx = g["cx"] + rng.uniform(-0.03, 0.03)
        d.ellipse(_box(bx - r, g["top_y"] - 1.4 * r, bx + r, g["top_y"] + 0.6 * r, s), fill=_rgb(col["hair"] * 0.9))
    _body(d, s, g, col, rng)
    if not locks:
        _ears(d, s, g, col)
    _face(d, s, g, col, light, size)
    for sg in (-1, 1):  # cheek blush
        x, y = g["cx"] + sg * g["spacing"] * 0.62, g["nose_y"] + 0.01
        da.ellipse(_box(x - 0.045, y - 0.03, x + 0.045, y + 0.03, s), fill=(205, 60, 60, int(rng.uniform(8, 35))))
    _eyes(im, d, s, g, col, rng)
    _nose(d, da, s, g, col, rng, light)
    beard = rng.choice(["none", "full", "stubble", "goatee", "moustache"], p=[0.8, 0.06, 0.05, 0.05, 0.04])
    if beard in ("full", "stubble", "goatee"):
        _beard(d, da, s, g, col["hair"] * 0.85, beard, rng)
    _mouth(d, da, s, g, col, rng)
    if beard in ("full", "goatee", "moustache"):
        _moustache(d, s, g, col["hair"] * 0.85, rng)
    _hair_front(d, da, s, g, col, rng, style, locks)
    if rng.random() < 0.2:
        _glasses(d, da, s, g, rng)

    photo_rng = np.random.default_rng([seed, index, 1])
    # Half the faces stay drawn: the other half teach photos without unlearning drawn faces.
    if randomised and photo_rng.random() < PHOTO_SHARE:
        return _photograph(im, g, light, size, photo_rng)
    img = np.asarray(im.reduce(s // size), dtype=np.float32)
    # scene lighting ramp, white balance and sensor noise at the output resolution
    t = np.linspace(-1, 1, size, dtype=np.float32)
    ramp = 1 + rng.uniform(0.05, 0.3) * (light[0] * t[None, :] + light[1] * t[:, None])
    img = img * ramp[..., None] * rng.uniform(0.97, 1.03, 3).astype(np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(1, 4)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- realism
PHOTO_SHARE = 0.5  # of the training set drawn as photos (_photograph)
# The drawn portrait is flat, colourful, sharp and always framed alike; photos of people are
# lit in three dimensions, often grey, low in contrast, soft and compressed. The training set
# is drawn with that variety (domain randomisation, as in Wood et al., "Fake It Till You
# Make It", ICCV 2021) so that what the model learns carries over to photos (docs/ablation.md).

def _relief(g, n):
    """A height map of the head on an n x n grid (fractions of the side): an ellipsoid skull
    and face, with a nose ridge and tip, eye sockets, cheekbones and a chin."""
    v, u = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / n
    cy, b = (g["top_y"] + g["chin_y"]) / 2, (g["chin_y"] - g["top_y"]) / 2 * 1.04
    e = ((u - g["cx"]) / (g["a"] * 1.06)) ** 2 + ((v - cy) / b) ** 2
    h = np.sqrt(np.clip(1 - e, 0, 1)) * g["a"] * 0.7

    def bump(x, y, rx, ry, height):
        return height * np.exp(-((u - x) / rx) ** 2 - ((v - y) / ry) ** 2)
    ridge = np.clip((v - g["eye_y"]) / (g["nose_y"] - g["eye_y"]), 0, 1) * (v < g["nose_y"] + 0.02)
    h = h + 0.035 * ridge * np.exp(-((u - g["cx"]) / 0.022) ** 2)
    h = h + bump(g["cx"], g["nose_y"] - 0.01, 0.03, 0.025, 0.03)
    for sg in (-1, 1):
        h = h + bump(g["cx"] + sg * g["spacing"] / 2, g["eye_y"], 0.05, 0.03, -0.02)
        h = h + bump(g["cx"] + sg * g["spacing"] * 0.65, g["nose_y"] - 0.01, 0.05, 0.04, 0.012)
    h = h + bump(g["cx"], g["mouth_y"] + 0.005, 0.05, 0.02, 0.008)
    h = h + bump(g["cx"], g["chin_y"] - 0.04, 0.05, 0.03, 0.01)
    return h * (e < 1)


def _shading(g, light, n, rng):
    """Lambertian light on the relief, 1 where a surface faces the camera in frontal light."""
    h = _relief(g, n)
    dy, dx = np.gradient(h * n)
    # near the camera's axis, from any side: a light from above shadowed the lower face, and
    # restorations of real faces under the surgical mask came out dark (docs/ablation.md)
    elevation = rng.uniform(0.1, 0.6)
    direction = np.array([light[0] * elevation, light[1] * elevation, 1.0], np.float32)
    direction /= np.linalg.norm(direction)
    lit = (-dx * direction[0] - dy * direction[1] + direction[2]) / np.sqrt(dx ** 2 + dy ** 2 + 1)
    ambient = rng.uniform(0.45, 0.75)
    return ambient + (1 - ambient) * np.clip(lit, 0, None) / direction[2]


def _photograph(im, g, light, size, rng):
    """The drawn canvas as a photo: shaded and its skin mottled, then grey, low in contrast,
    soft, noisy or compressed, each at random. uint8 [size, size, 3]. (Faces moved closer
    and tilted lost their ablation: docs/ablation.md.)"""
    s = im.width
    n = size  # the light and the mottling are smooth: computed at the output side
    field = _shading(g, light, n, rng)
    blotches = rng.standard_normal((8, 8)).astype(np.float32) * rng.uniform(0.0, 0.05)
    field = field * (1 + np.asarray(Image.fromarray(blotches, "F").resize((n, n), Image.BICUBIC)))
    field = np.asarray(Image.fromarray(field.astype(np.float32), "F").resize((s, s), Image.BILINEAR))
    canvas = np.asarray(im, np.float32) * field[..., None]
    im = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    img = np.asarray(im.reduce(s // size), dtype=np.float32)
    t = np.linspace(-1, 1, size, dtype=np.float32)
    ramp = 1 + rng.uniform(0.0, 0.25) * (light[0] * t[None, :] + light[1] * t[:, None])
    img = img * ramp[..., None] * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    if rng.random() < 0.3:
        img = np.repeat(img @ np.float32([0.299, 0.587, 0.114])[:, None], 3, axis=-1)
    if rng.random() < 0.5:  # flat light, a dull print, a cheap sensor
        mean = img.mean()
        img = mean + (img - mean) * rng.uniform(0.55, 1.0)
    img = 255 * (np.clip(img, 0, 255) / 255) ** rng.uniform(0.8, 1.25)
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(1, 5)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if rng.random() < 0.4:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * size / 128))
    if rng.random() < 0.3:
        buffer = io.BytesIO()
        out.save(buffer, "JPEG", quality=int(rng.integers(35, 90)))
        out = Image.open(buffer).convert("RGB")
    return np.asarray(out, np.uint8)
