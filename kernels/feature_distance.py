"""Equation 2 of the paper, the (optionally weighted) feature distance, in Triton.

Same semantics as :func:`nfinpaint.ops.feature_distance_reference`, which is
the ground truth the tests hold this to: loss = sum of weight·(fake − real)²,
``weight`` None, (N, 1, h, w) (broadcast over channels) or (N, C, h, w);
``reduction`` "sum" (default), "mean" (÷ fake.numel()) or "per_sample" ((N,)).
The result is float32.

The forward is one pass: each program squares and weights one (channels ×
positions) tile in float32 and writes its partial sum; the partials are summed
per sample.  The backward writes 2·weight·(fake − real)·dloss/dL_n in
``fake``'s dtype and memory format (NCHW-contiguous when H and W of ``fake`` do not
merge, e.g. a transposed map); ``real`` gets its negation; ``weight`` (a
resized hole mask) gets no gradient.  Inputs are read through their strides,
so contiguous and channels-last tensors need no copy.
"""
from __future__ import annotations

import torch
try:
    import triton
    import triton.language as tl
except ImportError:   # no Triton wheel for this platform: the ops say so when called
    triton = tl = None
from torch import Tensor

from nfinpaint.kernels.launch import (LazyKernel, as_matrix_view, cdiv, check_sample_offsets,
                                      device_guard, folded_grid, grad_like, require_triton_path,
                                      triton_path_available)
from nfinpaint.ops import check_reduction, feature_distance_reference

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------- kernels

def _feature_dist_partials(f_ptr, r_ptr, w_ptr, partial_ptr, C, HW, partial_stride,
                           sf_n, sf_c, sf_k, sr_n, sr_c, sr_k, sw_n, sw_c, sw_k,
                           HAS_WEIGHT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    # One 1-D grid: program id = sample * tiles + tile, tile = channel tile * position
    # tiles + position tile (grid axes 1/2 stop at 65,535).
    tiles_k = tl.cdiv(HW, BLOCK_K)
    tiles = tl.cdiv(C, BLOCK_C) * tiles_k
    pid = tl.program_id(0)
    n = (pid // tiles).to(tl.int64)
    tile = pid % tiles
    offs_c = (tile // tiles_k) * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_k = (tile % tiles_k) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = (offs_c[:, None] < C) & (offs_k[None, :] < HW)
    # fp32 right after the load: the interpreter mis-computes half arithmetic.
    f = tl.load(f_ptr + n * sf_n + offs_c[:, None] * sf_c + offs_k[None, :] * sf_k,
                mask=mask, other=0.0).to(tl.float32)
    r = tl.load(r_ptr + n * sr_n + offs_c[:, None] * sr_c + offs_k[None, :] * sr_k,
                mask=mask, other=0.0).to(tl.float32)
    d = f - r
    sq = d * d
    if HAS_WEIGHT:
        w = tl.load(w_ptr + n * sw_n + offs_c[:, None] * sw_c + offs_k[None, :] * sw_k,
                    mask=mask, other=0.0).to(tl.float32)
        sq = sq * w
    total = tl.sum(tl.sum(sq, axis=1), axis=0)
    tl.store(partial_ptr + n * partial_stride + tile, total)


def _feature_dist_grad(f_ptr, r_ptr, w_ptr, dloss_ptr, dloss_stride, scale, g_ptr, C, HW,
                       sf_n, sf_c, sf_k, sr_n, sr_c, sr_k, sw_n, sw_c, sw_k, sg_n, sg_c, sg_k,
                       HAS_WEIGHT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    tiles_k = tl.cdiv(HW, BLOCK_K)
    tiles = tl.cdiv(C, BLOCK_C) * tiles_k
    pid = tl.program_id(0)
    n = (pid // tiles).to(tl.int64)
    tile = pid % tiles
    offs_c = (tile // tiles_k) * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_k = (tile % tiles_k) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = (offs_c[:, None] < C) & (offs_k[None, :] < HW)
    f = tl.load(f_ptr + n * sf_n + offs_c[:, None] * sf_c + offs_k[None, :] * sf_k,
                mask=mask, other=0.0).to(tl.float32)
    r = tl.load(r_ptr + n * sr_n + offs_c[:, None] * sr_c + offs_k[None, :] * sr_k,
                mask=mask, other=0.0).to(tl.float32)
    # 2·(incoming gradient of sample n; stride 0 for a scalar loss)·(1 or 1/numel).
    g = (f - r) * (2.0 * scale * tl.load(dloss_ptr + n * dloss_stride).to(tl.float32))
    if HAS_WEIGHT:
        w = tl.load(w_ptr + n * sw_n + offs_c[:, None] * sw_c + offs_k[None, :] * sw_k,
                    mask=mask, other=0.0).to(tl.float32)
        g = g * w
    tl.store(g_ptr + n * sg_n + offs_c[:, None] * sg_c + offs_k[None, :] * sg_k,
             g.to(g_ptr.dtype.element_ty), mask=mask)


def _configs():
    return [
        triton.Config({"BLOCK_C": 32, "BLOCK_K": 128}, num_warps=4),
        triton.Config({"BLOCK_C": 16, "BLOCK_K": 256}, num_warps=4),
        triton.Config({"BLOCK_C": 64, "BLOCK_K": 64}, num_warps=8),
        triton.Config({"BLOCK_C": 128, "BLOCK_K": 32}, num_warps=8),
    ]


_PARTIALS = LazyKernel(_feature_dist_partials, _configs, key=["C", "HW"],
                       interpret_meta={"BLOCK_C": 16, "BLOCK_K": 16})
_GRAD = LazyKernel(_feature_dist_grad, _configs, key=["C", "HW"],
                   interpret_meta={"BLOCK_C": 16, "BLOCK_K": 16})


# --------------------------------------------------------------------------- launchers

def _as_matrices(x: Tensor) -> Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, c, h * w)


def _weight_args(weight: Tensor | None, fake3: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
    """Pointer tensor and (n, c, position) strides; channel stride 0 broadcasts (N,1,h,w)."""
    if weight is None:
        return fake3, (0, 0, 0)
    w3 = _as_matrices(weight)
    s_n, s_c, s_k = w3.stride()
    return w3, (s_n, 0 if w3.shape[1] == 1 else s_c, s_k)


def _tiles(c: int, hw: int, meta: dict) -> int:
    """(channel x position) tiles of one sample: partials per sample."""
    return cdiv(c, meta["BLOCK_C"]) * cdiv(hw, meta["BLOCK_K"])


def _forward_launch(fake: Tensor, real: Tensor, weight: Tensor | None,
                    partial: Tensor | None = None, meta: dict | None = None) -> Tensor:
    """Per-sample weighted sums of squares, (N,) float32.

    ``partial`` (scratch, reused by tests) and ``meta`` (one block configuration) exist
    so that a test can run every autotune configuration on the same buffer."""
    n, c, h, w = fake.shape
    hw = h * w
    f3, r3 = _as_matrices(fake), _as_matrices(real)
    w3, w_strides = _weight_args(weight, f3)
    check_sample_offsets("feature_distance", f3, r3, None if weight is None else w3)
    if partial is None:
        tiles_max = max(_tiles(c, hw, m) for m in _PARTIALS.all_meta())
        partial = torch.empty(n, tiles_max, device=fake.device, dtype=torch.float32)

    def grid(meta):
        return folded_grid("feature_distance", n * _tiles(c, hw, meta))

    used = _PARTIALS.launch(grid, f3, r3, w3, partial, c, hw, partial.stride(0),
                            *f3.stride(), *r3.stride(), *w_strides, meta=meta,
                            HAS_WEIGHT=weight is not None)
    # Other block shapes write other numbers of partials, and the autotuner has run every
    # configuration on this buffer: only the columns the launch that ran wrote count.
    return partial[:, :_tiles(c, hw, used)].sum(1)


def _backward_launch(grad: Tensor, fake: Tensor, real: Tensor, weight: Tensor | None,
                     reduction: str) -> Tensor:
    n, c, h, w = fake.shape
    hw = h * w
    out = grad_like(fake)
    f3, r3, g3 = _as_matrices(fake), _as_matrices(real), as_matrix_view(out)
    w3, w_strides = _weight_args(weight, f3)
    check_sample_offsets("feature_distance backward", f3, r3, g3, None if weight is None else w3)
    dloss_stride = grad.stride(0) if reduction == "per_sample" else 0
    scale = 1.0 / fake.numel() if reduction == "mean" else 1.0

    def grid(meta):
        return folded_grid("feature_distance backward", n * _tiles(c, hw, meta))

    _GRAD.launch(grid, f3, r3, w3, grad, dloss_stride, scale, g3, c, hw,
                 *f3.stride(), *r3.stride(), *w_strides, *g3.stride(), HAS_WEIGHT=weight is not None)
    return out


# --------------------------------------------------------------------------- registered ops

@torch.library.custom_op("nfinpaint_triton::feature_distance", mutates_args=())
def _feature_distance_op(fake: Tensor, real: Tensor, weight: Tensor | None,
                           reduction: str) -> Tensor:
    require_triton_path(fake, "feature_distance")
    with device_guard(fake):
        per_sample = _forward_launch(fake, real, weight)
    if reduction == "per_sample":
        return per_sample
    total = per_sample.sum()
    return total / fake.numel() if reduction == "mean" else total


@_feature_distance_op.register_fake
def _(fake, real, weight, reduction):
    return fake.new_empty((fake.shape[0],) if reduction == "per_sample" else (), dtype=torch.float32)


@torch.library.custom_op("nfinpaint_triton::feature_distance_backward", mutates_args=())
def _feature_distance_backward_op(grad: Tensor, fake: Tensor, real: Tensor,
                                    weight: Tensor | None, reduction: str) -> Tensor:
    require_triton_path(fake, "feature_distance backward")
    with device_guard(fake):
        return _backward_launch(grad, fake, real, weight, reduction)


@_feature_distance_backward_op.register_fake
def _(grad, fake, real, weight, reduction):
    return grad_like(fake)


def _setup_context(ctx, inputs, output):
    fake, real, weight, reduction = inputs
    ctx.save_for_backward(fake, real, weight)
    ctx.reduction = reduction


def _backward(ctx, grad):
    fake, real, weight = ctx.saved_tensors
    grad_fake = _feature_distance_backward_op(grad, fake, real, weight, ctx.reduction)
    grad_real = -grad_fake.to(real.dtype) if ctx.needs_input_grad[1] else None
    return grad_fake, grad_real, None, None


_feature_distance_op.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------- public API

def _check_inputs(fake: Tensor, real: Tensor, weight: Tensor | None, reduction: str) -> None:
    check_reduction(reduction)
    if fake.dim() != 4:
        raise ValueError(f"feature_distance expects (N, C, h, w) feature maps, got shape "
                         f"{tuple(fake.shape)}")
    if fake.numel() == 0:
        raise ValueError(f"feature_distance needs non-empty feature maps, got shape {tuple(fake.shape)}")
    if fake.shape != real.shape:
        raise ValueError(f"fake and real must have the same shape, got {tuple(fake.shape)} "
                         f"and {tuple(real.shape)}")
    if fake.dtype not in _FLOAT_DTYPES or real.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"fake and real must be float32/float16/bfloat16, got {fake.dtype} "
                         f"and {real.dtype}")
    if fake.device != real.device:
        raise ValueError(f"fake and real must be on one device, got {fake.device} and {real.device}")
    if weight is not None:
        n, c, h, w = fake.shape
        if weight.shape not in ((n, 1, h, w), (n, c, h, w)):
            raise ValueError(f"weight must be (N, 1, h, w) or (N, C, h, w) = {(n, 1, h, w)} or "
                             f"{(n, c, h, w)}; resize the mask to the feature size, got "
                             f"{tuple(weight.shape)}")
        if weight.device != fake.device or not (weight.is_floating_point() or weight.dtype == torch.bool):
            raise ValueError(f"weight must be a float or bool tensor on {fake.device}, got "
                             f"{weight.dtype} on {weight.device}")


def feature_distance(fake: Tensor, real: Tensor, weight: Tensor | None = None,
                       reduction: str = "sum", allow_reference_fallback: bool = False) -> Tensor:
    """Equation 2: sum of ``weight``·(fake − real)², float32, through Triton kernels.

    Semantics of :func:`nfinpaint.ops.feature_distance_reference` (see the module
    docstring).  Without a GPU and with ``TRITON_INTERPRET`` unset, raises
    RuntimeError unless ``allow_reference_fallback=True``, which uses that reference.
    """
    _check_inputs(fake, real, weight, reduction)
    if allow_reference_fallback and not triton_path_available(fake):
        return feature_distance_reference(fake, real, weight, reduction)
    # real and weight in fake's dtype (a bool weight: 1 in the hole), as the compiled op takes them: one
    # contract and one reference for both (a float32 weight beside float16 features once differed by 1e-4)
    real = real.to(fake.dtype)
    weight = None if weight is None else weight.detach().to(fake.dtype)
    return _feature_distance_op(fake, real, weight, reduction)
