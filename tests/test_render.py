"""Rendering helpers that need no 3D model: background patches and the render settings."""

import numpy as np
import pytest

from ovkit.data import RenderConfig, render


def test_background_patches_are_seeded_crops_in_range():
    a = render.background_patch("brick", 48, np.random.default_rng(1))
    b = render.background_patch("brick", 48, np.random.default_rng(1))
    c = render.background_patch("brick", 48, np.random.default_rng(2))
    assert a.shape == (48, 48, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="unknown background 'lava'"):
        render.background_texture("lava")


def _patch_from_float_texture(name, size, rng):
    """background_patch as first written: each crop converted from the float texture."""
    from PIL import Image

    texture = render.background_texture(name)
    h, w = texture.shape[:2]
    side = int(min(h, w) * rng.uniform(0.35, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    patch = Image.fromarray((texture[y : y + side, x : x + side] * 255).astype(np.uint8))
    patch = np.asarray(patch.resize((size, size), Image.BILINEAR), np.float32) / 255.0
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.clip(patch * rng.uniform(0.7, 1.3, size=3).astype(np.float32), 0, 1)


@pytest.mark.parametrize("name", ["brick", "hubble", "wood"])
def test_patches_cut_from_cached_bytes_equal_crops_of_the_float_texture(name):
    """Converting each texture once changed no pixel of any photo (the catalogue stays the same)."""
    for seed in range(5):
        np.testing.assert_array_equal(render.background_patch(name, 96, np.random.default_rng(seed)),
                                      _patch_from_float_texture(name, 96, np.random.default_rng(seed)))


def test_render_settings_check_names_types_and_tuples():
    cfg = RenderConfig.from_overrides({"query_pitch": [0, 30], "occlusion_prob": 0})
    assert cfg.query_pitch == (0, 30) and cfg.occlusion_prob == 0
    cases = (({"query_pitch": [0, 30, 60]}, r"query_pitch=\[0, 30, 60\] is not tuple\[float, float\]"),
             ({"occlusion_prob": "high"}, "occlusion_prob='high' is not float"),
             ({"occlusion": 0.5}, r"unknown RENDER setting\(s\) \['occlusion'\]"))
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            RenderConfig.from_overrides(bad)


def test_heldout_families_are_checked_and_disjoint():
    cfg = RenderConfig()
    assert not set(cfg.backgrounds) & set(cfg.val_backgrounds + cfg.test_backgrounds)
    assert not set(cfg.val_backgrounds) & set(cfg.test_backgrounds)
    assert len({cfg.kind_of(f, fam) for fam in render.FAMILIES for f in ("lighting",)}) == 3
    assert cfg.camera_of("train") == (cfg.query_pitch, cfg.query_distance)
    assert cfg.camera_of("test") == ((60.0, 85.0), (0.8, 1.0))
    for name in cfg.val_backgrounds + cfg.test_backgrounds:  # every texture ships in a package
        assert render.background_texture(name).shape[2] == 3
    with pytest.raises(ValueError, match="RENDER occluders needs three of block, bar, disc"):
        RenderConfig.from_overrides({"occluders": ["block", "bar", "hand"]})


@pytest.mark.parametrize("kind", list(render.EFFECTS))
def test_photo_effects_are_seeded_and_keep_the_image_shape(kind):
    cfg = RenderConfig(image_size=32)
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.float32)
    a = render.EFFECTS[kind](image, cfg, np.random.default_rng(1))
    b = render.EFFECTS[kind](image, cfg, np.random.default_rng(1))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", list(render.OCCLUDERS))
def test_occluders_cover_part_of_the_object_and_report_it(kind):
    mask = np.zeros((48, 48), bool)
    mask[12:36, 12:36] = True
    canvas = np.zeros((48, 48, 3), np.float32)
    occlude = render.OCCLUDERS[kind]
    box, cfg = (12, 12, 36, 36), RenderConfig()
    covered = [occlude(canvas, mask, box, cfg, np.random.default_rng(s), ("brick",))[1] for s in range(10)]
    assert all(0 <= c <= 1 for c in covered) and max(covered) > 0
