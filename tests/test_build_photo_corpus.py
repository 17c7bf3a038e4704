"""scripts/build_photo_corpus.py without the network: the package downloads are faked (``run`` replaced,
or a fake ``apt-get`` first on PATH) and every picture is a tiny generated JPEG or PNG."""
import hashlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_photo_corpus.py"


def _load():
    spec = importlib.util.spec_from_file_location("build_photo_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _picture(path: Path, seed: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    Image.new("RGB", (24, 16), colour).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def fake_registry(module):
    """Replace ``module.run``: apt-get download, dpkg -x and pip download make small fake packages
    holding every file the script's lists name; returns the list of commands run."""
    calls = []

    def run(cmd, cwd):
        calls.append(cmd)
        if cmd[:2] == ["apt-get", "download"]:
            (Path(cwd) / f"{cmd[2]}_1%3a2.0-1_all.deb").write_text(cmd[2])
        elif cmd[:2] == ["dpkg", "-x"]:
            package, root = cmd[2].split("_")[0], Path(cmd[3])
            for table in (module.PHOTOS, module.ART, module.MATE, module.OPENCV):
                for key in table.get(package, {}):
                    if key == "*":
                        for name in ("one.jpg", "two.png"):
                            _picture(root / "usr/share/backgrounds" / package / name, package + name)
                    elif key.endswith("/*"):
                        for name in ("Dune.jpg", "Storm.jpg", "Wood.png"):
                            _picture(root / "usr/share/backgrounds/mate" / key[:-2] / name, name)
                    elif "." in key:
                        _picture(root / "usr/share/wallpapers" / key, key)
                    else:
                        for size in ("640x480", "1920x1080"):
                            _picture(root / "usr/share/wallpapers" / key / "contents/images" / f"{size}.png",
                                     key + size)
        elif "pip" in cmd:
            wheel = Path(cmd[cmd.index("-d") + 1]) / "scikit_learn-1.5.0-cp311-cp311-linux_x86_64.whl"
            wheel.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel, "w") as zf:
                for name in module.SKLEARN:
                    data = io.BytesIO()
                    Image.new("RGB", (20, 30), (1, 2, 3)).save(data, format="JPEG")
                    zf.writestr(f"sklearn/datasets/images/{name}", data.getvalue())
        else:
            raise AssertionError(f"unexpected command {cmd}")
        return ""

    module.run = run
    return calls


@pytest.fixture
def corpus(monkeypatch):
    """The script as a module with faked downloads; ``corpus.main(*argv)`` runs it."""
    module = _load()
    module.calls = fake_registry(module)
    before = signal.getsignal(signal.SIGTERM)

    def main(*argv):
        monkeypatch.setattr(sys, "argv", ["build_photo_corpus.py", *map(str, argv)])
        return module.main()

    module.run_main = main
    yield module
    signal.signal(signal.SIGTERM, before)   # main() sets its own


def _tree(folder: Path) -> dict[str, bytes]:
    """Every entry under ``folder`` (hidden ones too): file bytes, or a link's target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            out[rel] = os.readlink(path).encode() if path.is_symlink() else path.read_bytes() if path.is_file() else b""
    return out


def _exit_status(main, *argv):
    try:
        main(*argv)
    except SystemExit as stop:
        return stop.code
    except KeyboardInterrupt:   # would stop pytest itself
        pytest.fail("the interrupt escaped main() as a traceback")
    pytest.fail("main() returned")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_the_corpus_matches_its_manifest_keeps_mate_apart_and_a_rerun_gives_the_same_files(corpus, tmp_path):
    out = tmp_path / "corpus"
    assert corpus.run_main(out) == 0
    tree = _tree(out)
    rows = [line.split("\t") for line in (out / "MANIFEST.tsv").read_text().splitlines()[1:]]
    files = {name for name, data in tree.items() if name.endswith(".png")}
    assert files == {f"{row[0]}/{row[1]}" for row in rows} and len(rows) == len(files)
    assert not [name for name in tree if name.startswith(".") or ".partial-" in name or ".tmp" in name]
    # the reserved test set is mate-backgrounds' and only there; train_all links the two training sources
    assert {row[0] for row in rows if row[2].startswith("mate-backgrounds ")} == {"mate"}
    assert {row[2].split()[0] for row in rows if row[0] == "mate"} == {"mate-backgrounds"}
    assert sorted(os.listdir(out / "train_all")) == ["opencv", "photos"]
    assert (out / "train_all" / "photos").resolve() == (out / "photos" / "train").resolve()
    splits = {row[0] for row in rows}
    assert {"photos/train", "photos/val", "photos/test", "art", "mate", "opencv"} == splits
    named = [row[1] for row in rows if row[0].startswith("photos/")]
    assert len(named) == len(set(named)), "a photograph in two splits"
    assert corpus.run_main(out) == 0
    assert _tree(out) == tree


def test_an_interrupted_run_leaves_the_corpus_as_it_was(corpus, tmp_path, capsys, monkeypatch):
    """Ctrl-C while writing: the old photos/train, mate, ... had been deleted and the new ones half written,
    under a MANIFEST that still named all of them."""
    out = tmp_path / "corpus"
    corpus.run_main(out)
    before = _tree(out)
    save, written = corpus.save_scaled, []

    def interrupted(image, dest, max_side):
        if len(written) == 5:
            raise KeyboardInterrupt
        written.append(dest)
        return save(image, dest, max_side)

    monkeypatch.setattr(corpus, "save_scaled", interrupted)
    capsys.readouterr()
    assert _exit_status(corpus.run_main, out) == 2 and "interrupted" in _error_line(capsys)
    assert _tree(out) == before
    written.clear()
    assert _exit_status(corpus.run_main, tmp_path / "new") == 2
    assert not (tmp_path / "new").exists()


def _failing_swap(corpus, monkeypatch, out: Path, at: int, error: BaseException, undo_error: bool = False):
    """os.replace raises ``error`` at the ``at``-th rename of the swap into ``out`` (0-based; renames of
    single pictures while building are not counted); with ``undo_error`` every rename after it fails too."""
    real, seen = os.replace, []

    def replace(source, dest):
        if Path(dest).parent in (out, out / ".old") or Path(dest).parent.name == "old" \
                or Path(source).parent == out:
            seen.append((source, dest))
            if len(seen) == at + 1 or (undo_error and len(seen) > at + 1):
                raise error
        return real(source, dest)

    monkeypatch.setattr(corpus.os, "replace", replace)
    return seen


@pytest.mark.parametrize("at", [0, 3, 6, 10])
@pytest.mark.parametrize("error", ["interrupt", "oserror"])
def test_a_failure_while_the_corpus_moves_into_place_leaves_the_old_one(corpus, tmp_path, capsys, monkeypatch,
                                                                      at, error):
    """Ctrl-C (or a failed rename) between the renames that swap the new corpus in: the old folders moved
    aside were deleted with the staging folder, leaving half of each corpus under the old MANIFEST, and the
    error said nothing had been written."""
    out = tmp_path / "corpus"
    corpus.run_main(out)
    (out / "MANIFEST.tsv").write_text((out / "MANIFEST.tsv").read_text() + "# the old one\n")
    before = _tree(out)
    seen = _failing_swap(corpus, monkeypatch, out, at,
                         KeyboardInterrupt() if error == "interrupt" else OSError(16, "Device or resource busy"))
    capsys.readouterr()
    assert _exit_status(corpus.run_main, out) == 2
    line = _error_line(capsys)
    assert ("interrupted" if error == "interrupt" else "Device or resource busy") in line and "as it was" in line
    assert len(seen) > at and _tree(out) == before


def test_a_signal_that_comes_while_the_corpus_moves_into_place_waits_for_it(corpus, tmp_path, capsys, monkeypatch):
    """SIGTERM between two renames of the swap is held until the new corpus is whole, then reported."""
    out = tmp_path / "corpus"
    corpus.run_main(out)
    real, seen = os.replace, []

    def replace(source, dest):
        if Path(source).parent == out or Path(dest).parent == out:
            seen.append(dest)
            if len(seen) == 3:
                os.kill(os.getpid(), signal.SIGTERM)
        return real(source, dest)

    (out / "MANIFEST.tsv").write_text("the old one\n")
    monkeypatch.setattr(corpus.os, "replace", replace)
    capsys.readouterr()
    assert corpus.run_main(out) == 0
    assert "interrupted after the new corpus was complete" in capsys.readouterr().err
    assert len(seen) == 11 and (out / "MANIFEST.tsv").read_text() != "the old one\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".partial-")]


def test_a_swap_that_cannot_be_undone_says_where_the_old_corpus_is_and_keeps_it(corpus, tmp_path, capsys,
                                                                                 monkeypatch):
    out = tmp_path / "corpus"
    corpus.run_main(out)
    photos = sorted(p.relative_to(out / "photos") for p in (out / "photos").rglob("*.png"))
    _failing_swap(corpus, monkeypatch, out, 3, OSError(5, "Input/output error"), undo_error=True)
    capsys.readouterr()
    assert _exit_status(corpus.run_main, out) == 2
    line = _error_line(capsys)
    kept = Path(line.split("folders are in ")[1].split(",")[0])
    assert "putting the old one back" in line and kept.parent.parent == out
    assert sorted(p.relative_to(kept / "photos") for p in (kept / "photos").rglob("*.png")) == photos


def test_a_terminated_run_leaves_no_truncated_picture_and_no_temporary_files(tmp_path):
    """SIGTERM in the middle of writing a picture: photos/train kept a truncated NAME.tmp.png that training
    reads as a picture, and the unpacked packages (766 MB) stayed in the temporary folder."""
    driver = f"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_build_photo_corpus as t
from PIL import Image
module = t._load()
t.fake_registry(module)
saved, real_save = [], Image.Image.save
def save(self, fp, *args, **kwargs):
    if str(fp).startswith(sys.argv[1]):   # a corpus picture, not a fake package's
        if len(saved) == 7:
            Path(fp).write_bytes(b"\\x89PNG\\r\\n\\x1a\\n half")
            os.kill(os.getpid(), signal.SIGTERM)
        saved.append(fp)
    return real_save(self, fp, *args, **kwargs)
Image.Image.save = save
sys.argv = ["build_photo_corpus.py", sys.argv[1]]
sys.exit(module.main())
"""
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run([sys.executable, "-c", driver, str(tmp_path / "corpus")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("error: interrupted") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "corpus").exists()
    assert not os.listdir(tmp_path / "tmp")


def test_a_failed_download_is_one_error_line_and_changes_nothing(corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "corpus"
    corpus.run_main(out)
    before = _tree(out)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text("#!/bin/sh\necho 'W: a warning' >&2\n"
                                     "echo \"E: Unable to locate package $2\" >&2\nexit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    module = _load()   # the real run(): the fake apt-get answers
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(sys, "argv", ["build_photo_corpus.py", str(out)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        module.main()
    line = _error_line(capsys)
    assert stop.value.code == 2
    assert "apt-get download lomiri-wallpapers-16.04 failed (E: Unable to locate package" in line
    assert "apt-get update" in line and "run again" in line
    assert _tree(out) == before
    # no apt-get at all: the same kind of line, not a traceback
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2 and "apt-get not found" in _error_line(capsys)
    assert _tree(out) == before


@pytest.mark.parametrize("case", ["file", "other folder", "unwritable", "max-side"])
def test_bad_arguments_are_refused_before_anything_is_fetched(corpus, tmp_path, capsys, case):
    """A file or an unwritable place failed with a traceback after every download; a folder of one's own
    pictures lost its photos/ folder; --max-side 0 wrote 1x1 pictures."""
    out = tmp_path / "out"
    if case == "file":
        out.write_text("mine")
    elif case == "other folder":
        _picture(out / "photos" / "holiday.jpg", "holiday")
        (out / "notes.txt").write_text("mine")
    elif case == "unwritable":
        out.write_text("mine")
        out = out / "corpus"   # a folder below a file: cannot be made, whoever runs it
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as stop:
        corpus.run_main(out, *(["--max-side", "0"] if case == "max-side" else []))
    assert stop.value.code == 2
    assert ("--max-side must be at least 1" if case == "max-side" else "give") in _error_line(capsys)
    assert corpus.calls == [] and _tree(tmp_path) == before


def test_the_held_out_photographs_are_pinned_and_a_new_photograph_trains(corpus, tmp_path, monkeypatch):
    """The split was a seeded shuffle recomputed on every build: one photograph added to the tables
    reshuffled it, moving pictures the shipped generator trained on into test.  Now the held-out names
    are fixed lists, a new photograph trains, and a held-out one missing from the packages stops the build."""
    monkeypatch.setitem(corpus.PHOTOS, "lomiri-wallpapers-20.04",
                        {**corpus.PHOTOS["lomiri-wallpapers-20.04"], "Zebra_by_Someone.jpg": "CC-BY-SA-3.0"})
    out = tmp_path / "corpus"
    assert corpus.run_main(out) == 0
    held = {split: {p.stem for p in (out / "photos" / split).iterdir()} for split in ("test", "val")}
    assert held == {"test": set(corpus.TEST), "val": set(corpus.VAL)}
    assert (out / "photos" / "train" / "Zebra_by_Someone.png").is_file()
    gone = next(iter(corpus.TEST))
    monkeypatch.setitem(corpus.PHOTOS, "lomiri-wallpapers-16.04",
                        {k: v for k, v in corpus.PHOTOS["lomiri-wallpapers-16.04"].items() if not k.startswith(gone)})
    monkeypatch.setitem(corpus.PHOTOS, "plasma-workspace-wallpapers",
                        {k: v for k, v in corpus.PHOTOS["plasma-workspace-wallpapers"].items() if k != gone})
    before = _tree(out)
    assert _exit_status(corpus.run_main, out) != 0
    assert _tree(out) == before


def test_a_kde_wallpaper_is_named_by_its_folder_and_two_pictures_of_one_name_stop_the_build(corpus):
    assert corpus.picture_name(Path("usr/share/wallpapers/Kite/contents/images_dark/5120x2880.png")) == "Kite"
    assert corpus.picture_name(Path("usr/share/wallpapers/Kite/contents/images/640x480.png")) == "Kite"
    assert corpus.picture_name(Path("usr/share/backgrounds/ukui/one.jpg")) == "one"
    photos = [(name, "pkg", "lic", None) for name in sorted(corpus.TEST | corpus.VAL)]
    corpus.check_names(photos, [("a", 0, 0, 0)], [("a", 0, 0, 0)])      # one name in two folders is fine
    with pytest.raises(SystemExit):
        corpus.check_names(photos + [("x", 0, 0, 0), ("x", 0, 0, 0)])
