"""VGG-19 feature network: weight sources, frozen, eval mode, normalisation, gradient to the input."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nfinpaint.feature_net import LAYER_INDEX, FeatureWeightsError, VGGFeatures


@pytest.fixture(scope="module")
def random_vgg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VGGFeatures(weights="random")


def test_random_weights_warn_and_are_labelled():
    with pytest.warns(UserWarning, match="UNTRAINED"):
        net = VGGFeatures(weights="random")
    assert net.pretrained is False and "untrained" in net.weights_source
    assert "pretrained=False" in repr(net)


def test_frozen_eval_and_gradient_reaches_input(random_vgg):
    net = random_vgg
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    container = nn.ModuleDict({"vgg": net, "head": nn.Linear(2, 2)}).train()
    assert container["head"].training and not net.training
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 256, 4, 4)
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("layer", sorted(LAYER_INDEX))
def test_layers_truncate_where_named(layer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = VGGFeatures(layer, weights="random")
    last = net.features[-1]
    assert isinstance(last, nn.ReLU if layer.startswith("relu") else nn.Conv2d)
    assert sum(isinstance(m, nn.Conv2d) for m in net.features) == 4 + int(layer[-1])


def test_bad_layer():
    with pytest.raises(ValueError, match="relu3_1"):
        VGGFeatures("relu4_1", weights="random")


def _torchvision_vgg19_features():
    """torchvision's own VGG-19 feature stack (configuration "E"), without the ~500 MB classifier."""
    from torchvision.models import vgg
    return vgg.make_layers(vgg.cfgs["E"], batch_norm=False)


@pytest.fixture(scope="module")
def vgg_state_file(tmp_path_factory):
    # a torchvision vgg19 state_dict's "features.*" entries (what loading needs; the classifier
    # entries of a full file are ignored), built without a download
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in _torchvision_vgg19_features().state_dict().items()}
    state["classifier.0.bias"] = torch.zeros(4096)       # ignored, as in a full file
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path, state


def test_loads_state_dict_file_and_matches_torchvision(vgg_state_file):
    path, state = vgg_state_file
    net = VGGFeatures("relu3_3", weights=str(path))
    assert net.pretrained is True and net.weights_source == f"file:{path.resolve()}"
    reference = _torchvision_vgg19_features()
    reference.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    reference = reference[:LAYER_INDEX["relu3_3"] + 1]
    x = torch.rand(2, 3, 24, 24)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(net(x), reference((x - mean) / std), atol=1e-5, rtol=1e-5)
    # the layer index is torchvision's: the reference ends in the same ReLU after conv3_3
    assert isinstance(reference[-1], nn.ReLU) and isinstance(reference[-2], nn.Conv2d)


def test_bad_files(tmp_path):
    with pytest.raises(FeatureWeightsError, match="does not exist.*--feature-weights"):
        VGGFeatures(weights=str(tmp_path / "nope.pth"))
    with pytest.raises(FeatureWeightsError, match="is a folder, not a file.*--feature-weights"):
        VGGFeatures(weights=str(tmp_path))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(FeatureWeightsError, match="missing"):
        VGGFeatures(weights=str(wrong))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(FeatureWeightsError, match="not a readable VGG-19 weights file"):
        VGGFeatures(weights=str(garbage))


def test_entries_that_are_not_tensors_or_not_finite_are_refused_in_one_line(tmp_path, vgg_state_file):
    """A list in place of a tensor was an AttributeError traceback; a NaN loaded silently, and training
    then stopped at step 1 blaming its learning rate."""
    _, state = vgg_state_file
    keys = [k for k in state if k.startswith("features.") and int(k.split(".")[1]) <= 11]
    key = keys[np.random.randint(len(keys))]
    listed = dict(state, **{key: state[key].tolist()})
    torch.save(listed, tmp_path / "lists.pth")
    with pytest.raises(FeatureWeightsError, match=rf"{key} is a list, not a tensor"):
        VGGFeatures(weights=str(tmp_path / "lists.pth"))
    for bad in (float("nan"), float("inf")):
        spoiled = {k: v.clone() for k, v in state.items()}
        spoiled[key].view(-1)[np.random.randint(spoiled[key].numel())] = bad
        torch.save(spoiled, tmp_path / "spoiled.pth")
        with pytest.raises(FeatureWeightsError, match=rf"not finite \(NaN or inf\) in \['{key}'\]"):
            VGGFeatures(weights=str(tmp_path / "spoiled.pth"))


def test_wrong_shapes(tmp_path, vgg_state_file):
    _, state = vgg_state_file
    bad = dict(state)
    bad["features.10.weight"] = torch.zeros(128, 128, 3, 3)
    path = tmp_path / "shapes.pth"
    torch.save(bad, path)
    with pytest.raises(FeatureWeightsError, match="does not fit"):
        VGGFeatures(weights=str(path))


def test_imagenet_failure_says_what_to_do(monkeypatch):
    def offline():
        raise OSError("no network here")
    from torchvision.models import VGG19_Weights
    monkeypatch.setattr(type(VGG19_Weights.IMAGENET1K_V1), "get_state_dict",
                        lambda self, *a, **k: offline())
    with pytest.raises(RuntimeError, match="no network here.*--feature-weights PATH.*--feature-weights rotation.*--feature-weights random"):
        VGGFeatures(weights="imagenet")


def test_compiles_channels_last_without_graph_breaks(random_vgg):
    x = torch.rand(1, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(random_vgg, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), random_vgg(x), atol=1e-5, rtol=1e-5)
