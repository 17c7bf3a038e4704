"""Data folders that trap a naive scan, for the commands' ``--data`` tests (train and evaluate).

``scan_trap(folder, case)`` writes three 40x40 pictures (one in sub/) and either a link loop
(sub/loop -> ..) or a FIFO (pipe.png), and returns the warning the command prints about it.
``run_within(argv, cwd, what)`` runs a command in a subprocess with a time limit, so that a scan that
blocks on the FIFO fails the test instead of hanging it.
"""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCAN_TRAPS = ("link loop", "fifo")
LIMIT_S = 300


def scan_trap(folder: Path, case: str) -> str:
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for name in ("a.png", "b.png", "sub/c.png"):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)).save(folder / name)
    if case == "link loop":
        (folder / "sub" / "loop").symlink_to("..")     # walked, it reached every picture again, without end
        return f"warning: {folder}: dropped 1 duplicate path(s) reached again through links"
    os.mkfifo(folder / "pipe.png")                     # opening it to read blocks until a writer comes
    return f"warning: skipping {folder / 'pipe.png'}: not a regular file"


def run_within(argv: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=LIMIT_S, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not finish in {LIMIT_S} s")
