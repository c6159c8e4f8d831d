"""Frozen-trunk cost per image of the backbones with offline weights, measured side by side in one run.

    python benchmarks/backbones.py                     # lite0, lite1, lite2 at 128 px, 2 threads
    python benchmarks/backbones.py --threads 1 --batches 6

Batches of images (scikit-image photos, resized to ``--size``) go through every trunk the way
notebook 01 caches its feature maps (``backbone.split(model).frozen``, channels-last, float16 out),
timed by :func:`ovkit.timing.interleaved`: each batch under every trunk in a fresh random order, in
several rounds, after a warm-up. Prints each trunk's milliseconds per image and its cost relative
to lite0 (:func:`ovkit.timing.speedups`: total time and the typical batch, with intervals that
resample batches and rounds), and the feature map each trunk gives.
"""

from __future__ import annotations

import argparse

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
    parser.add_argument("--batches", type=int, default=8, help="timed batches")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the batches")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from ovkit import backbone, timing

    torch.set_num_threads(args.threads)
    names = sorted(backbone.OFFLINE)
    models = {name: backbone.create(name, "offline") for name in names}
    trunks = {name: backbone.split(model).frozen.to(memory_format=torch.channels_last)
              for name, model in models.items()}
    images = photos(args.batch * args.batches, args.size)
    inputs = {name: backbone.preprocess(images, model).contiguous(memory_format=torch.channels_last)
              for name, model in models.items()}

    def runner(name):
        def run(i):  # batch i
            with torch.inference_mode():
                return trunks[name](inputs[name][i * args.batch : (i + 1) * args.batch]).half()
        return run

    systems = {name: runner(name) for name in names}
    shapes = {name: tuple(systems[name](0).shape[1:]) for name in names}
    times = timing.interleaved(systems, args.batches, repeats=args.rounds, warmup=1, progress=False)
    print(f"{args.batch} images of {args.size} px per batch, {args.batches} batches × {args.rounds} rounds, "
          f"{args.threads} threads")
    print(f"{'trunk':24s} {'feature map':>14s} {'ms/image':>9s}  "
          f"cost vs {names[0]}: total [CI], typical batch [CI]")
    for name in names:
        ms = times[name].sum() / (args.batch * args.batches)
        cost = timing.speedups(times, name, names[0])  # name's time / lite0's
        total, typical = (f"{r:.2f}x [{lo:.2f}, {hi:.2f}]" for r, lo, hi in (cost["total"], cost["median"]))
        print(f"{name:24s} {str(shapes[name]):>14s} {ms:9.2f}  {total}, {typical}")


if __name__ == "__main__":
    main()
