"""Rendering product views with pybullet's CPU TinyRenderer, and turning them into photos.

*Catalogue views* show the product in a canonical pose on white, tightly cropped, like a shop's
product image. *Query views* imitate a shopper's photo: any viewpoint, a textured background,
random light, a loose and off-centre crop, sometimes something in front of the product, blur and
sensor noise. Every random choice comes from a generator seeded per image, so a view is the same
whatever order (or process) renders it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageFilter

from ..config import with_overrides

# pybullet's shared-memory commands cap the vertices of one uploaded mesh; bigger parts are split.
MAX_VERTICES = 60_000


@dataclass(frozen=True)
class RenderConfig:
    """Every knob of view synthesis (kit choices; override any of them with ``RENDER={...}``)."""

    image_size: int = 128  # output side in pixels
    render_size: int = 192  # pybullet renders at this side, then the crop is resized
    fov: float = 40.0  # camera field of view, degrees
    catalog_yaw: float = 30.0  # canonical pose: degrees around the object, 0 = front
    catalog_pitch: float = 20.0  # degrees above the horizon
    catalog_margin: float = 0.06  # white border around the product, fraction of the side
    query_pitch: tuple[float, float] = (0.0, 60.0)  # shopper's elevation range, degrees
    query_distance: tuple[float, float] = (1.0, 1.5)  # camera distance range, × the fitting distance
    query_roll: float = 10.0  # max camera roll, degrees
    crop_scale: tuple[float, float] = (1.1, 1.7)  # crop side / object box side
    crop_shift: float = 0.15  # max crop-centre offset, fraction of the crop side
    backgrounds: tuple[str, ...] = (
        "grass", "brick", "gravel", "camera", "motorcycle", "rocket", "coffee",
        "wood", "turf", "tray",
    )
    light_ambient: tuple[float, float] = (0.35, 0.75)  # TinyRenderer ambient coefficient range
    light_diffuse: tuple[float, float] = (0.35, 0.75)
    light_specular: tuple[float, float] = (0.0, 0.4)
    occlusion_prob: float = 0.4  # share of query views with an occluder
    occlusion_max: float = 0.35  # largest share of the object box an occluder covers
    blur_max: float = 1.2  # largest Gaussian blur sigma, output pixels
    noise_max: float = 8.0  # largest sensor-noise std, in 0..255 units
    colour_jitter: float = 0.15  # brightness / contrast / white-balance jitter
    # Held-out conditions. Each of the five FACTORS has a *training* family (the fields above: the
    # only one any training photo uses), a *validation* family (for choosing robustness settings)
    # and a *test* family, disjoint from both. Tuples read (training, validation, test).
    val_backgrounds: tuple[str, ...] = ("astronaut", "hubble", "jenga", "checker")
    test_backgrounds: tuple[str, ...] = ("chelsea", "cells", "coins", "domino")
    lighting: tuple[str, str, str] = ("random", "tinted", "low_key")  # regimes, see LIGHTING
    val_camera: tuple[float, float, float, float] = (-10.0, 5.0, 1.5, 2.0)  # pitch range, distance range
    test_camera: tuple[float, float, float, float] = (60.0, 85.0, 0.8, 1.0)  # top-down and close
    occluders: tuple[str, str, str] = ("block", "bar", "disc")  # kinds, see OCCLUDERS
    effects: tuple[str, str, str] = ("blur_noise", "jpeg", "motion_vignette")  # see EFFECTS
    heldout_views: int = 2  # photos per SKU with every factor held out, in each held-out family
    factor_views: int = 1  # photos per SKU and held-out family with one factor switched, per factor

    @classmethod
    def from_overrides(cls, overrides: dict | None) -> RenderConfig:
        """A config with some fields replaced; an unknown field name is an error naming the valid ones."""
        cfg = with_overrides(cls, overrides, "RENDER")
        for field, kinds in (("lighting", LIGHTING), ("occluders", OCCLUDERS), ("effects", EFFECTS)):
            unknown = [k for k in getattr(cfg, field) if k not in kinds]
            if unknown or len(getattr(cfg, field)) != 3:
                raise ValueError(f"RENDER {field} needs three of {', '.join(kinds)} "
                                 f"(training, validation, test), got {getattr(cfg, field)}")
        if cfg.heldout_views < 0 or cfg.factor_views < 0:
            raise ValueError("RENDER heldout_views and factor_views must be >= 0")
        return cfg

    def backgrounds_of(self, family: str) -> tuple[str, ...]:
        return {"train": self.backgrounds, "val": self.val_backgrounds, "test": self.test_backgrounds}[family]

    def camera_of(self, family: str):
        """(pitch range, distance range) of a camera family."""
        if family == "train":
            return self.query_pitch, self.query_distance
        lo, hi, near, far = self.val_camera if family == "val" else self.test_camera
        return (lo, hi), (near, far)

    def kind_of(self, factor: str, family: str) -> str:
        """The lighting regime / occluder / effect kind a family uses."""
        return getattr(self, {"occluder": "occluders"}.get(factor, factor))[FAMILIES.index(family)]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- backgrounds


def _skimage(name):
    import skimage.data

    return lambda: getattr(skimage.data, name)()


def _pybullet(rel):
    def load():
        import pybullet_data

        return np.asarray(Image.open(f"{pybullet_data.getDataPath()}/{rel}").convert("RGB"))

    return load


# Textures and photos that ship inside installed packages (nothing is downloaded). The first ten
# are the training family; the rest serve only held-out photos.
BACKGROUNDS = {
    "grass": _skimage("grass"),
    "brick": _skimage("brick"),
    "gravel": _skimage("gravel"),
    "camera": _skimage("camera"),
    "motorcycle": lambda: __import__("skimage.data").data.stereo_motorcycle()[0],
    "rocket": _skimage("rocket"),
    "coffee": _skimage("coffee"),
    "wood": _pybullet("table/table.png"),
    "turf": _pybullet("roboschool/models_outdoor/stadium/stadium_grass.jpg"),
    "tray": _pybullet("tray/tray.jpg"),
    "astronaut": _skimage("astronaut"),
    "hubble": _skimage("hubble_deep_field"),
    "jenga": _pybullet("jenga/jenga.png"),
    "checker": _pybullet("checker_grid.jpg"),
    "chelsea": _skimage("chelsea"),
    "cells": _skimage("immunohistochemistry"),
    "coins": _skimage("coins"),
    "domino": _pybullet("domino/domino.jpg"),
}

# The five things about a shopper's photo that held-out photos change, and the three families of each.
FACTORS = ("background", "lighting", "camera", "occluder", "effects")
FAMILIES = ("train", "val", "test")


@cache
def background_texture(name: str) -> np.ndarray:
    """A background texture as float RGB (H,W,3) in 0..1."""
    if name not in BACKGROUNDS:
        raise ValueError(f"unknown background {name!r}; available: {', '.join(BACKGROUNDS)}")
    image = np.asarray(BACKGROUNDS[name]())
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3].astype(np.float32) / 255.0


@cache
def _texture_bytes(name: str) -> np.ndarray:
    """The texture as the uint8 image that patches are cut from (once per texture, not per photo:
    converting a whole crop of up to 1000² float pixels was a third of a photo's compositing)."""
    return (background_texture(name) * 255).astype(np.uint8)


def background_patch(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random, randomly scaled, flipped and tinted ``size``×``size`` crop of a texture."""
    texture = _texture_bytes(name)
    h, w = texture.shape[:2]
    side = int(min(h, w) * rng.uniform(0.35, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    patch = Image.fromarray(texture[y : y + side, x : x + side])
    patch = np.asarray(patch.resize((size, size), Image.BILINEAR), np.float32) / 255.0
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    tint = rng.uniform(0.7, 1.3, size=3).astype(np.float32)
    return np.clip(patch * tint, 0, 1)


# --------------------------------------------------------------------------- pybullet


class Renderer:
    """One pybullet connection (``p.DIRECT``, no display) rendering one model at a time."""

    def __init__(self):
        import pybullet as p

        self.p = p
        self.client = p.connect(p.DIRECT)
        self.bodies: list[tuple[int, int]] = []  # (body id, part index)
        self.radius = 1.0

    def load(self, mesh: dict) -> None:
        """Upload a mesh from :func:`ovkit.data.sh3d.load_mesh`, one body per material part."""
        p = self.p
        self.clear()
        v, n, f, part = mesh["vertices"], mesh["normals"], mesh["faces"], mesh["part"]
        self.radius = float(np.linalg.norm(v.max(0) - v.min(0)) / 2) or 1.0
        for index in range(len(mesh["colours"])):
            part_faces = f[part == index]
            for chunk in _chunks(part_faces):
                used, local = np.unique(chunk, return_inverse=True)
                shape = p.createVisualShape(
                    p.GEOM_MESH,
                    vertices=v[used].tolist(),
                    normals=n[used].tolist(),
                    indices=local.astype(np.int32).ravel().tolist(),
                    physicsClientId=self.client,
                )
                if shape < 0:
                    raise RuntimeError("pybullet refused a mesh part")
                body = p.createMultiBody(baseVisualShapeIndex=shape, physicsClientId=self.client)
                self.bodies.append((body, index))

    def set_colours(self, colours: np.ndarray) -> None:
        """Per-part RGBA colours (P,4), e.g. one colourway."""
        for body, index in self.bodies:
            rgba = [float(c) for c in colours[index][:3]] + [1.0]
            self.p.changeVisualShape(body, -1, rgbaColor=rgba, physicsClientId=self.client)

    def render(self, size, fov, yaw, pitch, light, distance=1.0, roll=0.0):
        """Render the loaded model; returns RGB (size,size,3) uint8 and the object mask (size,size).

        ``light`` must set every light argument: TinyRenderer keeps the previous call's light for
        any left out, which would make a view depend on the view rendered before it.
        """
        p = self.p
        dist = self.radius / np.tan(np.radians(fov) / 2) * distance
        # pybullet's yaw 0 looks along +y; the models' fronts face -y, so turn the camera round.
        view = p.computeViewMatrixFromYawPitchRoll([0, 0, 0], dist, yaw + 180.0, -pitch, roll, 2)
        proj = p.computeProjectionMatrixFOV(fov, 1.0, dist * 0.05, dist * 4)
        _, _, rgba, _, seg = p.getCameraImage(
            size, size, view, proj, renderer=p.ER_TINY_RENDERER, shadow=0,
            physicsClientId=self.client, **light,
        )
        rgba = np.reshape(np.asarray(rgba, np.uint8), (size, size, 4))
        mask = np.reshape(np.asarray(seg), (size, size)) >= 0
        return rgba[..., :3].copy(), mask

    def clear(self) -> None:
        if self.bodies:
            self.p.resetSimulation(physicsClientId=self.client)
            self.bodies = []

    def close(self) -> None:
        self.p.disconnect(self.client)


def _chunks(faces: np.ndarray):
    """Split a face array so that no chunk references more than MAX_VERTICES vertices."""
    step = max(1, MAX_VERTICES // 3)
    for start in range(0, len(faces), step):
        yield faces[start : start + step]


# --------------------------------------------------------------------------- views


def _box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _square_crop(image: np.ndarray, cx: float, cy: float, side: float, out: int) -> np.ndarray:
    """Crop a square (kept inside the image when it fits) and resize it to ``out`` pixels."""
    h, w = image.shape[:2]
    side = min(side, h, w)
    x0 = float(np.clip(cx - side / 2, 0, w - side))
    y0 = float(np.clip(cy - side / 2, 0, h - side))
    pil = Image.fromarray(image)
    return np.asarray(pil.resize((out, out), Image.LANCZOS, box=(x0, y0, x0 + side, y0 + side)))


# A fixed studio light for catalogue views (kit choice: from above-left-front, soft shadows).
STUDIO_LIGHT = {
    "lightDirection": [-1.0, -1.5, 2.5], "lightColor": [1.0, 1.0, 1.0],
    "lightAmbientCoeff": 0.6, "lightDiffuseCoeff": 0.5, "lightSpecularCoeff": 0.1,
}


def catalog_view(renderer: Renderer, cfg: RenderConfig) -> np.ndarray | None:
    """The canonical product image: fixed pose, white background, tight crop. None if empty."""
    rgb, mask = renderer.render(cfg.render_size, cfg.fov, cfg.catalog_yaw, cfg.catalog_pitch, STUDIO_LIGHT)
    if mask.sum() < 20:
        return None
    rgb = np.where(mask[..., None], rgb, 255).astype(np.uint8)
    x0, y0, x1, y1 = _box(mask)
    side = max(x1 - x0, y1 - y0) / (1 - 2 * cfg.catalog_margin)
    return _pad_crop(rgb, (x0 + x1) / 2, (y0 + y1) / 2, side, cfg.image_size, fill=255)


def _pad_crop(image, cx, cy, side, out, fill):
    """Square crop that may extend past the image (padded with ``fill``), resized to ``out``."""
    pad = int(np.ceil(side))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    return _square_crop(padded, cx + pad, cy + pad, side, out)


def icon_view(icon: Image.Image, cfg: RenderConfig) -> np.ndarray | None:
    """The model's real catalogue icon (an RGBA image) on white, cropped like a catalogue view."""
    rgba = np.asarray(icon.convert("RGBA"))
    mask = rgba[..., 3] > 16
    if mask.sum() < 20:
        return None
    alpha = rgba[..., 3:4] / 255.0
    rgb = (rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    x0, y0, x1, y1 = _box(mask)
    side = max(x1 - x0, y1 - y0) / (1 - 2 * cfg.catalog_margin)
    return _pad_crop(rgb, (x0 + x1) / 2, (y0 + y1) / 2, side, cfg.image_size, fill=255)


def query_view(renderer: Renderer, cfg: RenderConfig, rng: np.random.Generator,
               families: dict[str, str] | None = None):
    """A shopper's photo of the loaded model. Returns (image uint8, facts dict) or None if empty.

    ``families`` maps factors (:data:`FACTORS`) to ``"val"`` or ``"test"`` for held-out photos;
    the rest use the training family (a photo with no held-out factor draws the same numbers in
    the same order as before held-out families existed, so it is the same photo).
    """
    family = {factor: "train" for factor in FACTORS} | (families or {})
    yaw = float(rng.uniform(0, 360))
    pitch_range, distance_range = cfg.camera_of(family["camera"])
    pitch = float(rng.uniform(*pitch_range))
    light = LIGHTING[cfg.kind_of("lighting", family["lighting"])](cfg, rng)
    rgb, mask = renderer.render(
        cfg.render_size, cfg.fov, yaw, pitch, light,
        distance=float(rng.uniform(*distance_range)),
        roll=float(rng.uniform(-cfg.query_roll, cfg.query_roll)),
    )
    if mask.sum() < 20:
        return None
    size = cfg.render_size
    textures = cfg.backgrounds_of(family["background"])
    background = str(rng.choice(textures))
    canvas = background_patch(background, size, rng)
    # Soften the mask edge by a pixel: TinyRenderer has no anti-aliasing.
    soft = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(0.7)))
    alpha = (soft.astype(np.float32) / 255.0)[..., None]
    canvas = canvas * (1 - alpha) + (rgb.astype(np.float32) / 255.0) * alpha

    x0, y0, x1, y1 = _box(mask)
    occluded = 0.0
    if rng.random() < cfg.occlusion_prob:
        occlude = OCCLUDERS[cfg.kind_of("occluder", family["occluder"])]
        canvas, occluded = occlude(canvas, mask, (x0, y0, x1, y1), cfg, rng, textures)

    box_side = max(x1 - x0, y1 - y0)
    side = box_side * rng.uniform(*cfg.crop_scale)
    cx = (x0 + x1) / 2 + rng.uniform(-cfg.crop_shift, cfg.crop_shift) * side
    cy = (y0 + y1) / 2 + rng.uniform(-cfg.crop_shift, cfg.crop_shift) * side
    image = _square_crop((canvas * 255).astype(np.uint8), cx, cy, side, cfg.image_size)

    image = EFFECTS[cfg.kind_of("effects", family["effects"])](image.astype(np.float32), cfg, rng)
    facts = {"yaw": yaw, "pitch": pitch, "background": background, "occlusion": occluded}
    return image, facts


# --------------------------------------------------------------------------- lighting regimes


def _random_light(cfg, rng):
    """Training regime: near-white light from above at a random angle, coefficients in cfg's ranges."""
    return {
        "lightDirection": [float(x) for x in rng.normal(size=3) + np.array([0, 0, 1.5])],
        "lightColor": [float(x) for x in rng.uniform(0.85, 1.0, size=3)],
        "lightAmbientCoeff": float(rng.uniform(*cfg.light_ambient)),
        "lightDiffuseCoeff": float(rng.uniform(*cfg.light_diffuse)),
        "lightSpecularCoeff": float(rng.uniform(*cfg.light_specular)),
    }


def _tinted_light(cfg, rng):
    """Coloured light (tungsten, neon, shop LEDs): one channel strong, the others 45–100% of it."""
    light = _random_light(cfg, rng)
    colour = rng.uniform(0.45, 1.0, size=3)
    light["lightColor"] = [float(x) for x in colour / colour.max()]
    return light


def _low_key_light(cfg, rng):
    """Dim room, one hard light from the side: little ambient, strong diffuse and specular."""
    side = rng.normal(size=2)
    direction = np.array([*(side / np.linalg.norm(side) * 2.0), rng.uniform(-0.3, 0.6)])
    return {
        "lightDirection": [float(x) for x in direction],
        "lightColor": [float(x) for x in rng.uniform(0.85, 1.0, size=3)],
        "lightAmbientCoeff": float(rng.uniform(0.1, 0.25)),
        "lightDiffuseCoeff": float(rng.uniform(0.6, 0.9)),
        "lightSpecularCoeff": float(rng.uniform(0.3, 0.7)),
    }


LIGHTING = {"random": _random_light, "tinted": _tinted_light, "low_key": _low_key_light}


# --------------------------------------------------------------------------- occluders


def _block(canvas, mask, box, cfg, rng, textures):
    """Training kind: a textured block entering from one side of the object's box."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    share = rng.uniform(0.1, cfg.occlusion_max)
    side = int(rng.integers(4))
    if side in (0, 1):  # from the left or the right: full height, partial width
        cut = max(1, int(round(w * share)))
        xs = (x0, x0 + cut) if side == 0 else (x1 - cut, x1)
        ys = (y0, y1)
    else:  # from the top or the bottom
        cut = max(1, int(round(h * share)))
        ys = (y0, y0 + cut) if side == 2 else (y1 - cut, y1)
        xs = (x0, x1)
    patch = background_patch(str(rng.choice(textures)), canvas.shape[0], rng)
    cover = np.zeros(mask.shape, bool)
    cover[ys[0] : ys[1], xs[0] : xs[1]] = True
    return _paste(canvas, mask, cover, patch)


def _bar(canvas, mask, box, cfg, rng, textures):
    """A plain dark or light bar (a shelf edge, a strap, a pole) across the object at any angle."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    angle = rng.uniform(0, np.pi)
    centre = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
    width = max(x1 - x0, y1 - y0) * rng.uniform(0.05, cfg.occlusion_max / 2)
    distance = np.abs((xx - centre[0]) * np.sin(angle) - (yy - centre[1]) * np.cos(angle))
    colour = np.full(3, rng.choice([rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95)]), np.float32)
    colour = np.broadcast_to(colour * rng.uniform(0.8, 1.2, 3), canvas.shape)
    return _paste(canvas, mask, distance < width / 2, colour)


def _disc(canvas, mask, box, cfg, rng, textures):
    """A skin-toned ellipse over one edge of the object: a shopper's thumb or hand."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    side = max(x1 - x0, y1 - y0)
    radius = side * np.sqrt(rng.uniform(0.1, cfg.occlusion_max)) * rng.uniform(0.7, 1.3, 2) / 1.5
    t = rng.uniform(0, 2 * np.pi)
    centre = ((x0 + x1) / 2 + np.cos(t) * (x1 - x0) / 2, (y0 + y1) / 2 + np.sin(t) * (y1 - y0) / 2)
    inside = ((xx - centre[0]) / radius[0]) ** 2 + ((yy - centre[1]) / radius[1]) ** 2 < 1
    skin = np.array([0.87, 0.67, 0.55], np.float32) * rng.uniform(0.55, 1.1)
    return _paste(canvas, mask, inside, np.broadcast_to(np.clip(skin, 0, 1), canvas.shape))


def _paste(canvas, mask, cover, patch):
    """``patch`` over ``canvas`` where ``cover``; returns (canvas, share of the object covered)."""
    canvas = np.where(cover[..., None], patch, canvas)
    return canvas, float((cover & mask).sum() / max(mask.sum(), 1))


OCCLUDERS = {"block": _block, "bar": _bar, "disc": _disc}


# --------------------------------------------------------------------------- photo effects


def _jitter(image: np.ndarray, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and white balance jitter (every effect family starts with it)."""
    j = cfg.colour_jitter
    mean = image.mean()
    image = (image - mean) * rng.uniform(1 - j, 1 + j) + mean * rng.uniform(1 - j, 1 + j)
    image = image * rng.uniform(1 - j / 2, 1 + j / 2, size=3)
    return np.clip(image, 0, 255).astype(np.uint8)


def _blur_noise(image: np.ndarray, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """Training kind: jitter, then Gaussian blur and sensor noise."""
    image = _jitter(image, cfg, rng)
    sigma = rng.uniform(0, cfg.blur_max)
    if sigma > 0.05:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))
    noise = rng.normal(0, rng.uniform(0, cfg.noise_max), size=image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """A low-resolution, heavily compressed upload: downscale, JPEG quality 10–30, upscale."""
    import io

    pil = Image.fromarray(_jitter(image, cfg, rng))
    small = max(16, int(cfg.image_size * rng.uniform(0.4, 0.7)))
    buffer = io.BytesIO()
    pil.resize((small, small), Image.BILINEAR).save(buffer, "JPEG", quality=int(rng.integers(10, 31)))
    return np.asarray(Image.open(buffer).convert("RGB").resize((cfg.image_size,) * 2, Image.BILINEAR))


def _motion_vignette(image: np.ndarray, cfg: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """A shaky hand and a cheap lens: motion blur along a random direction, dark corners."""
    from scipy import ndimage

    image = _jitter(image, cfg, rng).astype(np.float32)
    length, angle = int(rng.integers(5, 12)), rng.uniform(0, 180)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0
    kernel = ndimage.rotate(kernel, angle, reshape=False, order=1)
    kernel /= kernel.sum()
    image = np.stack([ndimage.convolve(image[..., c], kernel, mode="nearest") for c in range(3)], -1)
    yy, xx = np.mgrid[-1 : 1 : image.shape[0] * 1j, -1 : 1 : image.shape[1] * 1j]
    image *= (1 - rng.uniform(0.3, 0.6) * np.clip((xx**2 + yy**2) / 2, 0, 1))[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


EFFECTS = {"blur_noise": _blur_noise, "jpeg": _jpeg, "motion_vignette": _motion_vignette}
