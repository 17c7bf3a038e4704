#!/usr/bin/env python3
"""Assemble nfinpaint's offline photograph corpus from packages the registries ship.

    python scripts/build_photo_corpus.py data/corpus

No internet beyond the package registries is needed: Debian packages are
fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (nothing is
installed), scikit-learn's wheel with ``pip download`` (opened as a zip).
Every picture is scaled (Lanczos, antialiased) so its long side is at most
``--max-side`` pixels (1024) and written as PNG, with ``MANIFEST.tsv`` naming
source package, version, original file, licence and size.

Layout (the test and validation photographs are fixed lists below, TEST and VAL, chosen once by a
seeded shuffle, never by looking at results; any photograph added to the tables trains):

    OUT/photos/train/  photographs to train on
    OUT/photos/val/    photographs held out for choosing settings (--set val_data=...)
    OUT/photos/test/   photographs held out for the README's test table; nothing is chosen on them
    OUT/art/           synthetic desktop art (for measuring whether art helps); train-only
    OUT/opencv/        photographs from OpenCV's sample data (opencv-doc): a third source, train-only,
                       kept out of the split so the val/test lists above never change
    OUT/train_all/     links to photos/train and opencv: the two training sources as one --data folder
    OUT/mate/          Debian's mate-backgrounds "nature" photographs: the cross-source test
                       set. NEVER train on it or choose settings with it.

The script is repeatable: the same package versions give the same files.  The corpus is built in a
hidden folder inside OUT and moved into place only when complete: an interrupted or failed run leaves
OUT as it was.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from PIL import Image

# package -> {file name (basename) -> licence}; "*" = every file of the package named below
PHOTOS = {
    "lomiri-wallpapers-16.04": {
        "Bridge_by_Sander_Klootwijk.jpg": "CC-BY-SA-4.0",
        "Dragonfly_by_Bolly.jpg": "CC-BY-SA-4.0",
        "Picture_0B_by_freespace.jpg": "CC-BY-SA-4.0",
        "Picture_1A_by_freespace.jpg": "CC-BY-SA-4.0",
        "Wine_by_Jakkub_Mede.jpg": "CC-BY-SA-4.0",
        "aitzgorri_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
        "analogpattern_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
        "free_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
        "friends_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
        "greentock_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
        "life_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
        "seeding_by_Clements_Engelhardt.jpg": "CC-BY-SA-4.0",
        "sunset_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    },
    "lomiri-wallpapers-20.04": {
        "Infinite-Sea_by_Aury88.jpg": "CC-BY-SA-3.0",
        "Kleiber_by_Lukas_Baubkus.jpg": "CC-BY-SA-3.0",
    },
    # KDE wallpapers: one folder per wallpaper, several resolutions; the largest is taken.
    "plasma-workspace-wallpapers": {
        name: "GPL-2+" for name in ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                                    "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
    },
}
ART = {
    "plasma-workspace-wallpapers": {
        name: "GPL-2+" for name in ("Altai", "Autumn", "Canopee", "Cascade", "Cluster", "Elarun", "Flow",
                                    "FlyingKonqui", "Honeywave", "IceCold", "Kay", "Kokkini", "MilkyWay", "Opal",
                                    "PastelHills", "Patak", "SafeLanding", "Shell", "Volna")
    },
    "lomiri-wallpapers-16.04": {"umang_by_Abhishek_Mudgal.jpg": "CC-BY-SA-4.0"},
    "lomiri-wallpapers-20.04": {"Fossa_by_Jasper_Roks.jpg": "CC-BY-SA-3.0",
                                "Painting-Colors_by__herobrine7gamer.jpg": "CC-BY-SA-3.0"},
    "ukui-wallpapers": {"*": "see the package's copyright file"},
}
# OpenCV's sample photographs (opencv-doc, examples/data): train-only, outside the seeded split.
# Left out: synthetic or drawn pictures (charts, chessboards, digits, text), grey ones, a painting,
# the second view of a stereo or motion pair (aloeR, leuvenB, rubberwhale2, aero3), a tampered
# copy (ela_modified), and lena.
OPENCV = {"opencv-doc": {name: "see the package's copyright file (OpenCV samples/data)"
                         for name in ("fruits.jpg", "baboon.jpg", "leuvenA.jpg", "squirrel_cls.jpg", "aloeL.jpg",
                                      "board.jpg", "orange.jpg", "messi5.jpg", "ela_original.jpg", "aero1.jpg",
                                      "apple.jpg", "butterfly.jpg", "building.jpg", "graf1.png", "rubberwhale1.png",
                                      "chicky_512.png", "smarties.png")}}
# Reserved for independent testing only.
MATE = {"mate-backgrounds": {"nature/*": "GPL-2+ (see the package's copyright file)"}}
# scikit-image's photographs are left out on purpose: they are the embedded default data set,
# so a generator trained on this corpus can be tested on them as a second source it never saw.
SKLEARN = {"china.jpg": "CC-BY 2.0 (see sklearn/datasets/images/README.txt)",
           "flower.jpg": "CC-BY 2.0 (see sklearn/datasets/images/README.txt)"}
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# The held-out photographs, by name: the first 6 and the next 4 of random.Random(2026).sample of the 27
# Debian photographs' sorted names (2026-11-25). Pinned: recomputed, one photograph added to the tables
# reshuffled them, and pictures the shipped generator trained on moved into test without a word.
TEST = frozenset({"ColorfulCups", "Kite", "Wine_by_Jakkub_Mede", "friends_by_Aitzol_Berasategi",
                  "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi"})
VAL = frozenset({"FallenLeaf", "Path", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich"})


CORPUS = ("photos", "art", "mate", "opencv", "train_all", "MANIFEST.tsv")   # what OUT holds, MANIFEST last


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def run(cmd: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        fail(f"{cmd[0]} not found: the corpus is built from Debian packages, so this needs a Debian or Ubuntu "
             "system with apt-get and dpkg")
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines() or [f"exit status {done.returncode}"]
        said = next((line for line in lines if line.startswith(("E:", "ERROR:", "error:"))), lines[-1])
        fail(f"{' '.join(cmd)} failed ({said}); check that the package registry can be reached "
             "(for apt, `apt-get update` first) and run again; the output folder was not changed")
    return done.stdout


def unpack_deb(package: str, work: Path) -> tuple[Path, str]:
    """apt-get download + dpkg -x; returns (unpacked root, version)."""
    run(["apt-get", "download", package], work)
    deb = next(work.glob(f"{package}_*.deb"))
    root = work / package
    run(["dpkg", "-x", deb.name, str(root)], work)
    version = urllib.parse.unquote(deb.name.split("_")[1])   # the epoch's ':' is %3a in the file name
    return root, version


def deb_files(root: Path, wanted: dict[str, str]) -> list[tuple[Path, str]]:
    """(file, licence) for the entries of ``wanted`` found under ``root``."""
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    out = []
    for key, licence in wanted.items():
        if key == "*":
            out += [(p, licence) for p in images]
        elif key.endswith("/*"):
            out += [(p, licence) for p in images if p.parent.name == key[:-2]]
        elif "." in key:
            match = [p for p in images if p.name == key]
            if not match:
                fail(f"{key} not found in the package (a new version?); update the lists")
            out.append((match[0], licence))
        else:  # KDE wallpaper folder: largest image file
            match = [p for p in images if f"/{key}/" in str(p)]
            if not match:
                fail(f"wallpaper {key} not found in the package; update the lists")
            out.append((max(match, key=lambda p: p.stat().st_size), licence))
    return out


def picture_name(path: Path) -> str:
    """The corpus's name of a package's file: a KDE wallpaper's folder (the one above ``contents/``, whose
    light and dark images are both called by their size), else the file's name without its suffix."""
    parts = path.parts
    return parts[parts.index("contents") - 1] if "contents" in parts[1:] else path.stem


def check_names(photos: list, *others: list) -> None:
    """Fail unless every held-out photograph is among ``photos`` and no name is given twice within a
    folder (one file would overwrite the other, and the split would see one name)."""
    names = {entry[0] for entry in photos}
    if missing := sorted((TEST | VAL) - names):
        fail(f"held-out photograph(s) {', '.join(missing)} not in the packages (a new version?): the test or "
             f"validation set would change; update TEST and VAL knowingly")
    for bucket in (photos, *others):
        seen = [entry[0] for entry in bucket]
        if twice := sorted({name for name in seen if seen.count(name) > 1}):
            fail(f"two pictures named {', '.join(twice)}: one would overwrite the other; update picture_name")


def save_scaled(image: Image.Image, dest: Path, max_side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    original = image.size
    image = image.convert("RGB")
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.LANCZOS, reducing_gap=3.0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp.png")
    image.save(tmp, format="PNG")
    os.replace(tmp, dest)
    return original, image.size


def build(out: Path, max_side: int) -> list[list[str]]:
    """Fetch the packages and write the whole corpus into the (new, empty) folder ``out``; returns the rows."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos: list[tuple[str, str, str, object]] = []   # (name, package, licence, source)
        art, mate, opencv = [], [], []
        versions: dict[str, str] = {}
        for table, bucket in ((PHOTOS, photos), (ART, art), (MATE, mate), (OPENCV, opencv)):
            for package, wanted in table.items():
                if package not in versions:
                    print(f"fetching {package} ...", flush=True)
                    versions[package] = unpack_deb(package, work)[1]
                for path, licence in deb_files(work / package, wanted):
                    label = f"opencv_{picture_name(path)}" if bucket is opencv else picture_name(path)
                    bucket.append((label, f"{package} {versions[package]}", licence, path))
        print("fetching the scikit-learn wheel ...", flush=True)
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(work / "wheel"),
             "scikit-learn"], work)
        wheel = next((work / "wheel").glob("scikit_learn-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name, licence in SKLEARN.items():
                data = zf.read(f"sklearn/datasets/images/{name}")
                photos.append((f"sklearn_{Path(name).stem}", wheel.name.split("-")[0] + " " + wheel.name.split("-")[1],
                               licence, Image.open(io.BytesIO(data))))

        check_names(photos, art, mate, opencv)
        split = {**{name: "test" for name in TEST}, **{name: "val" for name in VAL}}
        jobs = [(f"photos/{split.get(n, 'train')}", n, pkg, lic, src) for n, pkg, lic, src in photos]
        jobs += [("art", n, pkg, lic, src) for n, pkg, lic, src in art]
        jobs += [("mate", n, pkg, lic, src) for n, pkg, lic, src in mate]
        jobs += [("opencv", n, pkg, lic, src) for n, pkg, lic, src in opencv]
        for i, (folder, name, package, licence, source) in enumerate(jobs, 1):
            image = Image.open(source) if isinstance(source, Path) else source
            dest = out / folder / f"{name}.png"
            original, size = save_scaled(image, dest, max_side)
            origin = str(source.relative_to(work)) if isinstance(source, Path) else "(bundled)"
            rows.append([folder, dest.name, package, origin, licence, f"{original[0]}x{original[1]}",
                         f"{size[0]}x{size[1]}"])
            print(f"[{i}/{len(jobs)}] {folder}/{dest.name} {size[0]}x{size[1]}", flush=True)
    (out / "train_all").mkdir()
    (out / "train_all" / "photos").symlink_to(Path("..") / "photos" / "train", target_is_directory=True)
    (out / "train_all" / "opencv").symlink_to(Path("..") / "opencv", target_is_directory=True)
    with open(out / "MANIFEST.tsv", "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["split", "file", "source", "original path", "licence", "original size", "size"])
        writer.writerows(rows)
    return rows


def _stop(signum, frame):
    raise KeyboardInterrupt   # SIGTERM as Ctrl-C: the temporary folders are removed on the way out


@contextmanager
def signals_held():
    """Ctrl-C and SIGTERM wait until the block ends, then raise KeyboardInterrupt: the corpus moves into
    place in a few renames, and an interrupt between two would leave half of each corpus.  Python-level
    handlers, not a signal mask: a mask is per thread, and the kernel hands a process's signal to any
    thread that does not block it."""
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda number, frame: caught.append(number))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught:
        raise KeyboardInterrupt


class SwapFailed(Exception):
    """Moving the built corpus into place failed, and undoing the moves failed too (the message says
    where the old corpus lies): the staging folder must not be removed."""


def swap_in(stage: Path, out: Path) -> None:
    """Move the complete corpus built in ``stage`` into ``out`` (renames only), its old folders aside into
    ``stage/old`` (removed with ``stage``), MANIFEST.tsv last.  If a rename fails, or an interrupt comes
    between them, the renames done are undone in reverse, so ``out`` is as it was, and the exception goes
    on (:class:`SwapFailed` if undoing failed too)."""
    old = stage / "old"
    old.mkdir()
    undo: list[tuple[Path, Path]] = []     # (from, to) of each rename that would put a done one back
    try:
        for name in CORPUS:
            if name != "MANIFEST.tsv" and ((out / name).exists() or (out / name).is_symlink()):
                os.replace(out / name, old / name)
                undo.append((old / name, out / name))
            os.replace(stage / name, out / name)     # MANIFEST.tsv: replaces the old one in one step
            undo.append((out / name, stage / name))
    except BaseException:
        try:
            for source, dest in reversed(undo):
                os.replace(source, dest)
        except OSError as exc:
            raise SwapFailed(f"moving the new corpus into {out} failed, and so did putting the old one back "
                             f"({exc}); the old corpus's folders are in {old}, the new one's in {stage}") from exc
        raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (created; existing corpus files are replaced)")
    parser.add_argument("--max-side", type=int, default=1024, help="long side of the written images (default 1024)")
    args = parser.parse_args()
    if args.max_side < 1:
        fail(f"--max-side must be at least 1 (got {args.max_side})")
    out: Path = args.out
    # checked before anything is fetched: a folder that is not a corpus is never emptied
    if out.exists() and not out.is_dir():
        fail(f"{out} is a file; give a folder for the corpus (e.g. data/corpus)")
    created = not out.exists()
    try:
        if not created and not (out / "MANIFEST.tsv").is_file() \
                and any(not p.name.startswith(".") for p in out.iterdir()):
            fail(f"{out} holds other files and no corpus (no MANIFEST.tsv), and its {', '.join(CORPUS[:-1])} "
                 "folders would be replaced; give a new or empty folder")
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))   # hidden: training never reads it
    except OSError as exc:
        fail(f"cannot write to {out} ({exc.strerror}); give a folder you can write to")
    signal.signal(signal.SIGTERM, _stop)
    keep_stage = swapped = False
    try:
        rows = build(stage, args.max_side)
        with signals_held():
            swap_in(stage, out)
            swapped = True
    except KeyboardInterrupt:
        if not swapped:
            fail(f"interrupted; {out} is as it was; run the command again")
        print(f"interrupted after the new corpus was complete in {out}", file=sys.stderr)
    except SwapFailed as exc:
        keep_stage = True
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot build the corpus in {out} ({exc}); {out} is as it was")
    finally:
        if not keep_stage:
            shutil.rmtree(stage, ignore_errors=True)
        if created and not (out / "MANIFEST.tsv").exists():
            try:
                out.rmdir()   # the folder this run made, empty again
            except OSError:
                pass
    counts = {}
    for row in rows:
        counts[row[0]] = counts.get(row[0], 0) + 1
    print("done:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
