"""Pairing a folder of pictures with their masks, for ``python -m nfinpaint.inpaint --images DIR``.

A picture ``NAME.ext`` in ``--images DIR`` is paired with, in ``--masks``:

* a file: that one mask, for every picture (the mask file itself, if it lies among the
  pictures, is not one of them);
* a folder: the mask of the same stem (``NAME.*``), else LaMa's layout ``NAME_mask*.png``
  (several such masks of one picture are combined: their holes together).  When the masks
  sit beside the pictures (the same folder), files named ``*_mask*`` are masks, not pictures.

Its output is ``OUT/NAME.png`` (PNG: pixels outside the holes exact, alpha kept).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nfinpaint.images import IMAGE_SUFFIXES

_LAMA_MASK = re.compile(r"^(?P<stem>.+)_mask[^/]*$")


@dataclass
class Pair:
    image: Path
    masks: list[Path] = field(default_factory=list)
    output: Path | None = None
    problem: str = ""


def shown(name: str | Path) -> str:
    """``name`` as the list of pictures not filled prints it: as it is when plain, else quoted with
    escapes (repr), so that a newline in a file name cannot split an entry (nor a quote fake one)."""
    name = str(name)
    return name if name.isprintable() and not set(name) & set("'\"\\") else repr(name)


def _images_in(folder: Path) -> list[Path]:
    # a subfolder named like a picture (holiday.png/) is not one: subfolders are not read; a link
    # that leads nowhere, or a pipe or device named like a picture, is listed, so that the run
    # reports it (reading refuses it with its reason) rather than skip it without a word
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and not p.is_dir())


def pair(images: Path, masks: Path, output: Path) -> list[Pair]:
    """Every picture of ``images`` with its mask(s) and output; a pair that cannot be made says why."""
    same_folder = masks.is_dir() and masks.resolve() == images.resolve()
    # one mask file for all may lie among the pictures: it is the mask, not a picture to fill
    mask_file = None if masks.is_dir() else masks.resolve()
    pictures = [p for p in _images_in(images)
                if not (same_folder and _LAMA_MASK.match(p.stem)) and p.resolve() != mask_file]
    by_stem: dict[str, list[Path]] = {}
    lama: dict[str, list[Path]] = {}
    if masks.is_dir():
        for m in _images_in(masks):
            by_stem.setdefault(m.stem, []).append(m)
            found = _LAMA_MASK.match(m.stem)
            if found and m.suffix.lower() == ".png":
                lama.setdefault(found["stem"], []).append(m)
    stems: dict[str, int] = {}
    for p in pictures:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    out = []
    for picture in pictures:
        item = Pair(picture, output=output / f"{picture.stem}.png")
        if stems[picture.stem] > 1:
            item.problem = f"another picture has the stem {picture.stem!r}: both would write {shown(item.output.name)}"
        elif not masks.is_dir():
            item.masks = [masks]
        else:
            own = [m for m in by_stem.get(picture.stem, []) if m.resolve() != picture.resolve()]
            if len(own) > 1:
                item.problem = (f"{len(own)} masks named {shown(picture.stem + '.*')} in {shown(masks)}: "
                                + ", ".join(shown(m.name) for m in own))
            item.masks = own or lama.get(picture.stem, [])
            if not item.masks and not item.problem:
                item.problem = (f"no mask: neither {shown(picture.stem + '.*')} nor "
                                f"{shown(picture.stem + '_mask*.png')} in {shown(masks)}")
        out.append(item)
    return out
