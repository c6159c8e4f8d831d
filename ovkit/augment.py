"""Augmented training photos for a robust alignment head (notebook 01, kit choice).

The head trains on cached feature maps, so augmentation happens once, before the frozen trunk:
each training photo gets ``copies`` transformed versions, and each warm SKU's catalogue images are
cut out of their white background and pasted on training-family textures (then transformed too);
their maps are cached as stage ``augment``. The head's sampler swaps an anchor photo for one of
its SKU's augmented photos at random. Every transform is torchvision's; only the cut-out is ours.

Kinds (``AlignConfig.augment``):
- ``photometric``: colour jitter (brightness, contrast, saturation, hue), grey, blur, JPEG;
- ``geometric``: random resized crop (down to a third of the photo), flip, rotation, perspective,
  random erasing (a black block over part of the photo);
- ``background``: the catalogue cut-outs join the anchors (a sampler choice: the stage always
  makes them, so switching it off needs no new cache);
- ``randomised`` (domain randomisation, issue 31; compared by ``sweeps/robustness.yaml``): cut-outs
  on *procedural* backgrounds (value noise, waves, blobs: no image of any family), and every copy
  drawn from wider ranges of the training families' own kinds only — white light (brightness,
  contrast, gamma, a soft shading ramp; white balance as in training), a textured block entering
  from one side (up to half the object), a zoom-in crop and a roll up to 30°, Gaussian blur and
  sensor noise. The held-out families' kinds (tinted or low-key light, bars, thumbs, JPEG, motion
  blur, vignettes, their backgrounds and camera ranges) are never drawn. Ours, in numpy and PIL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import backbone, store
from .data import render

STAGE_VERSION = 2  # bump when the stage's build code changes what it writes (see CONTRIBUTING.md)
KINDS = ("photometric", "geometric", "background")  # notebook 01's "augmented" row uses all three
RANDOMISED = "randomised"  # domain randomisation: a robustness option of the sweep, see randomise()


def transform(kinds, size: int):
    """The torchvision v2 pipeline for ``kinds`` on uint8 (3,H,W) tensors."""
    from torchvision.transforms import v2

    steps = []
    if "geometric" in kinds:
        steps += [v2.RandomResizedCrop(size, scale=(0.35, 1.0), ratio=(0.8, 1.25), antialias=True),
                  v2.RandomHorizontalFlip(),
                  v2.RandomApply([v2.RandomRotation(25)], p=0.5),
                  v2.RandomPerspective(0.3, p=0.3)]
    if "photometric" in kinds:
        steps += [v2.ColorJitter(0.5, 0.5, 0.5, 0.1), v2.RandomGrayscale(0.1),
                  v2.RandomApply([v2.GaussianBlur(7, sigma=(0.1, 2.5))], p=0.4),
                  v2.RandomApply([v2.Lambda(_jpeg)], p=0.3)]
    if "geometric" in kinds:
        steps += [v2.RandomErasing(p=0.4, scale=(0.05, 0.25), value=0)]
    return v2.Compose(steps) if steps else v2.Identity()  # randomised alone: no torchvision step


def _jpeg(image: torch.Tensor) -> torch.Tensor:
    """JPEG round trip at quality 15–75 (PIL's codec: torchvision's image IO is deprecated)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    quality = int(torch.randint(15, 76, ()))
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
    return torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1).contiguous()


def on_background(image: np.ndarray, textures, rng: np.random.Generator) -> np.ndarray:
    """A catalogue image (product on white) pasted on a random patch of one of ``textures``."""
    patch = render.background_patch(str(rng.choice(textures)), image.shape[0], rng)
    return np.where(product_mask(image)[..., None], image, (patch * 255).astype(np.uint8))


def product_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: the product in a catalogue image. The background is the near-white region
    connected to the border, so white parts inside the product stay."""
    from scipy import ndimage

    white, _ = ndimage.label((image >= 245).all(-1))
    border = np.unique(np.concatenate([white[0], white[-1], white[:, 0], white[:, -1]]))
    return ~np.isin(white, border[border > 0])


# --------------------------------------------------------------------------- domain randomisation


def procedural_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random (size, size, 3) float texture in 0..1 between two random colours: fractal value
    noise, waves at a random angle and frequency, or overlapping blobs. Drawn, never loaded, so no
    validation or test background can appear in it (and no checkerboard, a validation background)."""
    kind = int(rng.integers(3))
    yy, xx = np.mgrid[0 : 1 : size * 1j, 0 : 1 : size * 1j]
    if kind == 0:
        t = sum(weight * _upsampled(rng.random((cells, cells)), size)
                for cells, weight in ((3, 0.45), (6, 0.3), (12, 0.15), (24, 0.1)))
    elif kind == 1:
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(2, 10)
        warp = 0.15 * _upsampled(rng.random((4, 4)), size)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (frequency * (xx * np.cos(angle) + yy * np.sin(angle)) + warp))
    else:
        t = np.full((size, size), rng.random())
        for _ in range(int(rng.integers(3, 9))):
            (cx, cy), (rx, ry) = rng.random(2), rng.uniform(0.08, 0.4, 2)
            t[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1] = rng.random()
    a, b = rng.random(3), rng.random(3)
    t = np.clip(t, 0, 1)[..., None]
    return np.clip(a * (1 - t) + b * t + rng.normal(0, 0.02, (size, size, 3)), 0, 1).astype(np.float32)


def _upsampled(grid: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC))


def randomise(image: np.ndarray, composite: bool, rng: np.random.Generator) -> np.ndarray:
    """One domain-randomised copy (uint8 (H, W, 3)) of a training photo or, if ``composite``, of a
    catalogue image cut out onto a procedural background (see the module docstring for the ranges)."""
    from PIL import Image, ImageFilter

    size = image.shape[0]
    x = image.astype(np.float32) / 255.0
    if composite:
        x = np.where(product_mask(image)[..., None], x, procedural_texture(size, rng))
    if rng.random() < 0.5:  # a textured block from one side over the central box (the object's, roughly)
        lo, hi = int(0.15 * size), int(0.85 * size)
        cut = max(1, int((hi - lo) * rng.uniform(0.1, 0.5)))
        box = [slice(lo, hi), slice(lo, hi)]
        axis, start = int(rng.integers(2)), bool(rng.integers(2))
        box[axis] = slice(lo, lo + cut) if start else slice(hi - cut, hi)
        x[tuple(box)] = procedural_texture(size, rng)[tuple(box)]
    # white light, wider than the renderer's training range: gamma, brightness, contrast, a soft ramp
    ramp_angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[-0.5 : 0.5 : size * 1j, -0.5 : 0.5 : size * 1j]
    ramp = 1 + rng.uniform(0, 0.5) * (xx * np.cos(ramp_angle) + yy * np.sin(ramp_angle))
    x = x ** rng.uniform(0.7, 1.4) * rng.uniform(0.7, 1.35) * ramp[..., None]
    x = (x - x.mean()) * rng.uniform(0.65, 1.35) + x.mean()
    x = x * rng.uniform(0.925, 1.075, 3)  # white balance: the training range, never a tint
    out = Image.fromarray((np.clip(x, 0, 1) * 255).astype(np.uint8))
    # camera: a zoom-in crop and a roll beyond the renderer's 10 degrees
    side = int(size * rng.uniform(0.6, 1.0))
    left, top = (int(v) for v in rng.integers(0, size - side + 1, 2))
    out = out.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    fill = tuple(int(v) for v in np.asarray(out).reshape(-1, 3).mean(0))
    out = out.rotate(rng.uniform(-30, 30), Image.BILINEAR, fillcolor=fill)
    # effects: the training kind (Gaussian blur and sensor noise), wider
    sigma = rng.uniform(0, 2.5) * size / 128
    if sigma > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(sigma))
    noisy = np.asarray(out, np.float32) + rng.normal(0, rng.uniform(0, 20), (size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


class AugmentedImages:
    """The augmented photos listed in ``table`` (source ``view_id``, ``copy``, ``composite``),
    made on demand by slice so that they never all sit in memory; each is seeded by its row."""

    def __init__(self, catalogue, table: pd.DataFrame, kinds, textures, seed: int):
        self.catalogue, self.table, self.textures, self.seed = catalogue, table, textures, seed
        self.randomised = RANDOMISED in kinds
        self.transform = transform(kinds, catalogue.pixels.shape[1])

    def __len__(self):
        return len(self.table)

    def __getitem__(self, rows: slice) -> np.ndarray:
        out = []
        for row in self.table.iloc[rows].itertuples():
            rng = np.random.default_rng([self.seed, row.view_id, row.copy])
            image = np.asarray(self.catalogue.pixels[row.view_id])
            if self.randomised:
                image = randomise(image, row.composite, rng)
            elif row.composite:
                image = on_background(image, self.textures, rng)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**31)))
                x = self.transform(torch.from_numpy(np.array(image)).permute(2, 0, 1))
            out.append(x.permute(1, 2, 0).numpy())
        return np.stack(out)


def training_textures(catalogue) -> tuple[str, ...]:
    """The training family of backgrounds (held-out families stay unseen by training)."""
    if catalogue.rendered:
        return tuple(catalogue.meta["params"]["render"]["backgrounds"])
    return render.RenderConfig().backgrounds


def examples(catalogue, kinds, n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` source images (training photos, then catalogue images) and their first augmented copy."""
    table = plan(catalogue, 1)
    rows = pd.concat([table[~table["composite"]].head(n - n // 2), table[table["composite"]].head(n // 2)])
    made = AugmentedImages(catalogue, rows, kinds, training_textures(catalogue), seed)
    return catalogue.images(rows["view_id"]), made[0 : len(rows)]


def plan(catalogue, copies: int) -> pd.DataFrame:
    """Which photos get augmented copies: training photos and warm SKUs' catalogue images (cut
    out, ``composite``). Columns: view_id (source), item_id, copy, composite."""
    views = catalogue.views
    warm = ~catalogue.items["cold"].to_numpy()[views["item_id"].to_numpy()]
    photos = views[(views["kind"] == "query") & (views["split"] == "train")]
    table = pd.concat([photos.assign(composite=False),
                       views[(views["kind"] == "catalog") & warm].assign(composite=True)])
    table = table[["view_id", "item_id", "composite"]]
    return pd.concat([table.assign(copy=c) for c in range(copies)], ignore_index=True)


def usable(table: pd.DataFrame, kinds) -> np.ndarray:
    """Rows of ``table`` the sampler may use for ``kinds``: transformed photos need a photometric,
    geometric or randomised kind, cut-outs need ``background`` or ``randomised``."""
    transformed = bool(set(kinds) & {"photometric", "geometric", RANDOMISED})
    return np.where(table["composite"], bool(set(kinds) & {"background", RANDOMISED}), transformed)


@dataclass
class Augmented:
    """Stage ``augment``: feature maps of augmented photos and what each one is."""

    maps: np.ndarray  # (n, C, h, w) float16, memory-mapped
    table: pd.DataFrame  # per row: view_id (the photo it was made from), item_id, copy, composite
    artifact: store.Artifact


def augmented(catalogue, maps_artifact, kinds, copies: int = 1, seed: int = 0, device: str = "cpu"):
    """Stage ``augment`` (cached): trunk feature maps of ``copies`` augmented versions per photo
    (the transforms of ``kinds``; ``background`` does not change what is cached, ``randomised``
    changes every copy: see :func:`randomise`)."""
    unknown = sorted(set(kinds) - {*KINDS, RANDOMISED})
    if unknown:
        raise ValueError(f"unknown augmentation kind(s) {unknown}; "
                         f"choose from {', '.join(KINDS)}, {RANDOMISED}")
    kinds = sorted(set(kinds) - {"background"})
    made_with = maps_artifact.meta["params"]
    textures = training_textures(catalogue)
    table = plan(catalogue, copies)

    def build(folder):
        model = backbone.create(made_with["backbone"], made_with["weights"])
        trunk = backbone.split(model, made_with["tune_blocks"])
        images = AugmentedImages(catalogue, table, kinds, textures, seed)
        backbone.feature_maps(trunk, model, images, device=device, path=folder / "maps.npy")  # streamed
        store.release_pages(catalogue.pixels)  # the photos were drawn from every catalogue image
        table.to_parquet(folder / "table.parquet", index=False)
        return {"n": len(table)}

    params = {"kinds": kinds, "copies": copies, "seed": seed, "textures": list(textures)}
    artifact = store.cached("augment", params, build, upstream=[maps_artifact], version=STAGE_VERSION)
    return Augmented(np.load(artifact / "maps.npy", mmap_mode="r"),
                     pd.read_parquet(artifact / "table.parquet"), artifact)

