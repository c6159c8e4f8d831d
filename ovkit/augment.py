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
  makes them, so switching it off needs no new cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import backbone, store
from .data import render

STAGE_VERSION = 2  # bump when the stage's build code changes what it writes (see CONTRIBUTING.md)
KINDS = ("photometric", "geometric", "background")


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
    return v2.Compose(steps)


def _jpeg(image: torch.Tensor) -> torch.Tensor:
    """JPEG round trip at quality 15–75 (PIL's codec: torchvision's image IO is deprecated)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    quality = int(torch.randint(15, 76, ()))
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
    return torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1).contiguous()


def on_background(image: np.ndarray, textures, rng: np.random.Generator) -> np.ndarray:
    """A catalogue image (product on white) pasted on a random patch of one of ``textures``.

    The background is the near-white region connected to the border, so white parts inside the
    product stay.
    """
    from scipy import ndimage

    white, _ = ndimage.label((image >= 245).all(-1))
    border = np.unique(np.concatenate([white[0], white[-1], white[:, 0], white[:, -1]]))
    foreground = ~np.isin(white, border[border > 0])
    patch = render.background_patch(str(rng.choice(textures)), image.shape[0], rng)
    return np.where(foreground[..., None], image, (patch * 255).astype(np.uint8))


class AugmentedImages:
    """The augmented photos listed in ``table`` (source ``view_id``, ``copy``, ``composite``),
    made on demand by slice so that they never all sit in memory; each is seeded by its row."""

    def __init__(self, catalogue, table: pd.DataFrame, kinds, textures, seed: int):
        self.catalogue, self.table, self.textures, self.seed = catalogue, table, textures, seed
        self.transform = transform(kinds, catalogue.pixels.shape[1])

    def __len__(self):
        return len(self.table)

    def __getitem__(self, rows: slice) -> np.ndarray:
        out = []
        for row in self.table.iloc[rows].itertuples():
            rng = np.random.default_rng([self.seed, row.view_id, row.copy])
            image = np.asarray(self.catalogue.pixels[row.view_id])
            if row.composite:
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
    """Rows of ``table`` the sampler may use for ``kinds``: transformed photos need a photometric or
    geometric kind, cut-outs need ``background``."""
    transformed = bool(set(kinds) & {"photometric", "geometric"})
    return np.where(table["composite"], "background" in kinds, transformed)


@dataclass
class Augmented:
    """Stage ``augment``: feature maps of augmented photos and what each one is."""

    maps: np.ndarray  # (n, C, h, w) float16, memory-mapped
    table: pd.DataFrame  # per row: view_id (the photo it was made from), item_id, copy, composite
    artifact: store.Artifact


def augmented(catalogue, maps_artifact, kinds, copies: int = 1, seed: int = 0, device: str = "cpu"):
    """Stage ``augment`` (cached): trunk feature maps of ``copies`` augmented versions per photo
    (the transforms of ``kinds``; ``background`` does not change what is cached)."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown augmentation kind(s) {unknown}; choose from {', '.join(KINDS)}")
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

