"""Self-supervised feature weights: rotation batches, batch-norm folding, unit scale, a run that learns,
the file the loss network loads, and the copy that ships."""
import warnings

import pytest
import torch
from PIL import Image

from nfinpaint import feature_net, feature_pretrain
from nfinpaint.feature_net import LAYER_INDEX, FeatureWeightsError, VGGFeatures
from nfinpaint.feature_pretrain import PretrainConfig, RotationNet


def test_rotations_are_the_four_quarter_turns_in_label_order():
    crops = torch.rand(3, 3, 8, 8)
    turned, labels = feature_pretrain.rotations(crops)
    assert turned.shape == (12, 3, 8, 8) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for i in range(12):
        k, n = divmod(i, 3)
        expected = crops[n]
        for _ in range(k):              # one quarter turn counter-clockwise: transpose, then flip rows
            expected = expected.transpose(1, 2).flip(1)
        torch.testing.assert_close(turned[i], expected, rtol=0, atol=0)


def test_rotation_labels_are_on_the_crops_device():
    """The labels were made on the CPU: accuracy() compared them with a GPU model's predictions, and
    `feature_pretrain --device cuda` failed at its first validation ("meta" stands in for the GPU)."""
    turned, labels = feature_pretrain.rotations(torch.empty(2, 3, 8, 8, device="meta"))
    assert turned.device == labels.device == torch.device("meta")


def _with_trained_statistics(seed: int) -> RotationNet:
    torch.manual_seed(seed)
    model = RotationNet()
    for m in model.features:
        if isinstance(m, torch.nn.BatchNorm2d):     # statistics and affine far from the identity
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def test_folded_features_equal_the_trunk_with_batch_norm():
    model = _with_trained_statistics(seed=int(torch.randint(0, 10**6, ())))
    plain = model.vgg_features()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain)
    assert list(plain.state_dict()) == list(feature_net.vgg19_layers(LAYER_INDEX["relu3_1"]).state_dict())
    x = torch.rand(2, 3, 20, 20)
    mean = torch.tensor(feature_net.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(feature_net.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(plain((x - mean) / std), model.trunk(x), rtol=1e-4, atol=1e-4)


def test_unit_scale_makes_relu3_1_unit_mean_square_and_only_rescales():
    plain = _with_trained_statistics(seed=1).vgg_features()
    crops, other = torch.rand(8, 3, 16, 16), torch.rand(2, 3, 16, 16)
    mean = torch.tensor(feature_net.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(feature_net.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        before = plain(other)
        factor = feature_pretrain.unit_scale(plain, (crops - mean) / std)
        energy = plain((crops - mean) / std).pow(2).mean()
        torch.testing.assert_close(plain(other), before * factor, rtol=1e-4, atol=1e-6)
    assert factor > 0 and abs(energy.item() - 1.0) < 1e-4


class _Gradients:
    """Training crops whose orientation is plain to see: bright at the top, dark at the bottom,
    with noise; a rotation-predicting network should learn them quickly."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed

    def crops(self, items: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + int(items[0]))
        n, s = items.numel(), self.size
        ramp = torch.linspace(1, 0, s).view(1, 1, s, 1).expand(n, 3, s, s)
        return (0.7 * ramp + 0.3 * torch.rand(n, 3, s, s, generator=g)).contiguous()


def test_pretraining_learns_the_rotation_and_returns_unit_scaled_vgg_layers():
    seed = int(torch.randint(0, 10**6, ()))
    config = PretrainConfig(batch_size=8, steps=40, lr=3e-3, seed=seed)
    val = _Gradients(16, seed + 1).crops(torch.tensor([10**7] * 16))
    features, report = feature_pretrain.pretrain(config, _Gradients(16, seed), val, device=torch.device("cpu"),
                                                 amp="none", log=lambda line: None)
    assert report["val_accuracy"] > 0.6          # chance is 0.25
    assert len(report["history"]) == 10 and report["conv3_1_rescale"] > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in features)


def test_command_writes_a_file_the_loss_network_loads(tmp_path):
    for split, count in (("train", 2), ("val", 1)):
        (tmp_path / split).mkdir()
        for k in range(count):
            pixels = torch.randint(0, 256, (80, 96, 3), dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / split / f"{k}.png")
    out = tmp_path / "weights" / "rotation.pt"
    code = feature_pretrain.main(["--data", tmp_path / "train", "--val-data", tmp_path / "val", "-o", out,
                                  "--steps", "2", "--batch-size", "2"])
    assert code == 0 and out.is_file() and not list(out.parent.glob(".*tmp*"))
    saved = torch.load(out, weights_only=True)
    assert saved["meta"]["task"].startswith("rotation") and saved["meta"]["config"]["steps"] == 2
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values())
    net = VGGFeatures(weights=str(out))
    assert net.pretrained and torch.isfinite(net(torch.rand(1, 3, 24, 24))).all()


@pytest.mark.parametrize("where", ["train/0.png", "val/new.pt", "train/sub/w.pt"])
def test_command_refuses_to_write_among_its_photographs(tmp_path, capsys, where):
    """-o naming one of the training pictures replaced it with the weights file, and said nothing."""
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        Image.fromarray(torch.randint(0, 256, (80, 96, 3), dtype=torch.uint8).numpy()).save(tmp_path / split / "0.png")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = feature_pretrain.main(["--data", tmp_path / "train", "--val-data", tmp_path / "val", "-o", tmp_path / where,
                                  "--steps", "1", "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "error: -o" in err and "is inside --" in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_command_refuses_bad_settings(tmp_path, capsys):
    code = feature_pretrain.main(["--data", tmp_path, "--val-data", tmp_path, "-o", tmp_path / "w.pt",
                                  "--steps", "0"])
    assert code == 2 and "error: --steps" in capsys.readouterr().err
    code = feature_pretrain.main(["--data", tmp_path, "--val-data", tmp_path, "-o", tmp_path])
    assert code == 2 and f"is a folder; give a file name such as {tmp_path / 'vgg19_conv3.pt'}" in \
        capsys.readouterr().err
    # a seed torch cannot take was a raw OverflowError; a torch archive named .png was written
    for argv, expected in ((["-o", tmp_path / "w.pt", "--seed", str(10 ** 23)], "--seed must be an integer from"),
                           (["-o", tmp_path / "w.png"], "the weights file ends in .pt"),
                           # an unset shell variable was the current folder: "-o . is a folder"
                           (["-o", ""], "-o is empty: give the file to write, such as vgg19_conv3.pt")):
        code = feature_pretrain.main(["--data", tmp_path / "photos", "--val-data", tmp_path / "photos", *argv])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def _photo(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(torch.randint(0, 256, (height, width, 3), dtype=torch.uint8).numpy()).save(path)


BAD_DATA = [  # (arguments, with {tmp} for the test's folder; expected part of the one-line error)
    # the validation folder at fault was blamed on --data ("point --data at a folder of images")
    ("--data {tmp}/train --val-data {tmp}/nosuch", "nosuch: no such folder; point --val-data at a folder of images"),
    ("--data {tmp}/train --val-data {tmp}/empty", "no image files found (looked for"),
    ("--data {tmp}/train --val-data {tmp}/empty", "; point --val-data at a folder of images"),
    ("--data {tmp}/train --val-data {tmp}/junk", "none of the 1 image files could be read; fix or replace them, or "
                                                "point --val-data at another folder"),
    # header readable, pixels not: it said "or train without val_data", an option this command does not have
    ("--data {tmp}/train --val-data {tmp}/truncated", "validation image files could be read (e.g. "),
    ("--data {tmp}/train --val-data {tmp}/truncated", "or point --val-data at another folder"),
    ("--data {tmp}/empty --val-data {tmp}/val", "point --data at a folder of images"),
    # a picture smaller than the crop said "use a smaller image size": this command's is --crop-size
    ("--data {tmp}/train --val-data {tmp}/small", "smaller than the 64x64 crop; remove it from --val-data "),
    ("--data {tmp}/small --val-data {tmp}/val", "smaller than the 64x64 crop; remove it from --data "),
    ("--data {tmp}/train --val-data {tmp}/val --crop-size 90", "smaller than the 90x90 crop"),
    ("--data {tmp}/train --val-data {tmp}/val --crop-size 90", "or use a smaller --crop-size"),
]


@pytest.mark.parametrize("argv, expected", BAD_DATA)
def test_bad_data_is_one_line_naming_the_option_to_change(tmp_path, capsys, argv, expected):
    _photo(tmp_path / "train" / "0.png", 80, 96)
    _photo(tmp_path / "val" / "0.png", 80, 96)
    _photo(tmp_path / "small" / "0.png", 40, 40)
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.png").write_text("not a picture")
    _photo(tmp_path / "truncated" / "0.png", 80, 96)       # its header reads, its pixels do not
    (tmp_path / "truncated" / "0.png").write_bytes((tmp_path / "truncated" / "0.png").read_bytes()[:200])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    args = [*argv.format(tmp=tmp_path).split(), "-o", str(tmp_path / "out" / "w.pt"), "--steps", "1",
            "--batch-size", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # the skipped files' warnings: the error is what is checked
        code = feature_pretrain.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err and err[-1].startswith("error: ") and expected in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "out").exists()


def test_a_batch_too_large_for_memory_is_refused_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    """--batch-size 10000000 read the photographs, then died allocating 160 GB in the first step (a raw
    RuntimeError): training's own memory check now refuses it up front, naming --batch-size."""
    from nfinpaint import config, data  # noqa: PLC0415

    def no_data(*args, **kwargs):
        raise AssertionError("the data were read before the batch size was checked")

    monkeypatch.setattr(data, "build_datasets", no_data)
    _photo(tmp_path / "train" / "0.png", 80, 96)
    _photo(tmp_path / "val" / "0.png", 80, 96)
    code = feature_pretrain.main(["--data", tmp_path / "train", "--val-data", tmp_path / "val",
                                  "-o", tmp_path / "out" / "w.pt", "--batch-size", "10000000", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: --batch-size 10000000 does not fit in memory: ") and \
        "use a smaller --batch-size" in err, err
    assert not (tmp_path / "out").exists()
    # training's floor (ten float32 planes a pixel), each 64x64 crop counted at its 4 rotations
    floor_gib = 10000000 * 4 * 64 * 64 * 10 * 4 / 2 ** 30
    assert f"more than {floor_gib:,.1f} GiB" in err and floor_gib > 6000, err
    assert config.batch_memory_problem(16, 64, "cpu", name="--batch-size", images_per_item=4) is None


def test_shipped_rotation_weights_load_and_say_what_they_are():
    net = VGGFeatures(weights="rotation")
    assert net.pretrained and "rotation" in net.weights_source and "not ImageNet" in net.weights_source
    meta = torch.load(feature_net.ROTATION_FILE, weights_only=True)["meta"]
    assert meta["layer"] == "relu3_1" and meta["val_rotation_accuracy"] > 0.25
    features = net(torch.rand(2, 3, 32, 32))
    assert torch.isfinite(features).all() and features.shape == (2, 256, 8, 8)


def test_rotation_weights_stop_at_conv3_1(monkeypatch, tmp_path):
    with pytest.raises(FeatureWeightsError, match="stop at conv3_1"):
        VGGFeatures("relu3_2", weights="rotation")
    monkeypatch.setattr(feature_net, "ROTATION_FILE", tmp_path / "missing.pt")
    with pytest.raises(FeatureWeightsError, match="lacks the shipped rotation weights.*feature_pretrain"):
        VGGFeatures(weights="rotation")
