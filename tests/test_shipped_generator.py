"""The generator that ships inside the package: it is there, says how it was made, and inpaints."""
import importlib.util
from pathlib import Path

import pytest
import torch

from nfinpaint import baselines
from nfinpaint.generator_io import open_generator, shipped_default
from nfinpaint.metrics import batch_psnr


def _shipped():
    path = shipped_default()
    assert path is not None, "nfinpaint/weights/default_generator.pt is not installed with the package"
    return path, open_generator(None)


def test_the_shipped_generator_is_small_and_says_how_it_was_trained():
    path, loaded = _shipped()
    assert path.stat().st_size < 30 * 2**20
    shipped = loaded.meta["shipped"]
    assert shipped["steps"] == loaded.meta["step"] and loaded.meta["complete"] is True
    # the feature network is named as what it is: the shipped self-supervised weights, not ImageNet's
    assert shipped["feature_network"] == loaded.meta["feature_weights"] and loaded.meta["feature_pretrained"]
    assert "rotation" in shipped["feature_network"] and "not ImageNet" in shipped["feature_network"]
    assert shipped["data"] and shipped["evaluations"], "the meta names the data and the test-split numbers"
    for evaluation in shipped["evaluations"].values():
        tables = evaluation["families"].values() if "families" in evaluation else [evaluation["methods"]]
        for methods in tables:
            assert {"gan", "biharmonic", "patchmatch", "border-mean"} <= set(methods)
    assert all(v.dtype == torch.float16 for v in torch.load(path, weights_only=True)["state_dict"].values()
               if v.is_floating_point())


def test_the_shipped_generator_fills_unseen_pictures_better_than_the_mean_colour():
    """Whole pictures through inpaint's code path: the embedded scikit-image photographs, which the
    corpus it was trained on leaves out, with fresh holes (4 per picture and family).

    A single ~56 px hole is a coin toss on some of these pictures (on the Hubble field or a stained
    tissue the mean colour is the best guess in PSNR, and biharmonic loses to it too), so the test
    pools 28 holes per family.  Over 6 seeds: thin strokes +6.6 to +7.8 dB on average with 27-28
    of 28 above the floor, ~56 px objects +1.5 to +2.6 dB with 20-25 of 28."""
    from nfinpaint import picture_eval  # noqa: PLC0415
    from nfinpaint.inpaint import inpaint_image  # noqa: PLC0415

    _, loaded = _shipped()
    pictures, _ = picture_eval.load_pictures(None, 256)
    seed = int(torch.randint(0, 2**31, ()))
    for family, mean_gain, wins in (("thin", 4.0, 0.75), ("medium", 0.5, 0.55)):
        gains = []
        for repeat in range(4):
            for index, (_, picture) in enumerate(pictures):
                hole = picture_eval.picture_mask(family, picture, seed, index, repeat)
                filled, holes = inpaint_image(picture, hole, generator=loaded.generator, log=lambda line: None)
                assert {h.method for h in holes} == {"gan"}
                floor = baselines.border_mean_fill(picture, hole)
                gains.append(float(batch_psnr(filled[None], picture[None], hole[None]) -
                                   batch_psnr(floor[None], picture[None], hole[None])))
        assert sum(gains) / len(gains) > mean_gain, (family, seed, gains)
        assert sum(g > 0 for g in gains) >= wins * len(gains), (family, seed, gains)


def test_the_shipped_generator_gives_a_flat_colour_of_any_hue_back_as_it_was():
    """Its window statistics are each channel's own (stats = "channel"): with pooled ones a flat dark
    green came back up to 13 levels off (docs/model.md)."""
    from nfinpaint.inpaint import inpaint_image  # noqa: PLC0415

    _, loaded = _shipped()
    assert loaded.generator.stats == "channel"
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    for _ in range(3):
        colour = torch.randint(0, 256, (3, 1, 1), generator=g).float() / 255
        colour[int(torch.randint(0, 3, (), generator=g))] = 0.1                 # saturated
        picture = colour.expand(3, 120, 160).clone()
        hole = torch.zeros(1, 120, 160)
        hole[:, 30:90, 40:130] = 1
        filled, _ = inpaint_image(picture, hole, generator=loaded.generator, log=lambda line: None)
        assert float((filled - picture).abs().max()) * 255 < 0.5, colour.flatten().tolist()


def test_shipping_a_shipped_file_again_keeps_the_base_fill_count_it_was_trained_with(tmp_path):
    """scripts/ship_generator.py with --base-iterations on a run, then on its own output (how a new
    inference setting of the shipped file is tried): the meta keeps the run's training count."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator, save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    trained = int(torch.randint(2, 9, ()))
    generator = FullResGenerator(32, widths=(8, 8, 8, 8), base_iterations=trained)
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 3, "complete": True}
    save_generator(tmp_path / "run.pt", generator, meta)
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    for source, out, count in ((tmp_path / "run.pt", first, 16), (first, second, 40)):
        subprocess.run([sys.executable, str(script), str(source), "--base-iterations", str(count),
                        "--out", str(out)], check=True, capture_output=True, text=True)
    shipped, meta = load_generator(second)
    assert shipped.base_iterations == 40 and shipped.config["base_iterations"] == 40
    assert meta["trained_base_iterations"] == trained
    assert meta["shipped"]["trained_base_iterations"] == trained and meta["shipped"]["base_iterations"] == 40


def test_shipping_with_channel_statistics_records_what_training_used(tmp_path):
    """--stats channel: the file runs with each channel's own statistics, and its meta (shipped again
    too) says the run trained with pooled ones."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator, save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 3, "complete": True}
    save_generator(tmp_path / "run.pt", FullResGenerator(32, widths=(8, 8, 8, 8)), meta)
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    for source, out, extra in ((tmp_path / "run.pt", first, ["--stats", "channel"]), (first, second, [])):
        subprocess.run([sys.executable, str(script), str(source), "--out", str(out), *extra],
                       check=True, capture_output=True, text=True)
    for path in (first, second):
        shipped, meta = load_generator(path)
        assert shipped.stats == shipped.config["stats"] == "channel"
        assert meta["trained_stats"] == meta["shipped"]["trained_stats"] == "pooled"
        assert meta["shipped"]["stats"] == "channel"


@pytest.mark.parametrize("data, said", [
    (None, "on the embedded default set"),
    ("data/corpus/photos/train", "on the photograph corpus (data/corpus/photos/train"),
    ("/home/me/holiday", "on the pictures in /home/me/holiday"),
    # a folder inside the repository is named relative to it: the meta names no machine's folders
    (str(Path(__file__).resolve().parents[1] / "data" / "corpus" / "train_all"),
     "OpenCV's sample photographs (data/corpus/train_all, scripts/build_photo_corpus.py)")])
def test_the_shipped_description_says_what_the_run_trained_on(tmp_path, data, said):
    """It said "on the photograph corpus" whatever the run's data."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator, save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 3, "complete": True, "data": data}
    save_generator(tmp_path / "run.pt", FullResGenerator(32, widths=(8, 8, 8, 8)), meta)
    subprocess.run([sys.executable, str(script), str(tmp_path / "run.pt"), "--out", str(tmp_path / "s.pt")],
                   check=True, capture_output=True, text=True)
    assert said in load_generator(tmp_path / "s.pt")[1]["description"]


def test_a_run_started_from_another_generator_says_so_when_shipped(tmp_path):
    """train --init-generator: the shipped description counted only the run's own steps."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator, save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    start = {"file": "/x/default_generator.pt", "sha256": "0123456789abcdef" * 4,
             "description": "shipped default: fullres generator, 10500 steps", "step": 10500}
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 7, "complete": True, "initialised_from": start}
    save_generator(tmp_path / "run.pt", FullResGenerator(32, widths=(8, 8, 8, 8)), meta)
    subprocess.run([sys.executable, str(script), str(tmp_path / "run.pt"), "--out", str(tmp_path / "s.pt")],
                   check=True, capture_output=True, text=True)
    shipped = load_generator(tmp_path / "s.pt")[1]
    assert "7 steps of the fullres preset starting from a trained generator (step 10500, sha256 0123456789ab" \
        in shipped["description"]
    assert shipped["shipped"]["initialised_from"] == start


def test_the_shipped_meta_names_no_folder_of_the_machine_that_trained_it(tmp_path):
    """A chain of runs (train's initialised_from, nested) carried the training machine's absolute paths."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator, save_generator  # noqa: PLC0415

    repo = Path(__file__).resolve().parents[1]
    first = {"file": str(repo / "nfinpaint/weights/default_generator.pt"), "sha256": "a" * 64, "step": 9,
             "data": str(repo / "data/corpus/photos/train")}
    second = {"file": str(repo / "runs/leg/generator.pt"), "sha256": "b" * 64, "step": 5, "data": "/elsewhere/x",
              "initialised_from": first}
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 7, "complete": True, "initialised_from": second,
            "data": str(repo / "data/corpus/train_all")}
    save_generator(tmp_path / "run.pt", FullResGenerator(32, widths=(8, 8, 8, 8)), meta)
    subprocess.run([sys.executable, str(repo / "scripts" / "ship_generator.py"), str(tmp_path / "run.pt"),
                    "--out", str(tmp_path / "s.pt")], check=True, capture_output=True, text=True)
    shipped = load_generator(tmp_path / "s.pt")[1]
    chain = shipped["shipped"]["initialised_from"]
    assert shipped["data"] == "data/corpus/train_all" and chain["file"] == "runs/leg/generator.pt"
    assert chain["data"] == "/elsewhere/x" and chain["sha256"] == "b" * 64      # outside the repository: kept
    assert chain["initialised_from"] == dict(first, file="nfinpaint/weights/default_generator.pt",
                                             data="data/corpus/photos/train")


def test_the_shipped_meta_records_the_settings_a_run_changed_from_its_preset(tmp_path):
    """A fine-tune's lr and warm-up lived only in its run directory's config.toml, not in the file users get."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator, save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text('preset = "fullres"\ndata = "/somewhere/photos"\nlr = 3e-5\n'
                                     'g_warmup_steps = 0\nbatch_size = 8\n')
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 7, "complete": True}
    save_generator(run / "generator.pt", FullResGenerator(32, widths=(8, 8, 8, 8)), meta)
    subprocess.run([sys.executable, str(script), str(run), "--out", str(tmp_path / "s.pt")],
                   check=True, capture_output=True, text=True)
    changed = load_generator(tmp_path / "s.pt")[1]["shipped"]["settings_changed_from_preset"]
    assert changed == {"lr": [2e-4, 3e-5], "g_warmup_steps": [1500, 0]}     # batch_size 8 is the preset's


def test_a_bare_generator_file_ships_with_the_settings_its_meta_records(tmp_path):
    """train writes the changes from the preset into generator.pt: shipping the file alone keeps them."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator, save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    changed = {"lr": [2e-4, 1e-4], "d_warmup_steps": [500, 100]}
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 7, "complete": True, "settings_changed_from_preset": changed}
    save_generator(tmp_path / "alone.pt", FullResGenerator(32, widths=(8, 8, 8, 8)), meta)
    subprocess.run([sys.executable, str(script), str(tmp_path / "alone.pt"), "--out", str(tmp_path / "s.pt")],
                   check=True, capture_output=True, text=True)
    assert load_generator(tmp_path / "s.pt")[1]["shipped"]["settings_changed_from_preset"] == changed


@pytest.mark.parametrize("argv, expected", [(["{tmp}/nosuch"], "nosuch"),
                                            (["{tmp}/run.pt", "--eval", "x"], "--eval wants NAME=DIR"),
                                            (["{tmp}/run.pt", "--eval", "x={tmp}"], "is not an evaluation folder")])
def test_ship_generator_bad_input_is_one_line_exit_2(tmp_path, argv, expected):
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    save_generator(tmp_path / "run.pt", FullResGenerator(32, widths=(8, 8, 8, 8)),
                   {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
                    "feature_pretrained": False, "step": 3, "complete": True})
    done = subprocess.run([sys.executable, str(script), *(a.format(tmp=tmp_path) for a in argv),
                           "--out", str(tmp_path / "s.pt")], capture_output=True, text=True)
    assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "s.pt").exists()


_CROP_HEADER = ("method,label,n,psnr_hole_mean,psnr_hole_ci95,ssim_hole_mean,ssim_hole_ci95,psnr_full_mean,"
                "psnr_full_ci95,ssim_full_mean,ssim_full_ci95\n")
_CROP_ROW = "gan,GAN,4,21.5,0.3,0.71,0.02,30.1,0.2,0.95,0.01\n"
_CONFIG = '{"command": "python -m nfinpaint.evaluate", "resolved": {"data": "the embedded default set"}}'


@pytest.mark.parametrize("case, files, said", [
    ("missing", None, "does not exist, not an evaluation folder"),
    ("a file", "file", "is a file, not an evaluation folder"),
    ("no config.json", {"results.csv": _CROP_HEADER + _CROP_ROW}, "(no config.json)"),
    ("empty config.json", {"config.json": "", "results.csv": _CROP_HEADER + _CROP_ROW},
     "config.json is not readable JSON"),
    ("cut-off config.json", {"config.json": '{"resolved": ', "results.csv": _CROP_HEADER + _CROP_ROW},
     "config.json is not readable JSON"),
    ("config.json of something else", {"config.json": "[1, 2]", "results.csv": _CROP_HEADER + _CROP_ROW},
     "config.json is not an evaluation's config.json"),
    ("config.json without data", {"config.json": '{"resolved": {}}', "results.csv": _CROP_HEADER + _CROP_ROW},
     "config.json is not an evaluation's config.json"),
    ("empty results.csv", {"config.json": _CONFIG, "results.csv": ""}, "results.csv is empty"),
    ("header only", {"config.json": _CONFIG, "results.csv": _CROP_HEADER}, "results.csv has no results"),
    ("column missing", {"config.json": _CONFIG, "results.csv": "method,n\ngan,4\n"},
     "results.csv lacks the column(s) psnr_hole_mean"),
    ("not a number", {"config.json": _CONFIG, "results.csv": _CROP_HEADER + _CROP_ROW.replace("21.5", "abc")},
     "results.csv line 2 is not a row of numbers"),
    ("short row", {"config.json": _CONFIG, "results.csv": _CROP_HEADER + "gan,GAN,4,21.5\n"},
     "results.csv line 2 is not a row of numbers"),
    ("binary results.csv", {"config.json": _CONFIG, "results.csv": b"\x80\x02PK\x00"},
     "results.csv is not a readable CSV table"),
    ("full-size table, crop config", {"config.json": _CONFIG,
                                      "results.csv": "family," + _CROP_HEADER + "thin," + _CROP_ROW},
     "results.csv is a full-size-protocol table but config.json says the crop protocol"),
    ("no gan row", {"config.json": _CONFIG, "results.csv": _CROP_HEADER + _CROP_ROW.replace("gan,GAN", "biharmonic,B")},
     "has no gan row: that evaluation ran no generator")])
def test_ship_generator_refuses_a_malformed_eval_folder_in_one_line(tmp_path, case, files, said):
    """--eval with a folder that is not a whole evaluation was a raw KeyError / JSONDecodeError / TypeError
    (or, for an empty results.csv, a shipped file recording no numbers): now one line naming the folder or
    file and what was expected, exit 2, nothing written, before the generator is even loaded."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    folder = tmp_path / "eval"
    if files == "file":
        folder.write_text("x")
    elif files is not None:
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    # the run does not exist: the --eval folder is read (and refused) before any generator is opened
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "no-run"), "--eval", f"test={folder}",
                           "--out", str(tmp_path / "s.pt")], capture_output=True, text=True)
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, (case, done.stderr)
    assert done.stderr.startswith(f"error: --eval test={folder}: ") and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "s.pt").exists()


def test_ship_generator_records_a_whole_eval_folder_of_the_weights_it_ships(tmp_path):
    """The folder evaluate writes (crop protocol) is read into the shipped meta, numbers rounded, when it
    evaluated the weights and settings being shipped: any folder was recorded as theirs (another run's,
    another --stats's, one of no generator at all)."""
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import load_generator, save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 3, "complete": True}
    for name in ("run", "other"):
        save_generator(tmp_path / f"{name}.pt", FullResGenerator(32, widths=(8, 8, 8, 8)), meta)

    def ship(*extra):
        return subprocess.run([sys.executable, str(script), str(tmp_path / "run.pt"), *extra,
                               "--out", str(tmp_path / "s.pt")], capture_output=True, text=True)

    def evaluation_of(file):
        folder = tmp_path / f"eval-{file.stem}"
        folder.mkdir(exist_ok=True)
        config = json.loads(_CONFIG)
        config["checkpoint"] = {"path": str(file), "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "results.csv").write_text(_CROP_HEADER + _CROP_ROW)
        return folder

    assert ship().returncode == 0                        # shipped once, then evaluated, then shipped again
    own, other = evaluation_of(tmp_path / "s.pt"), evaluation_of(tmp_path / "other.pt")
    for extra, said in ((["--eval", f"test={other}"], "whose weights are not those being shipped"),
                        (["--eval", f"test={own}", "--stats", "channel"], "whose settings (stats 'pooled' there")):
        done = ship(*extra)
        assert done.returncode == 2 and said in done.stderr and done.stderr.count("\n") == 1, done.stderr
    done = ship("--eval", f"test={own}")
    assert done.returncode == 0, done.stderr
    recorded = load_generator(tmp_path / "s.pt")[1]["shipped"]["evaluations"]["test"]
    assert recorded["data"] == "the embedded default set" and recorded["methods"]["gan"]["n"] == 4
    assert recorded["methods"]["gan"]["psnr_hole_mean"] == 21.5 and "evaluated" not in recorded
    done = ship("--eval", f"test={own}")                  # s.pt has changed since it was evaluated
    assert done.returncode == 2 and "is gone or has changed since" in done.stderr, done.stderr


def test_the_one_line_description_names_the_feature_weights_once():
    """The shipped file's description names its feature weights; the line built from it repeated them."""
    loaded = open_generator(shipped_default())
    line = loaded.describe()
    assert line.count(str(loaded.meta["feature_weights"])) == 1, line


def test_ship_refuses_settings_that_write_a_broken_or_misplaced_file(tmp_path):
    """--base-iterations 0 wrote a file that does not load; --out naming the source replaced its float32
    weights; a bad --out was a raw traceback; all refused before any file is written, and the default
    --out is the package's own file wherever the script runs from."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from nfinpaint.fullres_generator import FullResGenerator  # noqa: PLC0415
    from nfinpaint.generator_io import save_generator  # noqa: PLC0415

    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_generator.py"
    meta = {"preset": "fullres", "image_size": 32, "hole_size": 16, "feature_weights": "random",
            "feature_pretrained": False, "step": 3, "complete": True}
    run = tmp_path / "run.pt"
    save_generator(run, FullResGenerator(32, widths=(8, 8, 8, 8)), meta)
    before = run.read_bytes()
    (tmp_path / "afile").write_text("x")
    for argv, said in ((["--base-iterations", "0", "--out", tmp_path / "s.pt"], "--base-iterations must be from 1"),
                       (["--base-iterations", "-3", "--out", tmp_path / "s.pt"], "--base-iterations must be from 1"),
                       (["--out", run], "is the generator being shipped"),
                       (["--out", tmp_path], "is a folder"),
                       (["--out", tmp_path / "afile" / "s.pt"], "is a file, not a folder")):
        proc = subprocess.run([sys.executable, str(script), str(run), *map(str, argv)], capture_output=True,
                              text=True, cwd=tmp_path)
        assert proc.returncode == 2 and said in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert run.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["afile", "run.pt"]
    spec = importlib.util.spec_from_file_location("ship_generator", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.SHIPPED == Path(__file__).resolve().parents[1] / "nfinpaint" / "weights" / "default_generator.pt"
