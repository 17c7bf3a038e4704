"""scripts/average_generators.py: the mean of generators' weights, refused for generators that are not one
network trained one way, and shipped with a description of how it was made."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nfinpaint.fullres_generator import FullResGenerator
from nfinpaint.generator_io import load_generator, save_generator

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


average_generators = _script("average_generators")
ship_generator = _script("ship_generator")

START = {"file": "/x/default_generator.pt", "sha256": "0123456789abcdef" * 4, "step": 2000,
         "description": "shipped default: fullres generator"}


def _run(path: Path, *, seed: int, widths=(8, 8, 8, 8), base_iterations: int = 8, **meta) -> Path:
    """A finished run's generator.pt with fresh random weights (a trained one's last layer is not zero)."""
    torch.manual_seed(seed)
    generator = FullResGenerator(32, widths=widths, base_iterations=base_iterations, stats="channel")
    for parameter in generator.parameters():
        parameter.data.normal_(0, 0.1)
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 30, "complete": True, "data": "/somewhere/photos",
            "initialised_from": START, "settings_changed_from_preset": {"lr": [2e-4, 1e-4]},
            "loss_weights": {"l2": 1.0, "feature": 0.1}, **meta}
    path.mkdir()
    save_generator(path / "generator.pt", generator, meta)
    return path


def test_the_average_is_the_mean_of_the_weights_and_fills_like_it(tmp_path):
    runs = [_run(tmp_path / name, seed=seed) for name, seed in (("a", 1), ("b", 2), ("c", 3))]
    generator, meta = average_generators.average(runs)
    states = [load_generator(run)[0].state_dict() for run in runs]
    for key, value in generator.state_dict().items():      # reference: the mean taken by hand, in float64
        expected = sum(state[key].double() for state in states) / 3
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-7)
    # the file written holds those weights, and fills as the averaged network does
    save_generator(tmp_path / "soup.pt", generator, meta)
    reloaded, reloaded_meta = load_generator(tmp_path / "soup.pt")
    masked, mask = torch.rand(1, 3, 40, 48), (torch.rand(1, 1, 40, 48) > 0.8).float()
    torch.testing.assert_close(reloaded(masked, mask), generator(masked, mask))
    assert [record["sha256"] for record in reloaded_meta["averaged_from"]] == \
        [record["sha256"] for record in meta["averaged_from"]] and len(meta["averaged_from"]) == 3
    assert reloaded_meta["averaged_from"][0]["initialised_from"] == START
    assert reloaded_meta["step"] == 30 and reloaded_meta["trained_base_iterations"] == 8
    assert reloaded_meta["settings_changed_from_preset"] == {"lr": [2e-4, 1e-4]}
    assert reloaded_meta["loss_weights"] == {"l2": 1.0, "feature": 0.1}


def test_a_setting_the_runs_differ_in_is_left_to_each_runs_record(tmp_path):
    a = _run(tmp_path / "a", seed=1, loss_weights={"l2": 1.0, "feature": 0.1})
    b = _run(tmp_path / "b", seed=2, loss_weights={"l2": 1.0, "feature": 0.2},
             settings_changed_from_preset={"lr": [2e-4, 1e-4], "feature_weight": [0.1, 0.2]})
    meta = average_generators.average([a, b])[1]
    assert "loss_weights" not in meta and meta["settings_changed_from_preset"] == {"lr": [2e-4, 1e-4]}
    assert meta["averaged_from"][1]["settings_changed_from_preset"]["feature_weight"] == [0.1, 0.2]


def test_runs_trained_with_different_base_fills_need_the_count_the_average_runs_with(tmp_path):
    a = _run(tmp_path / "a", seed=1, base_iterations=8, settings_changed_from_preset={"lr": [2e-4, 1e-4]})
    b = _run(tmp_path / "b", seed=2, base_iterations=32,
             settings_changed_from_preset={"lr": [2e-4, 1e-4], "base_iterations": [8, 32]})
    with pytest.raises(average_generators.AverageError, match="8 and 32 base-fill steps.*--base-iterations"):
        average_generators.average([a, b])
    generator, meta = average_generators.average([a, b], base_iterations=32)
    assert generator.base_iterations == generator.config["base_iterations"] == 32
    assert meta["trained_base_iterations"] == [8, 32]
    # only what both runs changed the same way is said of the average; each run's record keeps its own
    assert meta["settings_changed_from_preset"] == {"lr": [2e-4, 1e-4]}
    assert meta["averaged_from"][1]["settings_changed_from_preset"]["base_iterations"] == [8, 32]


@pytest.mark.parametrize("change, said", [
    (dict(widths=(8, 8, 8, 16)), "the network's widths"),
    (dict(data="/elsewhere"), "data"),
    (dict(feature_weights="rotation", feature_pretrained=True), "feature_weights"),
    (dict(complete=False), "interrupted run"),
])
def test_generators_that_are_not_one_network_trained_one_way_are_refused(tmp_path, change, said):
    a = _run(tmp_path / "a", seed=1)
    b = _run(tmp_path / "b", seed=2, **change)
    with pytest.raises(average_generators.AverageError, match=said):
        average_generators.average([a, b])


def test_the_command_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path):
    a, b = _run(tmp_path / "a", seed=1), _run(tmp_path / "b", seed=2, widths=(8, 8, 16, 16))
    cases = [([a], "at least two"), ([a, a / "generator.pt"], "given twice"), ([a, b], "widths"),
             ([a, tmp_path / "nosuch"], "nosuch"), ([a, _run(tmp_path / "c", seed=3)], None)]
    for runs, said in cases:
        out = tmp_path / "soup.pt"
        done = subprocess.run([sys.executable, str(SCRIPTS / "average_generators.py"), *map(str, runs),
                               "--out", str(out)], capture_output=True, text=True)
        if said is None:
            assert done.returncode == 0 and out.is_file(), done.stderr
            continue
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()
    into_a_run = subprocess.run([sys.executable, str(SCRIPTS / "average_generators.py"), str(a), str(tmp_path / "c"),
                                 "--out", str(a / "generator.pt")], capture_output=True, text=True)
    assert into_a_run.returncode == 2 and "one of the generators being averaged" in into_a_run.stderr


def test_a_shipped_average_says_how_it_was_made_and_names_no_folder_of_the_repository(tmp_path):
    runs = [_run(tmp_path / "a", seed=1), _run(tmp_path / "b", seed=2)]
    generator, meta = average_generators.average(runs)
    save_generator(tmp_path / "soup.pt", generator, meta)
    subprocess.run([sys.executable, str(SCRIPTS / "ship_generator.py"), str(tmp_path / "soup.pt"),
                    "--out", str(tmp_path / "shipped.pt")], check=True, capture_output=True, text=True)
    shipped = load_generator(tmp_path / "shipped.pt")[1]
    assert ("the mean of the weights of 2 runs of 30 steps of the fullres preset, each starting from the same "
            "trained generator (sha256 0123456789ab") in shipped["description"]
    assert [record["file"] for record in shipped["shipped"]["averaged_from"]] == \
        [str((run / "generator.pt").resolve()) for run in runs]        # outside the repository: kept
    # inside it, each run's file and its own chain are made relative, as for a single run
    repo = ship_generator.REPOSITORY
    record = {"file": str(repo / "runs/a/generator.pt"), "description": f"step 3, trained on {repo / 'data/x'}",
              "initialised_from": {"file": str(repo / "x.pt")}}
    assert ship_generator.relative_paths({"averaged_from": [record]}) == \
        {"averaged_from": [{"file": "runs/a/generator.pt", "description": "step 3, trained on data/x",
                            "initialised_from": {"file": "x.pt"}}]}


def test_batchnorm_generators_of_runs_of_different_lengths_average(tmp_path):
    """BatchNorm counts the batches a run trained on: runs of N and M steps were refused as "not one
    network trained one way" for a counter that changes no output."""
    from nfinpaint.generators import build_generator

    runs = []
    for name, steps in (("a", 3), ("b", 4)):
        torch.manual_seed(steps)
        generator = build_generator("residual_unet", 24)
        for key, value in generator.state_dict().items():
            if key.endswith("num_batches_tracked"):
                value.fill_(steps)
            elif value.is_floating_point():
                value.normal_(0, 0.1) if not key.endswith("running_var") else value.uniform_(0.5, 2)
        (tmp_path / name).mkdir()
        save_generator(tmp_path / name / "generator.pt", generator,
                       {"preset": "default", "image_size": 24, "hole_size": 10, "feature_weights": "random",
                        "feature_pretrained": False, "step": steps, "complete": True})
        runs.append(tmp_path / name)
    generator, meta = average_generators.average(runs)
    states = [load_generator(run)[0].state_dict() for run in runs]
    for key, value in generator.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert int(value) == 4
        elif value.is_floating_point():
            torch.testing.assert_close(value.double(), (states[0][key].double() + states[1][key].double()) / 2,
                                       rtol=0, atol=1e-7)
    assert meta["step"] is None and [record["step"] for record in meta["averaged_from"]] == [3, 4]
