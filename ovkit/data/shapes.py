"""A small bring-your-own dataset that is *not* Sweet Home 3D: procedurally drawn products.

Each "model" is a shape with a pattern (a star with stripes, a ring with dots, …); its SKUs are
colourways of it — the near-duplicates a semantic ID must keep apart, as in the default data.
Catalogue images show the object centred on white; shoppers' photos rotate, shift and scale it,
put it on a scikit-image texture, change the light and add noise. The folder is written in the
format of :mod:`ovkit.data.folder`, so it exercises exactly the path a user's own data takes.

    python -m ovkit.data.shapes /tmp/shapes            # then: ovkit run -p DATA_SOURCE=/tmp/shapes
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from .render import background_patch

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon")
PATTERNS = ("solid", "stripes", "dots")
COLOURS = {"red": (200, 40, 40), "blue": (40, 70, 200), "green": (40, 150, 60),
           "yellow": (230, 200, 40), "purple": (130, 50, 160), "orange": (235, 130, 30)}
BRANDS = ("Acme", "Borealis", "Cobalt", "Dune")
BACKGROUNDS = ("grass", "brick", "gravel")
ANGLES = (-40.0, 40.0)  # training photos' rotation range, degrees
# Held-out conditions (splits heldout_val / heldout_test): other textures, rotations beyond training's.
HELDOUT = {"val": (("astronaut", "jenga"), (40.0, 80.0)), "test": (("chelsea", "coins"), (-80.0, -40.0))}
DRAW_SIZE = 96  # pixels; the loader resizes to the kit's image size


def _outline(shape: str, size: int) -> list[tuple[float, float]] | None:
    """Polygon of a shape centred in a size×size canvas (None: drawn as an ellipse)."""
    c, r = size / 2, size * 0.36
    if shape in ("circle", "ring"):
        return None
    if shape == "square":
        angles = np.deg2rad([45, 135, 225, 315])
    elif shape == "diamond":
        angles = np.deg2rad([0, 90, 180, 270])
    elif shape == "triangle":
        angles = np.deg2rad([90, 210, 330])
    elif shape == "hexagon":
        angles = np.deg2rad(np.arange(0, 360, 60))
    elif shape == "star":
        angles = np.deg2rad(np.arange(90, 450, 36))
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        return [(c + q * np.cos(a), c - q * np.sin(a)) for a, q in zip(angles, radii, strict=True)]
    elif shape == "cross":
        w = r * 0.38
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w),
               (-r, -w), (-w, -w)]
        return [(c + x, c + y) for x, y in pts]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(c + r * np.cos(a), c - r * np.sin(a)) for a in angles]


def draw_object(shape: str, pattern: str, colour: tuple[int, int, int], size: int = DRAW_SIZE):
    """The object as an RGB image on white and its mask (both size×size)."""
    mask = Image.new("L", (size, size), 0)
    pen = ImageDraw.Draw(mask)
    outline = _outline(shape, size)
    box = (size * 0.14, size * 0.14, size * 0.86, size * 0.86)
    if outline is None:
        pen.ellipse(box, fill=255)
        if shape == "ring":
            pen.ellipse((size * 0.34, size * 0.34, size * 0.66, size * 0.66), fill=0)
    else:
        pen.polygon(outline, fill=255)
    fill = Image.new("RGB", (size, size), colour)
    if pattern != "solid":  # a lighter second colour in stripes or dots
        light = tuple(int(v + (255 - v) * 0.6) for v in colour)
        marks = ImageDraw.Draw(fill)
        step = size // 8
        for k in range(0, size, step):
            if pattern == "stripes":
                marks.rectangle((k, 0, k + step // 2 - 1, size), fill=light)
            else:
                for j in range(step // 2, size, step):
                    marks.ellipse((k + 2, j - 3, k + 7, j + 2), fill=light)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    image.paste(fill, mask=mask)
    return image, mask


def shopper_photo(image: Image.Image, mask: Image.Image, rng: np.random.Generator,
                  backgrounds=BACKGROUNDS, angles=ANGLES) -> Image.Image:
    """A shopper's photo of the object: rotated, scaled, shifted, on a texture, relit, noisy."""
    size = image.width
    angle, scale = rng.uniform(*angles), rng.uniform(0.7, 1.1)
    shift = rng.uniform(-0.12, 0.12, size=2) * size
    obj = image.rotate(angle, resample=Image.BILINEAR, fillcolor=(255, 255, 255))
    obj_mask = mask.rotate(angle, resample=Image.BILINEAR)
    side = max(8, int(size * scale))
    obj, obj_mask = obj.resize((side, side)), obj_mask.resize((side, side))
    patch = background_patch(str(rng.choice(backgrounds)), size, rng)  # float RGB in 0..1
    background = Image.fromarray((patch * 255).astype(np.uint8))
    at = (int((size - side) / 2 + shift[0]), int((size - side) / 2 + shift[1]))
    background.paste(obj, at, obj_mask)
    photo = np.asarray(background.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0))), float)
    photo = photo * rng.uniform(0.7, 1.2) + rng.normal(0, 6, size=photo.shape)
    return Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))


def write(root: Path, n_models: int = 24, colourways: int = 2, query_views: int = 5,
          cold_fraction: float = 0.1, seed: int = 0) -> Path:
    """Write a shapes dataset folder (``items.csv``, ``images.csv``, ``images/*.png``) into ``root``.

    Args:
        n_models: shape × pattern combinations (at most 24), each sold in ``colourways`` colours.
        query_views: shoppers' photos per SKU; a warm SKU's are split train / val / test, a cold
            SKU's (a seeded ``cold_fraction`` of SKUs) val / test. Each SKU also gets one photo
            under held-out conditions (``HELDOUT``) in ``heldout_val`` and one in ``heldout_test``.
    Returns:
        ``root``.
    """
    models = [(s, p) for p in PATTERNS for s in SHAPES][:n_models]
    if len(models) < n_models or not 1 <= colourways <= len(COLOURS):
        raise ValueError(f"at most {len(SHAPES) * len(PATTERNS)} models and {len(COLOURS)} colourways")
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    items, images = [], []
    for m, (shape, pattern) in enumerate(models):
        brand = BRANDS[m % len(BRANDS)]
        for colour in rng.choice(list(COLOURS), size=colourways, replace=False):
            sku = f"{shape}-{pattern}-{colour}"
            items.append({"item_id": sku, "category": shape, "fine_type": f"{shape} ({pattern})",
                          "model_id": m, "colour": colour, "creator": brand, "name": sku,
                          "price": round(float(rng.lognormal(3 + 0.2 * (m % 5), 0.3)), 2)})
            image, mask = draw_object(shape, pattern, COLOURS[colour])
            image.save(root / "images" / f"{sku}.png")
            images.append({"path": f"images/{sku}.png", "item_id": sku, "kind": "catalog", "split": ""})
            for q in range(query_views):
                name = f"images/{sku}-q{q}.png"
                shopper_photo(image, mask, rng).save(root / name)
                images.append({"path": name, "item_id": sku, "kind": "query", "split": ""})
            for family, (textures, angles) in HELDOUT.items():
                name = f"images/{sku}-{family}.png"
                shopper_photo(image, mask, rng, textures, angles).save(root / name)
                images.append({"path": name, "item_id": sku, "kind": "query", "split": f"heldout_{family}"})
    items, images = pd.DataFrame(items), pd.DataFrame(images)
    cold = set(rng.choice(items["item_id"], int(round(cold_fraction * len(items))), replace=False))
    for sku, group in images[(images["kind"] == "query") & (images["split"] == "")].groupby("item_id"):
        order = rng.permutation(group.index.to_numpy())
        splits = ["test", "val"] * len(order) if sku in cold else ["test", "val"] + ["train"] * len(order)
        splits = splits[: len(order)]
        images.loc[order, "split"] = splits
    items.to_csv(root / "items.csv", index=False)
    images.to_csv(root / "images.csv", index=False)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write a procedurally drawn shapes dataset folder")
    parser.add_argument("root", type=Path)
    parser.add_argument("--models", type=int, default=24)
    parser.add_argument("--colourways", type=int, default=2)
    parser.add_argument("--query-views", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write(args.root, args.models, args.colourways, args.query_views, seed=args.seed)
    print(f"wrote {args.root}: try  ovkit run --profile smoke -p DATA_SOURCE={args.root.resolve()}")


if __name__ == "__main__":
    main()
