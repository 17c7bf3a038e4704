"""Cheap smooth fills of the holes, as tensor operations: the start the residual generators refine.

:func:`harmonic_fill` solves Laplace's equation in the hole with the known
pixels as boundary values (the membrane interpolant): a push-pull pyramid
gives a start that is already smooth at every scale, and Jacobi iterations
relax it towards the solution.  :func:`biharmonic_fill` solves the next
order (the thin-plate interpolant, what scikit-image's biharmonic inpainting
computes) by conjugate gradients started from the harmonic fill.  Everything
is batched tensor operations (shifted slices, pooling): it runs on any device,
in any batch, inside ``torch.compile``; in eager mode the steps run on the
box of the holes (:func:`boxed_conjugate_gradients`), and the conjugate
gradients are one compiled operator, ``nfinpaint::biharmonic_cg``, on the CPU
and on CUDA (:func:`conjugate_gradients`).
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from nfinpaint import _extension

DEFAULT_ITERATIONS = 24
# Conjugate-gradient steps of the biharmonic fill: converged to 0.01 dB on 24x24 crops with holes up to 12x12.
CG_ITERATIONS = 32


def level_mean_fill(values: Tensor, weight: Tensor) -> Tensor:
    """The last push-pull level (a side of 1): ``values / weight``, and where ``weight`` is 0 the weighted
    mean of the whole level.  That was 0, and on an elongated picture, whose last level is a row with
    cells that have nothing known under them, the fill came out black."""
    mean = values.sum(dim=(-2, -1), keepdim=True) / weight.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return torch.where(weight > 0, values / weight.clamp_min(1e-12), mean)


def _push_pull(values: Tensor, weight: Tensor) -> Tensor:
    """Fill where ``weight`` is 0 with the weighted mean of coarser pyramid levels (depth fixed
    by the shape, not the data, so it compiles without graph breaks)."""
    if min(values.shape[-2:]) <= 1:
        return level_mean_fill(values, weight)
    coarse_v = F.avg_pool2d(values, 2, ceil_mode=True)
    coarse_w = F.avg_pool2d(weight, 2, ceil_mode=True)
    coarse = _push_pull(coarse_v, coarse_w)
    up = F.interpolate(coarse, size=values.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(weight > 0, values / weight.clamp_min(1e-12), up)


@torch.no_grad()
def harmonic_fill(image: Tensor, mask: Tensor, iterations: int = DEFAULT_ITERATIONS) -> Tensor:
    """``image`` (N,C,H,W) with its holes (``mask`` (N,1,H,W), 1 = hole) replaced by a smooth
    (approximately harmonic) interpolation of the known pixels around them.  Known pixels are
    returned unchanged; whatever the hole held is ignored.  A sample without known pixels
    becomes mid-grey."""
    mask = mask.to(image.dtype)
    known = 1 - mask
    x = _push_pull(image * known, known.expand_as(image).contiguous())
    return relax_harmonic(image, mask, torch.where(known.expand_as(image) > 0, image, x), iterations)


def relax_harmonic(image: Tensor, mask: Tensor, start: Tensor, iterations: int,
                   neighbour_sum: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Jacobi steps towards the harmonic fill from ``start``; a sample without known pixels becomes
    mid-grey.  Shared with the export graph (nfinpaint.export_graph), which builds its own start
    and passes :func:`neighbour_sum_conv`."""
    neighbour_sum = neighbour_sum or _neighbour_sum
    known = 1 - mask
    x = start
    for _ in range(iterations):
        x = image * known + neighbour_sum(x) * (0.25 * mask)
    empty = known.flatten(1).amax(dim=1) == 0
    return torch.where(empty.view(-1, 1, 1, 1), torch.full_like(x, 0.5), x)


def _neighbour_sum(x: Tensor) -> Tensor:
    """The sum of each pixel's four neighbours, the border replicated.  Shifted slices, not a
    depthwise 3x3 convolution: on the CPU oneDNN's depthwise convolution of these few channels took
    3 to 10 times as long (the smooth fills are hundreds of such steps per window)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


NEIGHBOUR_CROSS = ((0.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, 0.0))    # the four neighbours' 3x3 kernel


def neighbour_sum_conv(x: Tensor, cross: Tensor | None = None) -> Tensor:
    """:func:`_neighbour_sum` as one depthwise convolution, for the export graph: one operator a
    step keeps an ONNX file small and its export quick (slices made the export several times slower).
    ``cross``: :data:`NEIGHBOUR_CROSS` as a (3, 3) tensor; the export graph passes its module's buffer,
    which moves with the module (one made here is a constant that a TorchScript trace pins to the
    device it was traced on: the file then convolved a GPU picture with a CPU kernel)."""
    c = x.shape[1]
    kernel = (x.new_tensor(NEIGHBOUR_CROSS) if cross is None else cross).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)


def _laplacian(x: Tensor, neighbour_sum: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """5-point graph Laplacian with mirrored (zero-flux) borders: symmetric, so CG applies."""
    return (neighbour_sum or _neighbour_sum)(x) - 4 * x


@torch.no_grad()
def biharmonic_fill(image: Tensor, mask: Tensor, iterations: int = CG_ITERATIONS,
                    start: Tensor | None = None) -> Tensor:
    """``image`` with its holes filled by the solution of the biharmonic equation (the smoothest
    continuation of the known pixels' values *and* gradients, as scikit-image's biharmonic
    inpainting), by batched conjugate gradients on ``P L L P`` (L the symmetric graph Laplacian,
    P the hole), started from ``start`` in the hole (default :func:`harmonic_fill`).  Computed in
    float32 whatever the autocast.
    """
    dtype = image.dtype
    image, mask = image.float(), mask.float()
    with torch.autocast(image.device.type, enabled=False):
        x = harmonic_fill(image, mask) if start is None else torch.where(mask > 0.5, start.float(), image)
        x = boxed_conjugate_gradients(mask, x, iterations)
    return x.to(dtype)


# A system has converged when its squared residual is this fraction of its first: a residual a millionth
# of the first is float32's rounding level, and steps beyond it divide rounding noise by rounding noise.
# Without the stop the steps after convergence threw a fill to 1e34 or NaN: 468 of 503 random 2x2 planes
# that are all hole (a singular system; inpaint's paths never build one) and many planes with soft weights.
# Two of the 36 validation fills reach it (a small level of the coarse-to-fine fill converges) and moved by
# +0.0006 and -0.0019 dB hole PSNR; the other 34 are unchanged to the last digit.
CG_CONVERGED = 1e-12

# The pixels beyond the hole that conjugate gradients read: L L reaches two pixels out.
CG_REACH = 2


def _ends(flags: Tensor) -> tuple[Tensor, Tensor]:
    """The first and last index where ``flags`` (1-D, bool) is set; (len, -1) when nowhere."""
    index = torch.arange(flags.numel(), device=flags.device)
    return (torch.where(flags, index, flags.numel()).amin(),
            torch.where(flags, index, -1).amax())


def _capturing_graph() -> bool:
    """Whether a graph is being made (torch.compile, a TorchScript trace, an ONNX export): it must see
    plain tensor operations of fixed shape."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _hole_box(mask: Tensor) -> tuple[slice, slice] | None:
    """The rows and columns of the batch's holes grown by :data:`CG_REACH`, or None when that box is
    most of the image; None too while a graph is being made (torch.compile: a data-dependent shape
    would recompile; a TorchScript trace or an ONNX export would keep this input's box for every input)."""
    if _capturing_graph() or mask.numel() == 0:
        return None
    h, w = mask.shape[-2:]
    # The four ends as one tensor: one device-to-host copy (one sync on a GPU) instead of six.
    first_row, last_row, first_col, last_col = torch.stack(
        [*_ends(mask.amax(dim=(0, 1, 3)) > 0), *_ends(mask.amax(dim=(0, 1, 2)) > 0)]).tolist()
    if last_row < 0:
        return None
    top, bottom = max(first_row - CG_REACH, 0), min(last_row + CG_REACH + 1, h)
    left, right = max(first_col - CG_REACH, 0), min(last_col + CG_REACH + 1, w)
    if (bottom - top) * (right - left) > 0.7 * h * w:
        return None
    return slice(top, bottom), slice(left, right)


def boxed_conjugate_gradients(mask: Tensor, x: Tensor, iterations: int) -> Tensor:
    """:func:`conjugate_gradients` on the box of the holes and the pixels within :data:`CG_REACH` of
    them, when it is much smaller than the image (a hole in its window of context: about a ninth):
    only those pixels enter the hole's equations, so the result is the same, to float rounding, for
    a fraction of the work."""
    box = _hole_box(mask)
    if box is None:
        return conjugate_gradients(mask, x, iterations)
    rows, cols = box
    out = x.clone()
    out[..., rows, cols] = conjugate_gradients(mask[..., rows, cols], x[..., rows, cols], iterations)
    return out


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per image and channel, summed in float64: the biharmonic system is ill-conditioned, and float32
    sums let the steps drift apart with the order of summation (~1e-3 after 24 steps on a 12x14
    hole, between a box and its whole image), float64 ones by ~1e-7."""
    return (a * b).sum(dim=(2, 3), keepdim=True, dtype=torch.float64)


def conjugate_gradients(mask: Tensor, x: Tensor, iterations: int) -> Tensor:
    """``iterations`` conjugate-gradient steps on ``P L L P`` from ``x`` (the start in the hole, the
    known pixels elsewhere), each (image, channel) plane its own system.

    Float32 CPU and CUDA tensors outside graph capture and autograd go to the compiled operator
    ``nfinpaint::biharmonic_cg`` (the extension is required: no silent fallback), which gives the
    steps of :func:`conjugate_gradients_reference` with float64 sums added in another order (on the
    CPU equal to the last bit on the validation windows, and 7-14x faster: benchmarks/bench_base_fill.py;
    the tensor steps are ~25 operator calls each, a pass over memory apiece, and were a third of a
    learned fill's time; on a GPU they are as many kernel launches).
    Everything else (float64, a graph being made, CUDA planes larger than :data:`CUDA_PLANE_LIMIT`,
    and any call inside :func:`reference_solver`) runs the reference."""
    if _takes_operator(mask, x):
        _extension.require(x.device)
        # a mask shared by the batch, (1, 1, H, W), as the reference broadcasts it
        return torch.ops.nfinpaint.biharmonic_cg(x, mask.expand(x.shape[0], *mask.shape[1:]), iterations)
    return conjugate_gradients_reference(mask, x, iterations)


# Set by reference_solver(): training with use_custom_ops = false (a machine whose build failed, a GPU whose
# CUDA agreement failed) solves with the tensor steps, which need no compiled operator
_REFERENCE_SOLVER = contextvars.ContextVar("nfinpaint_reference_solver", default=False)


@contextlib.contextmanager
def reference_solver(enabled: bool = True) -> Iterator[None]:
    """Within the block (this thread, this context), :func:`conjugate_gradients` runs
    :func:`conjugate_gradients_reference` whatever its tensors: an explicit choice, never a fallback."""
    token = _REFERENCE_SOLVER.set(enabled)
    try:
        yield
    finally:
        _REFERENCE_SOLVER.reset(token)


# The CUDA kernel solves each plane in one block (one SM): past about this many pixels a plane's passes
# would take longer on one SM than the tensor steps' launches over the whole GPU.  An estimate, not a
# measurement (no GPU has run it): benchmarks/bench_base_fill.py prints both on a GPU.
CUDA_PLANE_LIMIT = 1 << 16


def _takes_operator(mask: Tensor, x: Tensor) -> bool:
    """Whether :func:`conjugate_gradients` calls the compiled operator for these tensors."""
    if _REFERENCE_SOLVER.get():
        return False
    if x.dtype != torch.float32 or mask.dtype != torch.float32 or x.dim() != 4 or mask.shape[1] != 1:
        return False
    if _capturing_graph() or (torch.is_grad_enabled() and (x.requires_grad or mask.requires_grad)):
        return False
    return x.device.type == "cpu" or (x.device.type == "cuda" and x.shape[-2] * x.shape[-1] <= CUDA_PLANE_LIMIT)


def conjugate_gradients_reference(mask: Tensor, x: Tensor, iterations: int,
                                  neighbour_sum: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """:func:`conjugate_gradients` as tensor operations: any device, dtype and graph.  Shared with the
    export graph (nfinpaint.export_graph), which passes :func:`neighbour_sum_conv`.  The system is
    ill-conditioned: the two neighbour sums, equal to 1e-7, give fills up to ~5e-4 apart after 32
    steps on a small converged hole (~1e-6 on a hole in its window)."""
    if x.numel() == 0:       # nothing to solve, as the operator returns it (the padding below needs pixels)
        return x.clone()
    hole = mask.expand_as(x)

    def laplacian(v: Tensor) -> Tensor:
        return _laplacian(v, neighbour_sum)

    def apply(v: Tensor) -> Tensor:      # P L L P v
        return laplacian(laplacian(v * hole)) * hole

    r = -laplacian(laplacian(x)) * hole            # residual of L L x = 0 in the hole
    p = r
    rs = _dot(r, r)                                # per image and channel: independent systems
    floor = rs * CG_CONVERGED
    done = rs <= floor
    for _ in range(iterations):
        ap = apply(p)
        pap = _dot(p, ap)
        # converged, or broken down (p.Ap <= 0, or not finite: float32's p * Ap overflowed): x stays
        done = done | (rs <= floor) | ~((pap > 0) & torch.isfinite(pap))
        alpha = torch.where(done, 0.0, rs / pap.clamp_min(1e-30)).to(x.dtype)
        x = torch.where(done, x, x + alpha * p)     # not x + 0 * p: an overflowed p (inf) would give NaN
        r = r - alpha * ap
        rs_new = _dot(r, r)
        p = r + (rs_new / rs.clamp_min(1e-30)).to(x.dtype) * p
        rs = rs_new
    return x


def _register_fake() -> None:
    if not _extension.is_built():
        return

    @torch.library.register_fake("nfinpaint::biharmonic_cg")
    def _(x, mask, iterations):
        # devices first (a call mixing devices reaches this fake when one input is on "meta", and returned
        # an uninitialised tensor), then the kernel's own rules on meta copies, in its words
        if x.device != mask.device:
            raise RuntimeError(f"nfinpaint::biharmonic_cg: expected x and mask on one device, got {x.device} and "
                               f"{mask.device}")
        _extension.check_on_meta(torch.ops.nfinpaint._check_biharmonic_inputs, x, mask, iterations)
        return torch.empty_like(x, memory_format=torch.contiguous_format)


_register_fake()


# Coarse-to-fine smooth fill: conjugate-gradient steps on the coarsest level and on each finer one, and the
# coarsest side worth solving on.  Eight steps a level do not converge to the biharmonic solution; they give
# a smooth fill of the whole hole that scores level with scikit-image's exact biharmonic inpainting on
# photographs (docs/model.md), at a cost that follows the window, which is what the generator needs.
COARSEST_ITERATIONS = 32
LEVEL_ITERATIONS = 8
# The most steps a level a generator may be set to run (training or shipping): 32 ship; far more only
# costs time (0 or fewer wrote a file that does not load, 1e11 one whose fills never end)
MAX_LEVEL_ITERATIONS = 1000
MULTISCALE_MIN_SIDE = 8


def coarse_hole_mask(any_hole: Tensor, known_fraction: Tensor) -> Tensor:
    """The holes of a coarser copy: a coarse pixel is a hole when any of its pixels is (``any_hole``,
    so known coarse pixels are averages of known pixels only), except in a sample where that rule
    leaves nothing known: there a coarse pixel is a hole only when none of its pixels is known
    (``known_fraction`` == 0).  Without the exception a known band narrower than the coarse pixels (a
    strip along an edge, a frame round a large hole) vanished, and the fill started from mid-grey.
    The same select in every sample, so it compiles and exports without a data-dependent branch.
    The coarse pass's rule (:mod:`nfinpaint.neural_fill`); the base fill decides per pixel,
    :func:`base_fill_hole_mask`."""
    erased = any_hole.flatten(1).amin(dim=1) > 0.5                # every coarse pixel a hole
    return torch.where(erased.view(-1, 1, 1, 1), (known_fraction <= 0).to(any_hole.dtype), any_hole)


def base_fill_hole_mask(any_hole: Tensor, known_fraction: Tensor) -> Tensor:
    """The holes of the base fill's coarser copy: a coarse pixel is a hole when any of its pixels is
    (``any_hole``, so known coarse pixels are averages of known pixels only), unless none of its 3x3
    neighbours is wholly known: then it is a hole only when none of its pixels is known
    (``known_fraction`` == 0), and otherwise the mean of its known ones.
    Why per pixel: a known band narrower than the coarse pixels (a frame round a large hole, a strip
    along an edge, a lattice of samples) vanished under the first rule and the fill came from elsewhere.
    Deciding that once per picture (:func:`coarse_hole_mask`) kept a frame whose every side was thin,
    but a 2 px frame lying on the 2x2 bins on one side and across them on another lost the other sides:
    a colour ramp round a 300x400 hole came out 25-66 grey levels off, 7 when every side is kept.
    Beside a wholly known coarse pixel a partly known one stays a hole, as before: a known region's
    edge keeps its place.  An odd side's last row of coarse pixels, made of one fine row, counts as
    wholly known only for its neighbours.  No data-dependent branch: it compiles and exports."""
    wholly_known = (any_hole < 0.5).to(any_hole.dtype)
    beside_known = F.max_pool2d(wholly_known, 3, stride=1, padding=1) > 0.5
    return torch.where(beside_known, any_hole, (known_fraction <= 0).to(any_hole.dtype))


@torch.no_grad()
def multiscale_biharmonic_fill(image: Tensor, mask: Tensor, iterations: int = LEVEL_ITERATIONS,
                               coarsest_iterations: int = COARSEST_ITERATIONS) -> Tensor:
    """:func:`biharmonic_fill` relaxed coarse to fine, for holes of any size.

    Conjugate gradients on the biharmonic operator need many steps as holes
    grow, and a fill that starts from the harmonic one stays flat in a large
    hole.  Here the problem is first relaxed on a half-resolution copy (a
    coarse pixel is a hole when any of its four pixels is, else their mean;
    unless nothing beside it is wholly known, :func:`base_fill_hole_mask`),
    recursively down to :data:`MULTISCALE_MIN_SIDE` (``coarsest_iterations``
    steps there); the coarse result, upsampled, starts ``iterations`` steps at
    the next finer level.  With enough steps it converges to the biharmonic
    solution (usually in fewer steps than single-level CG); with the defaults it
    is a smooth fill whose cost follows the window.  The depth follows from the
    shape alone, so it compiles without graph breaks.
    """
    image, mask = image.float(), mask.float()
    h, w = image.shape[-2:]
    if min(h, w) < 2 * MULTISCALE_MIN_SIDE:
        return biharmonic_fill(image, mask, coarsest_iterations)
    with torch.autocast(image.device.type, enabled=False):
        known = 1 - mask
        coarse_known = F.avg_pool2d(known, 2, ceil_mode=True)
        coarse_mask = base_fill_hole_mask(F.max_pool2d(mask, 2, ceil_mode=True), coarse_known)
        coarse_image = F.avg_pool2d(image * known, 2, ceil_mode=True) / coarse_known.clamp_min(1e-6)
        coarse = multiscale_biharmonic_fill(coarse_image * (1 - coarse_mask), coarse_mask, iterations,
                                            coarsest_iterations)
        start = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return biharmonic_fill(image, mask, iterations, start=start)
