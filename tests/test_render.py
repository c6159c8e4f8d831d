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


def test_render_settings_check_names_types_and_tuples():
    cfg = RenderConfig.from_overrides({"query_pitch": [0, 30], "occlusion_prob": 0})
    assert cfg.query_pitch == (0, 30) and cfg.occlusion_prob == 0
    cases = (({"query_pitch": [0, 30, 60]}, r"query_pitch=\[0, 30, 60\] is not tuple\[float, float\]"),
             ({"occlusion_prob": "high"}, "occlusion_prob='high' is not float"),
             ({"occlusion": 0.5}, r"unknown RENDER setting\(s\) \['occlusion'\]"))
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            RenderConfig.from_overrides(bad)
