"""The learned fill of whole pictures against scikit-image's biharmonic fill, on the CPU.

Run: ``pytest benchmarks/bench_fullres.py -s``.  Rows (medians, ratios from the same run):

- a 512x384 photograph with one ~56 px hole (the medium hole family);
- a 2048x1536 photograph with three such holes (at that picture's scale);

each filled by ``nfinpaint.inpaint.inpaint_image`` with the shipped generator (the
code path of ``python -m nfinpaint.inpaint``: each pass averaged with its mirror image's, each
window blended with its patch re-synthesis), by the same without the patch blend
(``patch_blend=0``) and with one pass per window besides (``mirror=False``), and by
``skimage.restoration.inpaint_biharmonic``;
peak resident memory of a fresh process filling the large picture;

- a 4032x3024 photograph (a phone's 12 megapixels) with one hole of the large family at that scale
  (~1,000 px thick: filled on a copy shrunk sixfold, then upsampled and relaxed; until 2026-12-04 a
  full-resolution pass followed, which the tiles were made for), filled by ``inpaint_image`` with
  the network run in tiles (``neural_fill.TILE``, the default) and in one pass over the window
  (``TILE = None``, as before tiles), each in a fresh process: seconds, peak resident memory, and the
  largest difference between the two fills (the tiles reproduce the network's pass to float rounding,
  2.4e-7 without the patch blend; its PatchMatch search can pick other patches from such differences:
  7e-5 and 1.05e-3 measured with two generators);
- the same photograph with long scratches (strokes 6-12 px wide across the picture, one window with
  the holes' box nearly the whole picture), filled three ways, each in a fresh process: with the short
  tiles of a window of thin holes (``neural_fill.THIN_TILING``, the default since 2026-12-05), with the
  exact pass (``THIN_TILING = None``: tiles of ``TILE`` with the network's whole halo, each shrunk to
  its own scratches' box by ``fullres_generator.tile_plan``) and with whole tiles (the plan before
  2026-12-04, defined here as the reference): seconds, peak memory, and the largest difference from
  the reference (the exact pass is the same computation for every hole pixel: 0 expected; the short
  tiles give each pixel less context, so their fill differs a little);
- on a CPU that computes bfloat16 natively (AMX or AVX512-BF16; skipped elsewhere), ``inpaint --half``
  (the network in bfloat16 autocast) against float32: the 512x384 picture with one ~56 px hole, and the
  12-megapixel photograph with its large hole and with its scratches, each in a fresh process: seconds,
  speed-up, peak memory and the largest difference between the two fills, in grey levels.

Nothing is asserted about time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
from timing import measure, print_table

skimage_data = pytest.importorskip("skimage.data")
from skimage.restoration import inpaint_biharmonic  # noqa: E402
from skimage.transform import resize  # noqa: E402

from nfinpaint import devices, fullres_generator, generator_io, generators, masks, neural_fill  # noqa: E402
from nfinpaint.inpaint import inpaint_image  # noqa: E402

SHIPPED = generator_io.open_generator(None)
pytestmark = pytest.mark.skipif(SHIPPED is None or not generators.is_full_resolution(SHIPPED.generator),
                                reason="no full-resolution shipped generator installed")


def picture(height: int, width: int) -> torch.Tensor:
    img = resize(skimage_data.astronaut(), (height, width), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


def medium_holes(height: int, width: int, count: int) -> torch.Tensor:
    """``count`` objects of ~56 px (the medium family as drawn on a 512x384 picture), one in each of
    ``count`` tiles across the picture."""
    hole = torch.zeros(1, height, width)
    drawn = masks.family_masks("medium", count, 384, 512, seed=7, scale="picture")
    tile = width // count
    for i in range(count):
        ys, xs = torch.nonzero(drawn[i, 0] > 0.5, as_tuple=True)
        top = (height - 384) // 2
        left = i * tile + (tile - 512) // 2 if tile >= 512 else min(i * tile, width - 512)
        hole[0, top + ys, (left + xs).clamp(0, width - 1)] = 1
    return hole


# The child's own peak: /proc/self/status's VmHWM. Not getrusage's ru_maxrss, which Linux carries across
# exec from the process that forked it: run from a pytest process holding 1.8 GB, both readings came out
# 1830 MiB, the parent's size, not the fill's.
PEAK_MIB = """
def peak_mib():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

PEAK = """
import json, resource, sys, torch
""" + PEAK_MIB + """
sys.path.insert(0, {bench!r})
from bench_fullres import picture, medium_holes, SHIPPED
from nfinpaint.inpaint import inpaint_image
image, hole = picture(1536, 2048), medium_holes(1536, 2048, 3)
before = peak_mib()
inpaint_image(image, hole, generator=SHIPPED.generator, log=lambda s: None)
print(json.dumps({{"peak_mib": peak_mib(), "before_mib": before}}))
"""


def _with(fill_picture, **options):
    def fill(*args, **kwargs):
        return fill_picture(*args, **kwargs, **options)
    return fill


def test_learned_fill_against_biharmonic(monkeypatch):
    rows = []
    for (h, w), count in (((384, 512), 1), ((1536, 2048), 3)):
        image, hole = picture(h, w), medium_holes(h, w, count)
        array, boolean = image.permute(1, 2, 0).double().numpy(), hole[0].numpy() > 0.5
        reps = 5 if w <= 512 else 2
        ours = measure(lambda: inpaint_image(image, hole, generator=SHIPPED.generator, log=lambda s: None),
                       warmup=1, reps=reps)
        others = []
        for options in ({"patch_blend": 0.0}, {"patch_blend": 0.0, "mirror": False}):
            with monkeypatch.context() as patch:
                patch.setattr(neural_fill, "fill_picture", _with(neural_fill.fill_picture, **options))
                others.append(measure(lambda: inpaint_image(image, hole, generator=SHIPPED.generator,
                                                            log=lambda s: None), warmup=1, reps=reps))
        theirs = measure(lambda: inpaint_biharmonic(array, boolean, channel_axis=-1), warmup=1, reps=reps)
        rows.append([f"{w}x{h}, {count} hole(s) of ~56 px", f"{ours.median_ms:.0f}",
                     *(f"{other.median_ms:.0f}" for other in others), f"{theirs.median_ms:.0f}",
                     f"{ours.median_ms / theirs.median_ms:.2f}x"])
    script = PEAK.format(bench=os.path.dirname(__file__))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak = json.loads(result.stdout.strip().splitlines()[-1])
    print_table(f"Learned fill vs biharmonic, CPU, {torch.get_num_threads()} threads (ms, medians)",
                ["picture", "learned fill (inpaint)", "no patch blend", "no blend, one pass", "skimage biharmonic",
                 "ratio"], rows)
    print(f"peak resident memory filling 2048x1536 with 3 holes: {peak['peak_mib']:.0f} MiB "
          f"({peak['before_mib']:.0f} MiB after imports and the picture)")


FRESH_FILL = """
import json, resource, sys, time, torch
""" + PEAK_MIB + """
sys.path.insert(0, {bench!r})
from bench_fullres import picture, SHIPPED
from nfinpaint.inpaint import inpaint_image
image = picture(3024, 4032)
{setup}
before = peak_mib()
start = time.perf_counter()
filled, _ = inpaint_image(image, hole, generator=SHIPPED.generator, log=lambda s: None, half={half!r})
seconds = time.perf_counter() - start
torch.save(filled, {out!r})
print(json.dumps({{"seconds": seconds, "peak_mib": peak_mib(),
                   "before_mib": before, "hole": float(hole.mean())}}))
"""


def fill_in_fresh_process(setup: str, half: bool = False) -> tuple[dict, torch.Tensor]:
    """Fill a 4032x3024 picture with the ``hole`` that ``setup`` (Python lines) makes, in a fresh process
    (its peak memory is the fill's), the network in bfloat16 with ``half``: its seconds, peak and hole
    share, and the fill."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "fill.pt")
        script = FRESH_FILL.format(bench=os.path.dirname(__file__), setup=setup, out=out, half=half)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1]), torch.load(out)


def test_large_photograph_in_tiles_against_one_pass():
    rows, fills = [], []
    for label, tile in ((f"tiles of {neural_fill.TILE} px (default)", neural_fill.TILE), ("one pass", None)):
        run, fill = fill_in_fresh_process(f"from nfinpaint import masks, neural_fill\nneural_fill.TILE = {tile!r}\n"
                                          "hole = masks.family_masks('large', 1, 3024, 4032, seed=3, scale='picture')[0]")
        fills.append(fill)
        rows.append([label, f"{run['seconds']:.1f}", f"{run['peak_mib']:.0f}", f"{run['before_mib']:.0f}"])
    print_table(f"4032x3024, one large hole ({run['hole'] * 100:.0f}% of the picture), CPU, "
                f"{torch.get_num_threads()} threads", ["network", "seconds", "peak MiB", "MiB before the fill"], rows)
    print(f"largest difference between the two fills: {float((fills[0] - fills[1]).abs().max()):.2e}")


def scratches(height: int, width: int) -> torch.Tensor:
    """(1, H, W) long scratches 6-12 px wide, as on a scanned print: one window, most tiles crossed."""
    return masks.stroke_masks(1, height, width, seed=11, strokes=(5, 5), vertices=(3, 3), brush=(6, 12),
                              length=(800, 1400))[0]


def whole_tile_plan(mask: torch.Tensor, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """The reference: the holes' box cut by tile_spans into whole tiles, empty ones left out."""
    stride = fullres_generator.STRIDE
    holes = mask.amax(dim=(0, 1)) > 0.5
    h, w = holes.shape
    rows, cols = torch.nonzero(holes, as_tuple=True)
    tile -= tile % stride
    return [(top, bottom, left, right)
            for top, bottom in fullres_generator.tile_spans(int(rows.min()), int(rows.max()), h + (-h) % stride, tile, halo)
            for left, right in fullres_generator.tile_spans(int(cols.min()), int(cols.max()), w + (-w) % stride, tile,
                                                            halo)
            if bool(holes[top:bottom, left:right].any())]


def test_scratches_across_a_large_photograph_in_short_and_shrunk_tiles_against_whole_tiles():
    rows, fills = [], []
    for label, setup in (("short tiles of a thin window (default)", ""),
                         ("exact pass, tiles shrunk to their scratches", "neural_fill.THIN_TILING = None\n"),
                         ("exact pass, whole tiles (reference)", "neural_fill.THIN_TILING = None\n"
                                                                "fullres_generator.tile_plan = whole_tile_plan\n")):
        run, fill = fill_in_fresh_process("from bench_fullres import scratches, whole_tile_plan\n"
                                          "from nfinpaint import fullres_generator, neural_fill\n" + setup +
                                          "hole = scratches(3024, 4032)")
        fills.append(fill)
        rows.append([label, f"{run['seconds']:.1f}", f"{run['peak_mib']:.0f}"])
    for row in rows:
        row.append(f"{float(rows[-1][1]) / float(row[1]):.2f}x")
    for row, fill in zip(rows, fills):
        row.append(f"{float((fill - fills[-1]).abs().max()) * 255:.2f}")
    print_table(f"4032x3024, five scratches 6-12 px wide ({run['hole'] * 100:.1f}% of the picture), CPU, "
                f"{torch.get_num_threads()} threads", ["network", "seconds", "peak MiB", "speed-up",
                                                      "largest difference from the reference (grey levels)"], rows)


@pytest.mark.skipif(not devices.cpu_has_bf16(), reason="inpaint --half runs on a CPU only where it computes "
                                                       "bfloat16 natively (AMX or AVX512-BF16); this one does not")
def test_half_precision_on_a_cpu_with_native_bfloat16():
    rows = []
    for label, (h, w, count), reps in (("512x384, one ~56 px hole", (384, 512, 1), 5),
                                       ("2048x1536, three ~56 px holes", (1536, 2048, 3), 3)):
        image, hole = picture(h, w), medium_holes(h, w, count)
        times = [measure(lambda: inpaint_image(image, hole, generator=SHIPPED.generator, log=lambda s: None,
                                               half=half), warmup=1, reps=reps) for half in (False, True)]
        fills = [inpaint_image(image, hole, generator=SHIPPED.generator, log=lambda s: None, half=half)[0]
                 for half in (False, True)]
        rows.append([label, f"{times[0].median_ms / 1000:.3f}", f"{times[1].median_ms / 1000:.3f}",
                     f"{times[0].median_ms / times[1].median_ms:.2f}x", "",
                     f"{float((fills[0] - fills[1]).abs().max()) * 255:.1f}"])
    for label, setup in (("4032x3024, one large hole",
                          "from nfinpaint import masks\n"
                          "hole = masks.family_masks('large', 1, 3024, 4032, seed=3, scale='picture')[0]"),
                         ("4032x3024, five scratches 6-12 px wide",
                          "from bench_fullres import scratches\nhole = scratches(3024, 4032)")):
        (full, full_fill), (half, half_fill) = (fill_in_fresh_process(setup, half=h) for h in (False, True))
        rows.append([label, f"{full['seconds']:.1f}", f"{half['seconds']:.1f}", f"{full['seconds'] / half['seconds']:.2f}x",
                     f"{full['peak_mib']:.0f} / {half['peak_mib']:.0f}",
                     f"{float((full_fill - half_fill).abs().max()) * 255:.1f}"])
    print_table(f"inpaint --half (bfloat16) against float32, CPU, {torch.get_num_threads()} threads (seconds; "
                f"the 512x384 picture's are medians of 5, the 2048x1536 one's of 3)",
                ["picture", "float32", "bfloat16", "speed-up", "peak MiB (fp32 / bf16)", "largest difference (grey levels)"],
                rows)
