"""Gram-matrix (style) distance between two feature maps, as Triton kernels.

For feature maps of shape (N, C, H, W), F is each sample's (C, H*W) matrix and
G(F) = F Fᵀ / (C·H·W) its normalised Gram matrix.  The loss per sample is

    L_n = ||G(fake_n) − G(real_n)||_F²,

then reduced over the batch: "mean" (default), "sum", or "per_sample" ((N,)).
``real`` is a target: no gradient flows to it.

Forward: one program per (lower-triangle tile pair, sample) accumulates the
tile D_ij = (F_i F_jᵀ − R_i R_jᵀ)/K (K = C·H·W) in registers over H·W, and
writes only the sum of its squares (×2 off the diagonal: D is symmetric, so
the upper triangle is never computed).  The two C×C Gram matrices are never
written.  When ``fake`` needs a gradient, the same pass also stores the tile of
D (N·C·C floats, small) so the backward does not recompute any product.

Backward: dL_n/dF = 2(D + Dᵀ)F/K = 4·D·F/K (D symmetric), scaled by the
incoming gradient: one batched (C×C)·(C×H·W) product, fp32 accumulation,
written in ``fake``'s dtype and memory format.

Precision: float32/float16/bfloat16 inputs, float32 accumulation.  In the
interpreter operands are cast to fp32 right after loading (the interpreter
mis-computes bf16 arithmetic).  On a GPU, half inputs go to ``tl.dot`` as they
are (tensor cores, fp32 accumulation); fp32 inputs use "tf32x3" products (about
fp32 accuracy on tensor cores) unless ``torch.backends.cuda.matmul.fp32_precision``
is "tf32" (or the legacy ``allow_tf32`` is on), then plain "tf32" like PyTorch's matmul.
The backward keeps D in fp32 for every input dtype (in fp16 its entries, of
order 1/sqrt(K), underflow) and multiplies it with F read as fp32: "tf32" for
half inputs (which tf32 holds exactly), as for fp32 inputs otherwise.

Memory formats: contiguous and channels-last (any layout where H and W merge
into one stride) are read through their strides without copies; other
layouts are copied by ``reshape``.  The gradient keeps ``fake``'s layout when its H
and W merge and is NCHW-contiguous otherwise (``launch.grad_like``, shared with the
fake kernel).
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
                                      device_guard, folded_grid, fp32_dot_precision, grad_like,
                                      interpreter_enabled, require_triton_path,
                                      triton_path_available)
from nfinpaint.ops import check_reduction
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------- kernels

def _gram_diff_tiles(f_ptr, r_ptr, partial_ptr, diff_ptr, C, HW, partial_stride,
                     sf_n, sf_c, sf_k, sr_n, sr_c, sr_k, inv_k,
                     STORE_DIFF: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                     BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    # One 1-D grid: program id = sample * pairs + tile pair (grid axes 1/2 stop at 65,535).
    tiles = tl.cdiv(C, BLOCK_C)
    pairs = tiles * (tiles + 1) // 2
    pid_all = tl.program_id(0)
    n = (pid_all // pairs).to(tl.int64)
    pid = pid_all % pairs
    # Lower-triangle tile (bi >= bj) from the linear id pid = bi(bi+1)/2 + bj; the float
    # estimate of bi is corrected by one either way against rounding.
    bi = ((tl.sqrt((8 * pid + 1).to(tl.float32)) - 1.0) * 0.5).to(tl.int32)
    bi = tl.where(bi * (bi + 1) // 2 > pid, bi - 1, bi)
    bi = tl.where((bi + 1) * (bi + 2) // 2 <= pid, bi + 1, bi)
    bj = pid - bi * (bi + 1) // 2

    offs_i = bi * BLOCK_C + tl.arange(0, BLOCK_C)
    offs_j = bj * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_i = offs_i < C
    mask_j = offs_j < C
    f_base = f_ptr + n * sf_n
    r_base = r_ptr + n * sr_n
    acc = tl.zeros((BLOCK_C, BLOCK_C), dtype=tl.float32)
    for k0 in range(0, HW, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < HW
        m_ik = mask_i[:, None] & mask_k[None, :]
        m_kj = mask_k[:, None] & mask_j[None, :]
        fi = tl.load(f_base + offs_i[:, None] * sf_c + offs_k[None, :] * sf_k, mask=m_ik, other=0.0)
        fj = tl.load(f_base + offs_k[:, None] * sf_k + offs_j[None, :] * sf_c, mask=m_kj, other=0.0)
        ri = tl.load(r_base + offs_i[:, None] * sr_c + offs_k[None, :] * sr_k, mask=m_ik, other=0.0)
        rj = tl.load(r_base + offs_k[:, None] * sr_k + offs_j[None, :] * sr_c, mask=m_kj, other=0.0)
        if UPCAST:
            fi = fi.to(tl.float32)
            fj = fj.to(tl.float32)
            ri = ri.to(tl.float32)
            rj = rj.to(tl.float32)
        acc = tl.dot(fi, fj, acc, input_precision=PRECISION)
        acc = tl.dot(-ri, rj, acc, input_precision=PRECISION)
    d = acc * inv_k
    sq = tl.sum(tl.sum(d * d, axis=1), axis=0)
    weight = tl.where(bi == bj, 1.0, 2.0)  # off-diagonal tiles stand for their mirror too
    tl.store(partial_ptr + n * partial_stride + pid, sq * weight)
    if STORE_DIFF:
        d_base = diff_ptr + n * C * C
        m_ij = mask_i[:, None] & mask_j[None, :]
        tl.store(d_base + offs_i[:, None] * C + offs_j[None, :], d, mask=m_ij)
        # The mirror, but not over a diagonal tile: d need not be bit-symmetric (tf32x3
        # splits), and two stores of different values to one address leave either.
        tl.store(d_base + offs_j[None, :] * C + offs_i[:, None], d, mask=m_ij & (bi != bj))


def _gram_grad(diff_ptr, f_ptr, dloss_ptr, dloss_stride, scale, g_ptr, C, HW,
               sf_n, sf_c, sf_k, sg_n, sg_c, sg_k,
               PRECISION: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # One 1-D grid: program id = (sample * row tiles + row tile) * column tiles + column tile.
    tiles_n = tl.cdiv(HW, BLOCK_N)
    tiles_mn = tl.cdiv(C, BLOCK_M) * tiles_n
    pid = tl.program_id(0)
    n = (pid // tiles_mn).to(tl.int64)
    pid_m = (pid % tiles_mn) // tiles_n
    pid_n = pid % tiles_n
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # channels of the gradient
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # positions of the gradient
    mask_m = offs_m < C
    mask_n = offs_n < HW
    d_base = diff_ptr + n * C * C
    f_base = f_ptr + n * sf_n
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_K):
        offs_c = c0 + tl.arange(0, BLOCK_K)
        mask_c = offs_c < C
        d = tl.load(d_base + offs_m[:, None] * C + offs_c[None, :],
                    mask=mask_m[:, None] & mask_c[None, :], other=0.0)
        f = tl.load(f_base + offs_c[:, None] * sf_c + offs_n[None, :] * sf_k,
                    mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        # D stays fp32 (in fp16 it underflows: entries ~1/sqrt(K)); half features are
        # exact in tf32, so half inputs lose nothing to a "tf32" product.
        acc = tl.dot(d, f.to(tl.float32), acc, input_precision=PRECISION)
    # Incoming gradient of sample n (stride 0 for a scalar loss) times 4/K (/N for "mean").
    g = acc * (tl.load(dloss_ptr + n * dloss_stride).to(tl.float32) * scale)
    tl.store(g_ptr + n * sg_n + offs_m[:, None] * sg_c + offs_n[None, :] * sg_k,
             g.to(g_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def _tile_configs():
    return [
        triton.Config({"BLOCK_C": 64, "BLOCK_K": 32}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_C": 64, "BLOCK_K": 64}, num_warps=4, num_stages=3),
        triton.Config({"BLOCK_C": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_C": 32, "BLOCK_K": 64}, num_warps=4, num_stages=3),
    ]


def _grad_configs():
    return [
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32}, num_warps=8, num_stages=3),
    ]


# tl.dot needs every block dimension >= 16; the interpreter runs one program at a time,
# so small fixed blocks keep CPU tests quick.
_TILES = LazyKernel(_gram_diff_tiles, _tile_configs, key=["C", "HW"],
                    interpret_meta={"BLOCK_C": 16, "BLOCK_K": 16}, loops_over_arguments=True)
_GRAD = LazyKernel(_gram_grad, _grad_configs, key=["C", "HW"],
                   interpret_meta={"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16},
                   loops_over_arguments=True)


# --------------------------------------------------------------------------- launchers

def _as_matrices(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, H*W) view (a copy only when H and W don't merge)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h * w)


def _dot_flags(dtype: torch.dtype) -> dict:
    interp = interpreter_enabled()
    half = dtype in (torch.float16, torch.bfloat16)
    return {
        "UPCAST": interp,
        # Precision only applies to fp32 operands; half ones keep Triton's default.
        "PRECISION": fp32_dot_precision() if (interp or not half) else None,
    }


def _tile_pairs(c: int, block_c: int) -> int:
    """Lower-triangle tile pairs of a C x C Gram matrix in BLOCK_C tiles: partials per sample."""
    t = cdiv(c, block_c)
    return t * (t + 1) // 2


def _forward_launch(fake: Tensor, real: Tensor, save_diff: bool, partial: Tensor | None = None,
                    meta: dict | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample losses (N,) float32, and D = G(fake) − G(real) (N, C, C) if save_diff.

    ``partial`` (scratch, reused by tests) and ``meta`` (one block configuration) exist
    so that a test can run every autotune configuration on the same buffer."""
    n, c, h, w = fake.shape
    hw = h * w
    f3, r3 = _as_matrices(fake), _as_matrices(real)
    pairs_max = _tile_pairs(c, _TILES.smallest("BLOCK_C"))
    if partial is None:
        partial = torch.empty(n, pairs_max, device=fake.device, dtype=torch.float32)
    diff = torch.empty((n, c, c) if save_diff else (0,), device=fake.device, dtype=torch.float32)
    check_sample_offsets("gram_distance", f3, r3, diff)

    def grid(meta):
        return folded_grid("gram_distance", n * _tile_pairs(c, meta["BLOCK_C"]))

    used = _TILES.launch(grid, f3, r3, partial, diff, c, hw, partial.stride(0),
                         *f3.stride(), *r3.stride(), 1.0 / (c * hw), meta=meta,
                         STORE_DIFF=save_diff, **_dot_flags(fake.dtype))
    # Larger blocks write fewer partials, and the autotuner has run every configuration
    # on this buffer: only the first columns, those the launch that ran wrote, count.
    return partial[:, :_tile_pairs(c, used["BLOCK_C"])].sum(1), diff


def _grad_scale(grad: Tensor, n: int, c: int, hw: int, reduction: str) -> tuple[Tensor, int, float]:
    """(incoming gradient, its per-sample stride, factor): dL/dF_n = factor·grad[n]·D_n·F_n."""
    factor = 4.0 / (c * hw) / (n if reduction == "mean" else 1)
    return grad, (grad.stride(0) if reduction == "per_sample" else 0), factor


def _backward_launch(grad: Tensor, diff: Tensor, fake: Tensor, reduction: str) -> Tensor:
    n, c, h, w = fake.shape
    hw = h * w
    out = grad_like(fake)
    f3, g3 = _as_matrices(fake), as_matrix_view(out)
    check_sample_offsets("gram_distance backward", f3, g3, diff)
    dloss, dloss_stride, scale = _grad_scale(grad, n, c, hw, reduction)
    precision = _dot_flags(fake.dtype)["PRECISION"] or "tf32"  # fp32 operands here, even for half inputs

    def grid(meta):
        return folded_grid("gram_distance backward",
                           n * cdiv(c, meta["BLOCK_M"]) * cdiv(hw, meta["BLOCK_N"]))

    _GRAD.launch(grid, diff, f3, dloss, dloss_stride, scale, g3, c, hw, *f3.stride(), *g3.stride(),
                 PRECISION=precision)
    return out


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "per_sample":
        return per_sample
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


# --------------------------------------------------------------------------- registered ops

@torch.library.custom_op("nfinpaint_triton::gram_distance", mutates_args=())
def _gram_distance_op(fake: Tensor, real: Tensor, reduction: str,
                      save_diff: bool) -> tuple[Tensor, Tensor]:
    require_triton_path(fake, "gram_distance")
    with device_guard(fake):
        per_sample, diff = _forward_launch(fake, real, save_diff)
    return _reduce(per_sample, reduction), diff


@_gram_distance_op.register_fake
def _(fake, real, reduction, save_diff):
    n, c = fake.shape[:2]
    loss = fake.new_empty((n,) if reduction == "per_sample" else (), dtype=torch.float32)
    diff = fake.new_empty((n, c, c) if save_diff else (0,), dtype=torch.float32)
    return loss, diff


@torch.library.custom_op("nfinpaint_triton::gram_distance_backward", mutates_args=())
def _gram_distance_backward_op(grad: Tensor, diff: Tensor, fake: Tensor, real: Tensor,
                               reduction: str) -> Tensor:
    require_triton_path(fake, "gram_distance backward")
    with device_guard(fake):
        if diff.numel() == 0:  # forward ran without save_diff (direct op call): recompute D once
            diff = _forward_launch(fake, real, True)[1]
        return _backward_launch(grad, diff, fake, reduction)


@_gram_distance_backward_op.register_fake
def _(grad, diff, fake, real, reduction):
    return grad_like(fake)


def _setup_context(ctx, inputs, output):
    fake, real, reduction, _ = inputs
    ctx.save_for_backward(output[1], fake, real)
    ctx.reduction = reduction
    # D is an output only to be saved: materialised, its unused gradient was an (N, C, C) zeros
    # every backward (64x256x256: 16 MB written, 3.4 ms of a CPU step's 3.6 with the kernels skipped).
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_loss, _grad_diff):
    if grad_loss is None or not ctx.needs_input_grad[0]:
        return None, None, None, None
    diff, fake, real = ctx.saved_tensors
    grad_fake = _gram_distance_backward_op(grad_loss, diff, fake, real, ctx.reduction)
    return grad_fake, None, None, None


_gram_distance_op.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------- public API

def _check_inputs(fake: Tensor, real: Tensor, reduction: str) -> None:
    check_reduction(reduction)
    if fake.dim() != 4:
        raise ValueError(f"gram_distance expects (N, C, H, W) feature maps, got shape {tuple(fake.shape)}")
    if fake.numel() == 0:
        raise ValueError(f"gram_distance needs non-empty feature maps, got shape {tuple(fake.shape)}")
    if fake.shape != real.shape:
        raise ValueError(f"fake and real must have the same shape, got {tuple(fake.shape)} "
                         f"and {tuple(real.shape)}")
    if fake.dtype != real.dtype or fake.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"fake and real must share one dtype of float32/float16/bfloat16, got "
                         f"{fake.dtype} and {real.dtype}")
    if fake.device != real.device:
        raise ValueError(f"fake and real must be on one device, got {fake.device} and {real.device}")


def gram_distance(fake: Tensor, real: Tensor, reduction: str = "mean",
                  allow_reference_fallback: bool = False) -> Tensor:
    """Squared Frobenius distance between the normalised Gram matrices of ``fake`` and
    ``real`` ((N, C, H, W) each), float32; see the module docstring.  Differentiable
    w.r.t. ``fake``; ``real`` is a detached target.

    Without a GPU and with ``TRITON_INTERPRET`` unset, raises RuntimeError unless
    ``allow_reference_fallback=True``, which computes :func:`gram_distance_reference`.
    """
    _check_inputs(fake, real, reduction)
    if allow_reference_fallback and not triton_path_available(fake):
        return gram_distance_reference(fake, real, reduction)
    save_diff = fake.requires_grad and torch.is_grad_enabled()
    return _gram_distance_op(fake, real.detach(), reduction, save_diff)[0]


def gram_distance_reference(fake: Tensor, real: Tensor, reduction: str = "mean") -> Tensor:
    """Plain PyTorch (bmm) definition of :func:`gram_distance`, float32 maths."""
    _check_inputs(fake, real, reduction)
    n, c, h, w = fake.shape
    f = fake.float().reshape(n, c, h * w)
    r = real.detach().float().reshape(n, c, h * w)
    k = c * h * w
    diff = torch.bmm(f, f.transpose(1, 2)) / k - torch.bmm(r, r.transpose(1, 2)) / k
    return _reduce(diff.square().sum((1, 2)), reduction)
