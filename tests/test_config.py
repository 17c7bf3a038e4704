"""Training configuration: presets, TOML round trip, precedence, clear errors."""
import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from nfinpaint import config, networks
from nfinpaint.objective import Objective
from nfinpaint.config import PRESETS, ConfigError, TrainConfig, load_config, to_toml


def test_paper_preset_is_the_papers_setting():
    paper = PRESETS["paper"]
    assert (paper.image_size, paper.hole_size) == (24, 8)
    assert (paper.adv_global_weight, paper.adv_local_weight, paper.feature_weight) == (200.0, 200.0, 0.05)
    assert (paper.lr, paper.beta1) == (2e-4, 0.5)
    assert paper.train_masks == "center"
    # the paper's objective on per-image sums, as the objective reads it
    objective = Objective.from_config(paper)
    assert objective.loss_weights() == {"l2": 1, "adv_global": 200, "adv_local": 200, "feature": 0.05,
                                        "reduction": "image_sum"}
    assert (objective.l2_form, objective.feature_form, objective.feature_region) == ("mse", "plain", "image")


def test_the_default_config_is_the_default_preset():
    # one set of defaults: the dataclass's fields are the default preset, the objective has none of its own
    assert TrainConfig() == PRESETS["default"]
    assert dataclasses.asdict(load_config()) == dataclasses.asdict(TrainConfig())


@pytest.mark.parametrize("name, sizes", [("paper", (24, 8, 12)), ("paper64", (64, 22, 32))])
def test_paper_presets_geometry(name, sizes):
    cfg = PRESETS[name]
    assert (cfg.image_size, cfg.hole_size, cfg.local_patch_size) == sizes


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_buildable(name):
    cfg = PRESETS[name].validate()
    assert cfg.preset == name
    networks.generator_stages(cfg.image_size)  # raises for a size the generator cannot take
    assert cfg.g_warmup_steps + cfg.d_warmup_steps < cfg.steps


def test_toml_round_trip_and_versions_table_ignored(tmp_path):
    cfg = dataclasses.replace(PRESETS["paper"], steps=123, data='/srv/C:\\a "quoted" dir', feature_weights="random")
    text = to_toml(cfg, versions={"torch": "2.x", "nfinpaint._C": "CPU,CUDA"}, header="hello\nworld")
    parsed = tomllib.loads(text)
    assert parsed["versions"]["nfinpaint._C"] == "CPU,CUDA"
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert load_config(None, path) == cfg


def test_picture_folders_are_recorded_absolute(tmp_path, monkeypatch):
    """A relative --data was kept as typed: a run resumed from another working folder then trained on
    whatever folder of that name was there."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, None, {"data": "photos", "val_data": "~/held out"})
    assert cfg.data == str(tmp_path / "photos")
    assert cfg.val_data == str(Path("~/held out").expanduser())
    assert load_config(None, None, {}).data == ""            # the embedded set stays the embedded set


def test_toml_reads_back_with_every_control_character(tmp_path):
    # a path may hold any character but NUL and "/"; the file must still read back
    weird = "".join(chr(c) for c in range(1, 32)) + "\x7f\\\"'" + chr(0x2028) + "é"
    cfg = dataclasses.replace(PRESETS["default"], data=f"/tmp/{weird}", val_data=f"/v/{weird}")
    path = tmp_path / "config.toml"
    path.write_text(to_toml(cfg, versions={weird: weird}, header=f"run in {weird}"))
    assert load_config(None, path) == cfg
    assert tomllib.loads(path.read_text())["versions"] == {weird: weird}


def test_precedence_preset_then_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "paper"\nsteps = 77\nbatch_size = 5\nlr = 1\n')
    cfg = load_config(None, path, {"batch_size": 9})
    assert (cfg.preset, cfg.image_size, cfg.steps, cfg.batch_size) == ("paper", 24, 77, 9)
    assert isinstance(cfg.lr, float) and cfg.lr == 1.0  # TOML int accepted for a float key
    # an explicit preset wins over the file's
    assert load_config("paper64", path).image_size == 64
    assert load_config().preset == "default"


def test_unknown_key_is_a_clear_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("stpes = 10\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'stpes' in .*c.toml"):
        load_config(None, path)
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        load_config("default", None, {"nope": 1})
    path.write_text("[train]\nsteps = 1\n")
    with pytest.raises(ConfigError, match=r"unknown config table \[train\]"):
        load_config(None, path)


def test_bad_values_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        load_config("fast")
    with pytest.raises(ConfigError, match="needs an integer"):
        load_config("default", None, {"steps": "ten"})
    with pytest.raises(ConfigError, match="needs one of auto, always, never"):
        load_config("default", None, {"compile": 1})
    with pytest.raises(ConfigError, match="compile must be one of"):
        load_config("default", None, {"compile": "sometimes"})
    with pytest.raises(ConfigError, match="hole_size"):
        load_config("default", None, {"hole_size": 64})
    with pytest.raises(ConfigError, match="train_masks"):
        load_config("default", None, {"train_masks": "square"})
    path = tmp_path / "bad.toml"
    path.write_text("steps = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(None, path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, tmp_path / "missing.toml")


def test_strings_from_the_command_line_are_parsed():
    cfg = load_config("default", None, {"compile": "Never", "steps": "12", "lr": "1e-3", "augment": "yes"})
    assert (cfg.compile, cfg.steps, cfg.lr, cfg.augment) == ("never", 12, 1e-3, True)


@pytest.mark.parametrize("value, mode", [(True, "always"), (False, "never"), ("true", "always"), ("no", "never"),
                                         ("auto", "auto"), ("ALWAYS", "always")])
def test_compile_takes_the_booleans_of_older_config_files(value, mode, tmp_path):
    """compile was a boolean until 2026-12-03: a run's config.toml that says `compile = false` still loads
    (and resumes) as never, `true` as always."""
    assert load_config("default", None, {"compile": value}).compile == mode
    path = tmp_path / "old.toml"
    path.write_text(f"compile = {str(value).lower() if isinstance(value, bool) else repr(value)}\n".replace("'", '"'))
    assert load_config(None, path).compile == mode


def test_the_training_step_compiles_on_gpus_only_unless_told():
    from nfinpaint.devices import compiles

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert [compiles(m, cpu) for m in ("auto", "always", "never")] == [False, True, False]
    assert [compiles(m, cuda) for m in ("auto", "always", "never")] == [True, True, False]


@pytest.mark.parametrize("changes, message", [
    ({"image_size": 25, "hole_size": 8, "local_patch_size": 12}, "cannot take image_size=25"),
    # the local discriminator's traceback at the first step, after its run folder was written
    ({"image_size": 8, "hole_size": 4, "local_patch_size": 4}, "local_patch_size must be between 8"),
    ({"image_size": 24, "hole_size": 4, "local_patch_size": 6}, "local_patch_size must be between 8"),
    ({"feature_weights": ""}, "feature_weights must be 'imagenet', 'rotation', 'random' or a file path"),
    ({"feature_layer": "conv9"}, "feature_layer must be one of"),
    ({"feature_region": "border"}, "feature_region must be one of"),
    ({"feature_region": "hole", "feature_kind": "gram"}, "the Gram distance compares whole maps"),
    ({"ssim_weight": "-1"}, "ssim_weight must be a finite number >= 0"),
    ({"d_lr": "-1e-4"}, "d_lr must be >= 0"),
    ({"adv_form": "pixels"}, "adv_form must be one of"),
])
def test_values_the_models_cannot_take_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        load_config("default", None, changes)


@pytest.mark.parametrize("name", sorted(config.PRESETS))
def test_a_batch_too_small_for_the_generator_is_refused_before_the_run(name):
    """batch_size = 1 passed the check, then the first step of a BatchNorm1d generator raised, its run
    folder written without a checkpoint.  The registry's min_batch is held to what a step takes."""
    import torch  # noqa: PLC0415

    from nfinpaint.train import build_models  # noqa: PLC0415

    preset = dataclasses.replace(config.PRESETS[name], feature_weights="random")
    generator = build_models(dataclasses.replace(preset, batch_size=2).validate())[0].train()
    size = preset.image_size
    try:
        generator(torch.rand(1, 3, size, size), torch.zeros(1, 1, size, size))
        trains_on_one = True
    except ValueError as exc:
        assert "more than 1 value per channel" in str(exc)
        trains_on_one = False
    one = dataclasses.replace(preset, batch_size=1)
    if trains_on_one:
        one.validate()
    else:
        with pytest.raises(ConfigError, match=f"generator={preset.generator!r} .* batch_size must be at least 2"):
            one.validate()


@pytest.mark.parametrize("steps, g, d, text", [
    (800, 300, 40, "300 generator-only, 40 discriminator-only, 460 joint steps"),
    (20, 300, 40, "20 generator-only, 0 discriminator-only, 0 joint steps (the 300 + 40-step warm-up"),
    (310, 300, 40, "300 generator-only, 10 discriminator-only, 0 joint steps (the 300 + 40-step warm-up"),
])
def test_schedule_describes_the_stages_this_run_sees(steps, g, d, text):
    assert TrainConfig(steps=steps, g_warmup_steps=g, d_warmup_steps=d).schedule().startswith(text)


def test_stage_boundaries():
    cfg = TrainConfig(steps=10, g_warmup_steps=3, d_warmup_steps=2)
    assert [cfg.stage(s) for s in range(7)] == ["generator"] * 3 + ["discriminator"] * 2 + ["joint"] * 2
    no_warmup = TrainConfig(steps=10, g_warmup_steps=0, d_warmup_steps=0)
    assert no_warmup.stage(0) == "joint"


def test_cosine_learning_rate_is_a_function_of_the_step():
    config = load_config("default", None, {"steps": 100, "lr": 1e-3})
    assert config.lr_schedule == "cosine"
    lrs = [config.lr_at(step) for step in range(101)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[50] == pytest.approx(5e-4) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    constant = load_config("paper", None, {"steps": 100})
    assert {constant.lr_at(step) for step in (0, 50, 99)} == {constant.lr}


def test_the_discriminators_learning_rate_follows_the_generators_schedule():
    lr, d_lr = 1e-3 * (1 + np.random.rand()), 4e-3 * (1 + np.random.rand())
    same = load_config("default", None, {"steps": 100, "lr": lr})
    assert [same.d_lr_at(step) for step in range(101)] == [same.lr_at(step) for step in range(101)]
    faster = load_config("default", None, {"steps": 100, "lr": lr, "d_lr": d_lr})
    for step in range(101):
        assert faster.d_lr_at(step) == pytest.approx(faster.lr_at(step) * d_lr / lr, abs=1e-15)
    assert faster.d_lr_at(0) == pytest.approx(d_lr)


def test_a_checkpoint_without_the_newer_keys_resumes_as_it_trained():
    # keys added after a checkpoint was written take what training did before them (the paper's method)
    from nfinpaint.config import PAPER_METHOD
    from nfinpaint.resume import ResumePoint, resume_config

    saved = {k: v for k, v in dataclasses.asdict(PRESETS["paper"]).items() if k not in PAPER_METHOD}
    saved.pop("feature_region")
    config = resume_config(ResumePoint(None, None, {"config": saved}), {})
    assert config == PRESETS["paper"]


def test_a_batch_beyond_the_gpus_memory_is_refused(monkeypatch):
    """On a GPU the batch must fit in the GPU's memory, which is smaller than the machine's: a batch
    of 2^20 crops of 128 px (~640 GiB for crops, masks and fills) on a 139 GiB GPU is refused."""
    from types import SimpleNamespace

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(total_memory=139 * 2 ** 30))
    monkeypatch.setattr(config, "physical_memory", lambda: 2 ** 50)        # the machine: plenty
    big = dataclasses.replace(config.PRESETS["fullres"], batch_size=2 ** 20)
    with pytest.raises(ConfigError, match=r"batch_size 1048576 does not fit in memory: .* and GPU 0 has 139.0 GiB"):
        dataclasses.replace(big, device="cuda").validate()
    with pytest.raises(ConfigError, match="GPU 0 has"):
        dataclasses.replace(big, device="auto").validate()
    dataclasses.replace(big, device="cpu").validate()                      # the machine's memory
    dataclasses.replace(big, device="cuda", batch_size=8).validate()


def test_changed_from_preset_names_how_a_run_differs_from_its_preset_not_where_it_read():
    import random  # noqa: PLC0415

    from nfinpaint.config import changed_from_preset  # noqa: PLC0415
    base = PRESETS["fullres"]
    lr = base.lr * random.uniform(0.1, 0.9)
    config = dataclasses.replace(base, lr=lr, data="/some/photos", val_data="/other", ssim_weight=0.5)
    assert changed_from_preset(config) == {"lr": [base.lr, lr], "ssim_weight": [0.0, 0.5]}
    assert changed_from_preset(base) == {}
    assert changed_from_preset(dataclasses.replace(base, preset="from-a-newer-version")) is None
