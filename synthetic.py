import numpy as np
from PIL import Image, ImageDraw
def synthetic_face(seed, index, size):
    rng = np.random.default_rng([seed, index])
    im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    s = size
    skin = tuple(int(v) for v in rng.integers(80, 230, 3))
    d.ellipse([0.26*s, 0.2*s, 0.74*s, 0.8*s], fill=skin)
    d.ellipse([0.38*s, 0.38*s, 0.44*s, 0.42*s], fill=(0,0,0))
    d.ellipse([0.56*s, 0.38*s, 0.62*s, 0.42*s], fill=(0,0,0))
    d.line([0.5*s, 0.42*s, 0.5*s, 0.53*s], fill=(90,60,50), width=max(1, s//64))
    d.line([0.42*s, 0.63*s, 0.58*s, 0.63*s], fill=(160,40,50), width=max(1, s//32))
    return np.asarray(im)
