"""PatchMatch: nearest-neighbour fields and coarse-to-fine hole filling.

The classical baseline (Barnes et al. 2009; hole filling as in Wexler et al.
2007): :func:`nnf` finds, for every target patch, a similar source patch by
random initialisation, propagation and random search; :func:`inpaint` fills
holes coarse-to-fine, alternating nearest-neighbour search (restricted to
source patches outside the hole) with voting.

The per-scale work runs in two compiled operators (``csrc/``), the same
per-pixel code on the CPU (multi-threaded) and on CUDA:

``torch.ops.nfinpaint.patchmatch_nnf(target, source, source_allowed, active, init_field, patch_size, iterations, seed)``
    images (H, W, C) float32; ``source_allowed`` (Hs, Ws) bool, True = centre
    may be matched (centres whose patch leaves the source never are);
    ``active`` (Ht, Wt) bool = target pixels to search; ``init_field``
    (Ht, Wt, 2) int32 or None. Returns ``field`` (Ht, Wt, 2) int32 absolute
    source centres (y, x) and ``dist`` (Ht, Wt) float32 (-1 where inactive).
    Each iteration = Jacobi jump-flooding propagation (passes with steps
    2^k, ..., 2, 1; 2^k = the largest power of two below the active region's
    extent in the first iteration of a search without init_field, else 2),
    then random search (radius max(Hs, Ws) halved down to 1). Random numbers
    are a hash of (seed, pixel, counter), so the result depends on the seed
    only, not on the backend or the thread count.
``torch.ops.nfinpaint.patchmatch_vote(image, field, weight, hole, patch_size)``
    hole pixels := weighted average of the pixels that the matches of all
    patches covering them put there; other pixels copied.

Patch distance: the mean, over the target patch's pixels that lie inside the
target image and over channels, of the squared difference to the source
patch. Source centres are restricted to positions whose whole patch lies
inside the source; target patches may hang over the target's border (the
outside pixels are skipped, and the mean is over the pixels inside).
"""
from __future__ import annotations

import math
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nfinpaint import _extension
from nfinpaint.masks import mask_plane

__all__ = ["nnf", "inpaint", "resynthesize", "has_source_patch", "patch_distance_reference"]


# ---------------------------------------------------------------- operators
def _nnf_op(target: Tensor, source: Tensor, source_allowed: Tensor, active: Tensor, init_field: Tensor | None,
            patch_size: int, iterations: int, seed: int) -> tuple[Tensor, Tensor]:
    _extension.require(target.device)
    return torch.ops.nfinpaint.patchmatch_nnf(target, source, source_allowed, active, init_field, patch_size,
                                              iterations, seed)


def _vote_op(image: Tensor, field: Tensor, weight: Tensor, hole: Tensor, patch_size: int) -> Tensor:
    _extension.require(image.device)
    return torch.ops.nfinpaint.patchmatch_vote(image, field, weight, hole, patch_size)


def _register_fakes() -> None:
    if not _extension.is_built():
        return

    @torch.library.register_fake("nfinpaint::patchmatch_nnf")
    def _(target, source, source_allowed, active, init_field, patch_size, iterations, seed):
        _extension.same_device("nfinpaint::patchmatch_nnf", target=target, source=source,
                               source_allowed=source_allowed, active=active, init_field=init_field)
        # the kernels' own rules on meta copies, in their words (csrc/input_checks.cpp)
        _extension.check_on_meta(torch.ops.nfinpaint._check_patchmatch_nnf_inputs, target, source, source_allowed,
                                  active, init_field, patch_size, iterations)
        h, w = target.shape[0], target.shape[1]
        return target.new_empty((h, w, 2), dtype=torch.int32), target.new_empty((h, w), dtype=torch.float32)

    @torch.library.register_fake("nfinpaint::patchmatch_vote")
    def _(image, field, weight, hole, patch_size):
        _extension.same_device("nfinpaint::patchmatch_vote", image=image, field=field, weight=weight, hole=hole)
        _extension.check_on_meta(torch.ops.nfinpaint._check_patchmatch_vote_inputs, image, field, weight, hole,
                                  patch_size)
        return torch.empty_like(image, memory_format=torch.contiguous_format)


_register_fakes()


def patch_distance_reference(target: Tensor, source: Tensor, field: Tensor, patch_size: int) -> Tensor:
    """Plain PyTorch patch distances of a field (the op's ``dist``), in float64.

    ``target``/``source`` (H, W, C); ``field`` (Ht, Wt, 2) absolute (y, x)
    centres whose patches lie inside the source.
    """
    r = patch_size // 2
    ht, wt, _ = target.shape
    t = target.double()
    s = source.double()
    total = torch.zeros(ht, wt, dtype=torch.float64, device=target.device)
    count = torch.zeros(ht, wt, dtype=torch.float64, device=target.device)
    ys = torch.arange(ht, device=target.device)[:, None].expand(ht, wt)
    xs = torch.arange(wt, device=target.device)[None, :].expand(ht, wt)
    fy, fx = field[..., 0].long(), field[..., 1].long()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ty, tx = ys + dy, xs + dx
            inside = (ty >= 0) & (ty < ht) & (tx >= 0) & (tx < wt)
            tv = t[ty.clamp(0, ht - 1), tx.clamp(0, wt - 1)]
            sv = s[fy + dy, fx + dx]
            total += torch.where(inside, ((tv - sv) ** 2).sum(-1), 0.0)
            count += inside
    return total / (count * target.shape[2])


# ---------------------------------------------------------------- input handling
def _image_to_chw(image, name: str) -> tuple[Tensor, bool]:
    """(3, H, W) float tensor or (H, W, 3) numpy -> (float32 (C, H, W) tensor, was_numpy)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise ValueError(f"{name}: a numpy image must be (H, W, 3), got shape {image.shape}")
        if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
            # written back as it came: other integer types would be truncated, or taken for 0..255
            raise ValueError(f"{name}: a numpy image must be uint8 (0..255) or float (0..1), got {image.dtype}; "
                             f"convert it first")
        arr = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1), True
    if not isinstance(image, Tensor):
        raise ValueError(f"{name}: expected a (3, H, W) torch tensor or an (H, W, 3) numpy array, got {type(image)}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(f"{name}: a tensor image must be (3, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"{name}: a tensor image must be floating point in [0, 1], got {image.dtype}")
    return image.detach().float(), False  # the ops are not differentiable


def _plane_to_bool(mask, name: str, h: int, w: int, device: torch.device) -> Tensor:
    """(H, W) or (1, H, W) bool/float mask (tensor or numpy) -> (H, W) bool tensor on device (True = set)."""
    plane = mask_plane(mask, name)[0]
    if tuple(plane.shape) != (h, w):
        raise ValueError(f"{name}: got shape {tuple(plane.shape)} for an image of {h}x{w} (height x width); "
                         f"the mask must be the same size")
    # Contiguous: the ops take any strides, but a row-major plane needs no copy there.
    return (plane > 0.5).to(device).contiguous()


def _integer(value) -> int | None:
    """``value`` as a Python int (numpy integers count; floats and bools do not), else None."""
    try:
        return None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        return None


def _check_patch_size(patch_size: int, h: int, w: int, what: str) -> int:
    """``patch_size`` as a Python int (numpy integers are integers too), or ValueError."""
    size = _integer(patch_size)
    if size is None or size < 1 or size % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd integer (e.g. 5 or 7), got {patch_size!r}")
    if size > min(h, w):
        raise ValueError(f"patch_size {size} is larger than the {what} ({h}x{w}); use a smaller patch")
    return size


def _check_count(value, name: str, minimum: int) -> int:
    """``value`` as a Python int >= ``minimum`` (as :func:`_integer` reads it), or ValueError."""
    count = _integer(value)
    if count is None or count < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return count


def _seed64(seed: int) -> int:
    """Any integer seed as the ops' int64 one: seeds in [0, 2**63) unchanged, others reduced modulo 2**63."""
    return int(seed) % (1 << 63)


def _to_hwc(chw: Tensor) -> Tensor:
    return chw.permute(1, 2, 0).contiguous()


# ---------------------------------------------------------------- nearest-neighbour field
def nnf(target, source, patch_size: int = 7, iterations: int = 5, seed: int = 0, source_mask=None):
    """Nearest-neighbour field from ``target`` patches to ``source`` patches.

    target, source: (3, H, W) float tensors (same device) or (H, W, 3) numpy
    arrays (uint8 ones are scaled to [0, 1] first). source_mask: optional (Hs, Ws) bool/float, True = forbidden source
    centre (e.g. the hole). Returns ``(field, dist)``: field (Ht, Wt, 2) int32
    absolute source centres (y, x); dist (Ht, Wt) float32 mean squared
    difference per patch pixel and channel (see the module docstring for
    borders). numpy in -> numpy out. Same seed -> same field, on CPU or CUDA.
    """
    t, t_np = _image_to_chw(target, "target")
    s, _ = _image_to_chw(source, "source")
    if t.shape[0] != s.shape[0]:
        raise ValueError(f"target and source must have the same channels, got {t.shape[0]} and {s.shape[0]}")
    s = s.to(t.device)
    hs, ws = s.shape[1:]
    patch_size = _check_patch_size(patch_size, hs, ws, "source image")
    iterations = _check_count(iterations, "iterations", 0)
    allowed = torch.ones(hs, ws, dtype=torch.bool, device=t.device)
    if source_mask is not None:
        allowed = ~_plane_to_bool(source_mask, "source_mask", hs, ws, t.device)
    r = patch_size // 2
    if not allowed[r:hs - r, r:ws - r].any():
        raise ValueError("source_mask forbids every source patch; leave some source centres unmasked")
    active = torch.ones(t.shape[1], t.shape[2], dtype=torch.bool, device=t.device)
    field, dist = _nnf_op(_to_hwc(t), _to_hwc(s), allowed, active, None, patch_size, iterations, _seed64(seed))
    if t_np:
        return field.numpy(), dist.numpy()
    return field, dist


# ---------------------------------------------------------------- hole filling
def _dilate(mask: Tensor, radius: int) -> Tensor:
    """(H, W) bool -> pixels within a (2r+1)^2 square of a True pixel (separable: rows, then columns)."""
    if radius == 0:
        return mask
    k = 2 * radius + 1
    m = F.max_pool2d(mask[None, None].float(), (1, k), 1, (0, radius))
    return F.max_pool2d(m, (k, 1), 1, (radius, 0))[0, 0] > 0


def _halve(image: Tensor, hole: Tensor) -> tuple[Tensor, Tensor]:
    """Next pyramid level: 2x2 box average (edge-replicated to even size); a
    coarse pixel is a hole if any of its fine pixels is."""
    h, w = hole.shape
    pad = (0, w % 2, 0, h % 2)
    img = F.avg_pool2d(F.pad(image[None], pad, mode="replicate"), 2)[0]
    m = F.max_pool2d(F.pad(hole[None, None].float(), pad, mode="replicate"), 2)[0, 0] > 0
    return img, m


def _usable_sources(hole: Tensor, radius: int) -> int:
    h, w = hole.shape
    return int((~_dilate(hole, radius))[radius:h - radius, radius:w - radius].sum())


def has_source_patch(hole: Tensor, patch_size: int) -> bool:
    """Whether the (H, W) bool ``hole`` leaves a whole ``patch_size`` square of known pixels to copy from."""
    h, w = hole.shape
    return patch_size <= min(h, w) and _usable_sources(hole, patch_size // 2) > 0


# Halving stops once every hole pixel is within this many patch radii of a
# known pixel: the coarsest hole is at most ~2.5 patches thick. Measured on
# 256x256 skimage photos (astronaut, coffee, chelsea; square and scribble
# holes): 3 gave +0.9 to +3.2 dB hole PSNR over 1 on astronaut and coffee
# (with 1 the coarsest image is so small that patches of unrelated content,
# e.g. the flag, get copied) and -0.1 to -0.2 dB on chelsea, at the same speed.
_COARSEST_REACH = 3


def _pyramid(image: Tensor, hole: Tensor, patch_size: int, count: int | None = None) -> list[tuple[Tensor, Tensor]]:
    """Levels from fine to coarse: ``count`` of them, or by default stop halving once every hole pixel
    is within _COARSEST_REACH patch radii of a known pixel; in both cases stop before the image gets
    smaller than 2 patches or runs short of source patches."""
    r = patch_size // 2
    levels = [(image, hole)]
    while True:
        img, m = levels[-1]
        if len(levels) == count or (count is None and bool(_dilate(~m, _COARSEST_REACH * r)[m].all())):
            break
        nxt = _halve(img, m)
        if min(nxt[1].shape) < 2 * patch_size or _usable_sources(nxt[1], r) < 4 * patch_size * patch_size:
            break
        levels.append(nxt)
    return levels


def _fill_from_border(image: Tensor, hole: Tensor) -> Tensor:
    """Initial guess: fill the hole inwards, each ring the mean of its known 3x3 neighbours."""
    known = (~hole).float()[None, None]
    est = image[None] * known
    ones = torch.ones(1, 1, 3, 3, device=image.device, dtype=image.dtype)
    channels = image.shape[0]
    while bool((known == 0).any()):
        s = F.conv2d(est, ones.expand(channels, 1, 3, 3), padding=1, groups=channels)
        c = F.conv2d(known, ones, padding=1)
        new = (known == 0) & (c > 0)
        est = torch.where(new, s / c.clamp_min(1), est)
        known = known + new.float()
    return est[0]


def _upsample_field(field: Tensor, h: int, w: int) -> Tensor:
    """Coarse field -> fine field: fine (y, x) starts from 2 * coarse(y//2, x//2) + (y%2, x%2)."""
    up = field.repeat_interleave(2, 0).repeat_interleave(2, 1)[:h, :w] * 2
    ys = torch.arange(h, device=field.device, dtype=torch.int32) % 2
    xs = torch.arange(w, device=field.device, dtype=torch.int32) % 2
    up[..., 0] += ys[:, None]
    up[..., 1] += xs[None, :]
    return up.contiguous()


def _vote_weights(dist: Tensor, active: Tensor) -> Tensor:
    """Wexler-style similarity weights exp(-d / (2 sigma^2)), sigma^2 = 75th percentile of the active distances."""
    weight = torch.zeros_like(dist)
    d = dist[active]
    if d.numel() > 0:
        # kthvalue, not quantile: quantile refuses inputs above 16M elements.
        sigma2 = d.kthvalue(max(1, (3 * d.numel() + 3) // 4)).values.clamp_min(1e-6)
        exponent = d / (-2 * sigma2)
        # floored at e^-80 (a normal float32): a pixel whose every vote has a subnormal weight lost its
        # average in the vote's float32 sums (1e-44 weights gave 4e-2 errors); inf (no finite match)
        # and NaN stay no vote (weight 0)
        weight[active] = torch.where(exponent > -math.inf, torch.exp(exponent.clamp_min(-80.0)), 0.0)
    return weight


def _search_and_vote(est_hwc: Tensor, allowed: Tensor, targets: Tensor, hole: Tensor, init_field: Tensor | None,
                     patch_size: int, iterations: int, seed: int) -> tuple[Tensor, Tensor]:
    """One EM step: every ``targets`` patch matched to its nearest ``allowed`` one, then the hole voted.
    Returns (the voted image, the field)."""
    field, dist = _nnf_op(est_hwc, est_hwc, allowed, targets, init_field, patch_size, iterations, seed)
    return _vote_op(est_hwc, field, _vote_weights(dist, targets), hole, patch_size), field


def _call_seed(seed: int, level: int, step: int) -> int:
    return _seed64(int(seed) * 1_000_003 + level * 1009 + step)


def resynthesize(image: Tensor, hole: Tensor, patch_size: int = 7, iterations: int = 2, seed: int = 0) -> Tensor:
    """One search-and-vote round at one scale, from a first guess: every patch that touches the hole is
    matched to its nearest patch of known pixels (PatchMatch from scratch, ``iterations`` rounds), and
    each hole pixel becomes the weighted vote of those matches (what one EM step of :func:`inpaint` does
    at its finest scale).  ``image`` (3, H, W) float tensor whose hole pixels hold the guess; ``hole``
    (H, W) on its device, bool or 0/1 (above 0.5 is a hole, as :func:`inpaint`'s mask).  Returns a new
    (3, H, W); pixels outside the hole are the input's.  Not differentiable (a backward through it
    raises).  ValueError when no whole patch of known pixels exists (see :func:`has_source_patch`), or
    for a NaN or infinite value (the guess's came back unchanged: no patch over it matches)."""
    if image.dim() != 3 or hole.shape != image.shape[-2:]:
        raise ValueError(f"resynthesize takes a (C, H, W) image and its (H, W) hole; got shapes "
                         f"{tuple(image.shape)} and {tuple(hole.shape)}")
    if hole.dtype != torch.bool:     # a 0/1 float hole ran the whole search, then the vote refused it
        hole = _plane_to_bool(hole, "hole", *hole.shape, hole.device)
    if not bool(torch.isfinite(image).all()):
        raise ValueError("image has NaN or infinite values: resynthesize needs a finite guess in the hole and "
                         "finite known pixels")
    patch_size = _check_patch_size(patch_size, *hole.shape, "image")
    if not has_source_patch(hole, patch_size):
        raise ValueError(f"the hole leaves no {patch_size}x{patch_size} patch fully outside it to copy from")
    r = patch_size // 2
    forbidden = _dilate(hole, r)            # centres whose patch touches the hole: the targets, never a source
    iterations = _check_count(iterations, "iterations", 0)
    voted, _ = _search_and_vote(_to_hwc(image.float()), ~forbidden, forbidden, hole, None, patch_size, iterations,
                                _seed64(seed))
    # the vote runs in float32: the known pixels are taken from the input, not back from float32
    return torch.where(hole, voted.permute(2, 0, 1).to(image.dtype), image)


def inpaint(image, mask, patch_size: int = 7, iterations: int = 2, seed: int = 0, device=None, em_steps: int = 3,
            guide: Tensor | None = None, levels: int | None = None):
    """Fill the holes of ``image`` by coarse-to-fine PatchMatch + voting.

    image: (3, H, W) float tensor in [0, 1], or (H, W, 3) numpy float/uint8
    (returned in the same type, layout and dtype). mask: (H, W) or (1, H, W)
    bool/float, True/1 = hole; any number of irregular holes. Pixels outside
    the hole are returned bit-identical. iterations: PatchMatch iterations per
    EM step; em_steps: search+vote rounds per scale. Runs on the image's
    device (CUDA for a GPU tensor) unless ``device`` says otherwise.
    guide: optional (3, H, W) float tensor whose hole pixels are a first guess
    (e.g. a learned fill): the search starts from it, shrunk to the coarsest
    level, instead of from the border, and that level gets ``em_steps`` rounds
    like the others (not twice as many: the structure is the guide's).
    levels: the number of pyramid levels (default: enough for the hole to be
    at most ~2.5 patches thick at the coarsest).
    """
    img, was_numpy = _image_to_chw(image, "image")
    c, h, w = img.shape
    dev = torch.device(device) if device is not None else img.device
    hole = _plane_to_bool(mask, "mask", h, w, dev)
    patch_size = _check_patch_size(patch_size, h, w, "image")
    iterations = _check_count(iterations, "iterations", 0)
    em_steps = _check_count(em_steps, "em_steps", 1)
    if not bool(hole.any()):
        raise ValueError("mask has no hole (no pixel is 1/True); nothing to fill")
    r = patch_size // 2
    if _usable_sources(hole, r) < 1:
        raise ValueError(f"the hole leaves no {patch_size}x{patch_size} patch fully outside it to copy from; "
                         "use a smaller hole or a smaller patch_size")
    _extension.require(dev)
    # what lies under the hole is unknown and never read, but NaN there (a common "missing" marker)
    # would survive the border fill's multiply-by-zero and spread through every convolution
    work = torch.where(hole, 0.0, img.to(dev))
    if not bool(torch.isfinite(work).all()):
        # a known NaN or inf pixel beside the hole would reach the fill through the border fill's
        # convolutions, and no match could outvote it (every patch over it costs inf)
        raise ValueError("image has NaN or infinite values outside the hole; mark those pixels as hole "
                         "(mask = 1) or replace them")
    if levels is not None:
        levels = _check_count(levels, "levels", 1)
    if guide is not None:
        guide, _ = _image_to_chw(guide, "guide")
        if guide.shape != img.shape:
            raise ValueError(f"guide must have the image's shape {tuple(img.shape)}, got {tuple(guide.shape)}")
        guide = torch.where(hole, guide.to(dev), work)
        if not bool(torch.isfinite(guide).all()):
            raise ValueError("guide has NaN or infinite values in the hole; give a finite first guess")
    pyramid = _pyramid(work, hole, patch_size, levels)
    if guide is not None:       # the guide shrunk as the image is, level by level
        guides, lvl_guide, lvl_hole = [guide], guide, hole
        for _ in range(len(pyramid) - 1):
            lvl_guide, lvl_hole = _halve(lvl_guide, lvl_hole)
            guides.append(lvl_guide)

    est = field = None
    for level in range(len(pyramid) - 1, -1, -1):
        lvl_img, lvl_hole = pyramid[level]
        lh, lw = lvl_hole.shape
        forbidden = _dilate(lvl_hole, r)  # centres whose patch touches the hole: never a source...
        allowed = ~forbidden              # ...and the only targets whose match matters
        if est is None and guide is not None:
            est = torch.where(lvl_hole, guides[level], lvl_img)
        elif est is None:
            est = _fill_from_border(lvl_img, lvl_hole)
        else:
            up = F.interpolate(est[None], size=(lh, lw), mode="bilinear", align_corners=False)[0]
            est = torch.where(lvl_hole, up, lvl_img)
        est_hwc = _to_hwc(est)
        if field is not None:
            # Vote the upsampled coarse matches first: a sharper start than the bilinear guess.
            est_hwc, field = _search_and_vote(est_hwc, allowed, forbidden, lvl_hole, _upsample_field(field, lh, lw),
                                              patch_size, 0, _call_seed(seed, level, 0))
        # The coarsest scale sets the structure and is cheap: twice the rounds (a guide sets it instead).
        rounds = 2 * em_steps if level == len(pyramid) - 1 and guide is None else em_steps
        for step in range(rounds):
            est_hwc, field = _search_and_vote(est_hwc, allowed, forbidden, lvl_hole, field, patch_size, iterations,
                                              _call_seed(seed, level, step + 1))
        est = est_hwc.permute(2, 0, 1)

    filled = est.to(img.device)
    if was_numpy:
        hole_np = hole.cpu().numpy()
        out = image.copy()
        vals = filled.permute(1, 2, 0).cpu().numpy()[hole_np]
        if image.dtype == np.uint8:
            out[hole_np] = np.clip(np.rint(vals * 255.0), 0, 255).astype(np.uint8)
        else:
            out[hole_np] = vals.astype(image.dtype)
        return out
    return torch.where(hole.to(image.device), filled.to(image.dtype), image)
