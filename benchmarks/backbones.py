"""Frozen-trunk cost per image of the backbones with offline weights, measured side by side in one run.

    python benchmarks/backbones.py                     # lite0, lite1, lite2 at 128 px, 2 threads
    python benchmarks/backbones.py --threads 1 --size 128 --batches 8

Each batch of images (scikit-image photos, resized to ``--size``) goes through every trunk in turn,
in a shuffled order per repeat after a warm-up, the way notebook 01 caches its feature maps
(``backbone.split(model).frozen``, channels-last, float16 out). Prints the median milliseconds of
wall and of process CPU per image, each trunk's median per-batch wall ratio to lite0 with a
bootstrap interval over batches (scipy; a median, so one stalled batch on a shared machine does not
decide it), and the feature map each trunk gives.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image


def photos(n: int, size: int) -> np.ndarray:
    """``n`` scikit-image photos (cycled), ``size``×``size`` uint8 RGB."""
    import skimage.data

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"]
    images = []
    for i in range(n):
        image = getattr(skimage.data, names[i % len(names)])()
        images.append(np.asarray(Image.fromarray(image[..., :3]).resize((size, size), Image.BICUBIC)))
    return np.stack(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image side (the kit's photos: 128)")
    parser.add_argument("--batch", type=int, default=64, help="images per batch (as cached_maps)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per trunk")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from scipy.stats import bootstrap

    from ovkit import backbone

    torch.set_num_threads(args.threads)
    names = sorted(backbone.OFFLINE)
    models = {name: backbone.create(name, "offline") for name in names}
    trunks = {name: backbone.split(model).frozen.to(memory_format=torch.channels_last)
              for name, model in models.items()}
    images = photos(args.batch, args.size)
    inputs = {name: backbone.preprocess(images, model).contiguous(memory_format=torch.channels_last)
              for name, model in models.items()}

    def one(name):
        with torch.inference_mode():
            return trunks[name](inputs[name]).half()

    shapes = {name: tuple(one(name).shape[1:]) for name in names}  # also the warm-up
    rng = np.random.default_rng(0)
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for _ in range(args.batches):
        for name in rng.permutation(names):
            w, c = time.perf_counter(), time.process_time()
            one(name)
            wall[name].append((time.perf_counter() - w) / args.batch * 1e3)
            cpu[name].append((time.process_time() - c) / args.batch * 1e3)
    base = np.array(wall[names[0]])
    print(f"{args.batch} images of {args.size} px per batch, {args.batches} batches, {args.threads} threads")
    print(f"{'trunk':24s} {'feature map':>14s} {'wall ms/img':>12s} {'CPU ms/img':>11s}  wall vs lite0 [CI]")
    for name in names:
        ratios = np.array(wall[name]) / base  # paired by batch
        ci = bootstrap((ratios,), np.median, confidence_level=0.95, n_resamples=2000, method="percentile",
                       rng=np.random.default_rng(0)).confidence_interval if name != names[0] else None
        ratio, low, high = np.median(ratios), *((ci.low, ci.high) if ci else (1.0, 1.0))
        print(f"{name:24s} {str(shapes[name]):>14s} {np.median(wall[name]):12.2f} "
              f"{np.median(cpu[name]):11.2f}  {ratio:.2f}x [{low:.2f}, {high:.2f}]")


if __name__ == "__main__":
    main()
