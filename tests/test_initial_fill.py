"""The harmonic initial fill that the residual generators refine."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch
import torch.nn.functional as F

from _refusals import assert_meta_refuses_as_cpu
from nfinpaint import initial_fill
from nfinpaint.initial_fill import biharmonic_fill, harmonic_fill, multiscale_biharmonic_fill
from nfinpaint.masks import make_masks
from nfinpaint.networks import Generator


def _grid_laplacian(h: int, w: int) -> scipy.sparse.csr_matrix:
    """The 5-point Laplacian of an h x w grid with mirrored (replicated) borders, as a matrix."""
    lap = scipy.sparse.lil_matrix((h * w, h * w))
    for y in range(h):
        for x in range(w):
            k = y * w + x
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                lap[k, ny * w + nx] += 1.0
                lap[k, k] -= 1.0
    return lap.tocsr()


def _solve_in_hole(operator: scipy.sparse.csr_matrix, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Direct sparse solve of (operator u)[hole] = 0 with u fixed to ``image`` outside the hole."""
    inside = hole.reshape(-1)
    a = operator[inside][:, inside].tocsc()
    out = image.copy()
    for c in range(image.shape[0]):
        u = image[c].reshape(-1)
        out[c].reshape(-1)[inside] = scipy.sparse.linalg.spsolve(a, -operator[inside][:, ~inside] @ u[~inside])
    return out


def _laplace_solution(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    return _solve_in_hole(_grid_laplacian(*hole.shape), image, hole)


def _biharmonic_solution(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The discretisation biharmonic_fill relaxes towards: (L L u)[hole] = 0."""
    lap = _grid_laplacian(*hole.shape)
    return _solve_in_hole((lap @ lap).tocsr(), image, hole)


def test_known_pixels_are_kept_and_hole_content_ignored():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, 24, 24, generator=gen)
    mask = make_masks("random", 4, 24, 8, gen)
    a = harmonic_fill(image, mask)
    b = harmonic_fill(image * (1 - mask) + mask * torch.rand(4, 3, 24, 24, generator=gen), mask)
    assert torch.equal(a, b)
    assert torch.equal(a * (1 - mask), image * (1 - mask))


@pytest.mark.parametrize("fill, solution, iterations, atol", [
    (harmonic_fill, _laplace_solution, 3000, 1e-6),      # Jacobi: slow to converge, so many iterations
    (biharmonic_fill, _biharmonic_solution, 400, 1e-5),  # conjugate gradients
], ids=["harmonic", "biharmonic"])
def test_fills_match_a_direct_solve(fill, solution, iterations, atol):
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    image = torch.rand(2, 3, 20, 20, generator=gen, dtype=torch.float64)
    mask = make_masks("random", 2, 20, 7, gen).double()
    got = fill(image, mask, iterations=iterations)
    for n in range(2):
        want = solution(image[n].numpy(), mask[n, 0].numpy() > 0.5)
        np.testing.assert_allclose(got[n].numpy(), want, atol=atol)


@pytest.mark.parametrize("iterations", [24, 48])
def test_default_iterations_are_close_to_the_solution_on_ramps(iterations):
    # a linear ramp is harmonic: the exact fill reproduces it
    y, x = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 24), indexing="ij")
    image = torch.stack([x, y, 0.5 * x + 0.3 * y])[None]
    mask = torch.zeros(1, 1, 24, 24)
    mask[..., 6:18, 5:17] = 1
    got = harmonic_fill(image, mask, iterations=iterations)
    assert float((got - image).abs().max()) < 0.02


@pytest.mark.parametrize("fill", [harmonic_fill, multiscale_biharmonic_fill])
@pytest.mark.parametrize("shape, band", [((16, 200), np.s_[..., :, :90]), ((200, 16), np.s_[..., 110:, :]),
                                         ((128, 768), np.s_[..., :, :300]), ((1, 50), np.s_[..., :, 20:])])
def test_a_band_across_an_elongated_picture_is_filled_from_its_known_side(fill, shape, band):
    """A hole across the whole short side of an elongated picture: its start (push-pull) once stopped at a
    short side of 1, where cells with nothing known under them came back 0, and the fill came out
    black. A flat picture must be filled flat."""
    colour = torch.rand(1, 3, 1, 1)
    image = colour.expand(1, 3, *shape).clone()
    mask = torch.zeros(1, 1, *shape)
    mask[band] = 1
    filled = fill(image * (1 - mask), mask)
    torch.testing.assert_close(filled, image, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape, known", [((120, 240), np.s_[..., :, :2]), ((96, 128), np.s_[..., :1, :]),
                                          ((200, 264), "frame 12")])
def test_a_thin_band_of_known_pixels_sets_the_fill(shape, known):
    """Known pixels only in a band narrower than the coarse pixels (a strip along an edge, a frame round
    a large hole): the coarser copies marked every coarse pixel a hole, and the fill came out mid-grey.
    A flat picture must be filled flat, with its colour."""
    colour = torch.rand(1, 3, 1, 1)
    image = colour.expand(1, 3, *shape).clone()
    mask = torch.ones(1, 1, *shape)
    if known == "frame 12":
        mask[..., 12:-12, 12:-12] = 0
        mask = 1 - mask
    else:
        mask[known] = 0
    filled = multiscale_biharmonic_fill(image * (1 - mask), mask)
    torch.testing.assert_close(filled, image, rtol=0, atol=1e-4)


@pytest.mark.parametrize("shape", [(64, 96), (300, 400), (301, 407), (97, 131), (33, 33)])
@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("offset", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_a_thin_known_frame_sets_the_fill_whatever_its_place_on_the_coarse_pixels(shape, width, offset):
    """Known pixels only on a frame ``width`` px wide round a colour ramp (which is its own biharmonic
    fill), ``offset`` px in from the top and left edges (holes outside it).  An odd side's last row of
    coarse pixels, made of one fine row, counted as known and kept the coarse copies from keeping the
    rest of a 1 px frame (30-56 grey levels off on average); a 2 px frame lying on the 2x2 bins on one
    side and across them on another lost the other sides (25-66 levels off at 300x400).  4-8 now, as
    on 64x96 with the frame on the bins."""
    h, w = shape
    y, x = torch.linspace(0, 1, h)[:, None].expand(h, w), torch.linspace(0, 1, w)[None].expand(h, w)
    a, b = 0.3 + 0.1 * torch.rand(2, 3, 1, 1)
    ramp = (0.1 + a * y + b * x)[None]                   # a random ramp per channel, within [0.1, 0.9]
    top, left = offset
    mask = torch.ones(1, 1, h, w)
    mask[..., top:, left:] = 0
    mask[..., top + width:h - width, left + width:w - width] = 1
    filled = multiscale_biharmonic_fill(ramp * (1 - mask), mask)
    assert (filled - ramp).abs()[mask.expand_as(ramp) > 0].mean() < 10 / 255


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 6), (17, 13)])
def test_a_coarse_pixel_is_known_where_nothing_beside_it_is_wholly_known(shape):
    """base_fill_hole_mask against a loop over the coarse pixels: a hole where none of its pixels is
    known; a wholly known pixel known; a partly known one a hole beside a wholly known one (its 3x3
    neighbours within the picture), else known."""
    g = torch.Generator().manual_seed(sum(shape))
    for density in (0.2, 0.6, 0.95):
        fine = (torch.rand(3, 1, 2 * shape[0], 2 * shape[1], generator=g) < density).float()   # 1 = hole
        any_hole = F.max_pool2d(fine, 2)
        known = F.avg_pool2d(1 - fine, 2)
        got = initial_fill.base_fill_hole_mask(any_hole, known)
        expected = torch.empty_like(got)
        for n in range(fine.shape[0]):
            for i in range(shape[0]):
                for j in range(shape[1]):
                    rows, cols = slice(max(i - 1, 0), i + 2), slice(max(j - 1, 0), j + 2)
                    beside_whole = bool((known[n, 0, rows, cols] == 1).any())
                    if known[n, 0, i, j] == 0:
                        expected[n, 0, i, j] = 1
                    elif known[n, 0, i, j] == 1 or not beside_whole:
                        expected[n, 0, i, j] = 0
                    else:
                        expected[n, 0, i, j] = 1
        assert torch.equal(got, expected)


@pytest.mark.parametrize("side", [320, 321, 161])
def test_a_lattice_of_known_pixels_sets_the_fill_whatever_the_parity_of_the_sides(side):
    """Every 16th pixel known (a picture restored from samples, as inpaint's sparse rule fills it): at
    321 px the coarse copies kept one known pixel and dropped the others (9 grey levels off on a smooth
    picture, 18 at 161 px, against 0.9 at 320)."""
    smooth = F.interpolate(torch.rand(1, 3, 6, 6), size=(side, side), mode="bicubic", align_corners=True).clamp(0, 1)
    mask = torch.ones(1, 1, side, side)
    mask[..., ::16, ::16] = 0
    filled = multiscale_biharmonic_fill(smooth * (1 - mask), mask, 128)
    assert (filled - smooth).abs()[mask.expand_as(smooth) > 0].mean() < 3 / 255


def test_an_image_without_known_pixels_is_grey():
    out = harmonic_fill(torch.rand(2, 3, 8, 8), torch.ones(2, 1, 8, 8))
    assert torch.equal(out, torch.full_like(out, 0.5))


@pytest.mark.parametrize("variant", ["residual", "residual_unet"])
def test_residual_generators_start_as_the_biharmonic_fill(variant):
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(3, 3, 24, 24, generator=gen)
    mask = make_masks("random", 3, 24, 8, gen)
    g = Generator(24, variant=variant).eval()
    with torch.no_grad():
        out = g(image * (1 - mask), mask)
    torch.testing.assert_close(out, biharmonic_fill(image * (1 - mask), mask).clamp(0, 1))
    assert g.config["variant"] == variant
    again = Generator(**g.config)
    again.load_state_dict(g.state_dict())                    # the exported config rebuilds it


def test_biharmonic_fill_reproduces_quadratic_ramps():
    # x^2 + y^2 has a constant Laplacian, so its bilaplacian vanishes: the biharmonic fill keeps
    # it (away from the mirrored border), the harmonic one does not
    y, x = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 24), indexing="ij")
    image = (0.25 * (x**2 + y**2))[None, None].expand(1, 3, 24, 24).contiguous()
    mask = torch.zeros(1, 1, 24, 24)
    mask[..., 8:16, 8:16] = 1
    bi = biharmonic_fill(image, mask)
    assert float((bi - image).abs().max()) < 2e-3
    assert float((harmonic_fill(image, mask) - image).abs().max()) > 5 * float((bi - image).abs().max())


def test_hole_box_is_the_holes_rows_and_columns_grown_by_the_reach():
    from nfinpaint.initial_fill import CG_REACH, _hole_box

    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    h, w = 80, 100
    for _ in range(20):
        mask = torch.zeros(3, 1, h, w)
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            n, top, left = (int(torch.randint(0, hi, (1,), generator=g)) for hi in (3, h - 5, w - 5))
            mask[n, :, top:top + 5, left:left + 5] = 1
        rows, cols = mask.sum(dim=(0, 1, 3)).nonzero().flatten(), mask.sum(dim=(0, 1, 2)).nonzero().flatten()
        box = (slice(max(int(rows.min()) - CG_REACH, 0), min(int(rows.max()) + CG_REACH + 1, h)),
               slice(max(int(cols.min()) - CG_REACH, 0), min(int(cols.max()) + CG_REACH + 1, w)))
        area = (box[0].stop - box[0].start) * (box[1].stop - box[1].start)
        assert _hole_box(mask) == (box if area <= 0.7 * h * w else None)
    assert _hole_box(torch.zeros(1, 1, h, w)) is None        # no hole: nothing to box
    assert _hole_box(torch.ones(1, 1, h, w)) is None         # all hole: the box is the image


@pytest.mark.parametrize("where", ["inside", "at the border", "two holes"])
def test_conjugate_gradients_on_the_holes_box_equal_the_whole_image(where):
    """The box the steps run on (the holes and CG_REACH pixels around them) gives the whole image's result,
    in float32 at the shipped step count (the sums are float64, so the order of summation does not move
    the steps)."""
    from nfinpaint.initial_fill import _hole_box, boxed_conjugate_gradients, conjugate_gradients

    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    image = torch.rand(2, 3, 70, 90, generator=g)
    mask = torch.zeros(2, 1, 70, 90)
    top, left = (int(v) for v in torch.randint(3, 40, (2,), generator=g))
    if where == "at the border":
        top, left = 0, 90 - 14
    mask[0, :, top:top + 12, left:left + 14] = 1
    if where == "two holes":
        mask[1, :, 50:60, 5:12] = 1
    assert _hole_box(mask) is not None       # the path under test is taken
    start = torch.where(mask > 0.5, torch.rand(image.shape, generator=g), image)
    boxed = boxed_conjugate_gradients(mask, start, 32)
    whole = conjugate_gradients(mask, start, 32)
    torch.testing.assert_close(boxed, whole, atol=1e-6, rtol=0)
    assert torch.equal(boxed[mask.expand_as(boxed) < 0.5], image[mask.expand_as(image) < 0.5])


# ---------------------------------------------------------------- the compiled solver (nfinpaint::biharmonic_cg)
def _cg_problem(g: torch.Generator, n: int, c: int, h: int, w: int, soft: bool = False):
    image = torch.rand(n, c, h, w, generator=g)
    mask = torch.rand(n, 1, h, w, generator=g)
    mask = mask if soft else (mask > 0.6).float()
    start = torch.where(mask > 0.5, torch.rand(image.shape, generator=g), image)
    return start, mask


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 3, 1, 9), (1, 3, 11, 1), (2, 1, 2, 2), (3, 3, 17, 23),
                                   (1, 3, 64, 80)])
@pytest.mark.parametrize("soft", [False, True], ids=["binary mask", "weights in [0, 1]"])
def test_compiled_solver_equals_the_tensor_steps(shape, soft):
    """The operator (the path every CPU fill takes) against the tensor steps it replaces, step counts 1 to 32;
    the two add float64 sums in different orders, so equality is to float32 rounding, not to the bit."""
    from nfinpaint.initial_fill import conjugate_gradients_reference

    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    start, mask = _cg_problem(g, *shape, soft=soft)
    for iterations in (1, 5, 32):
        got = torch.ops.nfinpaint.biharmonic_cg(start, mask, iterations)
        want = conjugate_gradients_reference(mask, start, iterations)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)   # soft weights allow |x| >> 1
    assert torch.equal(torch.ops.nfinpaint.biharmonic_cg(start, mask, 0), start)


def _sparse_holes(g: torch.Generator, n: int, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) masks of a few small holes each, where the solver visits a band, not the plane: thin
    lines (one across the whole plane), holes touching each side and corner, two holes far apart in one row,
    a lone pixel, soft weights in one of them."""
    mask = torch.zeros(n, 1, h, w)
    for i in range(n):
        r = lambda hi: int(torch.randint(0, hi, (1,), generator=g))     # noqa: E731
        row, col = r(h - 4), r(w - 4)
        mask[i, 0, row:row + 3, :] = 1                                # a scratch across the plane
        mask[i, 0, r(h - 3):, r(w)] = 1                               # a line down to the bottom edge
        mask[i, 0, : 1 + r(3), : 1 + r(3)] = 1                        # top-left corner
        mask[i, 0, h - 1 - r(3):, w - 1 - r(3):] = 1                  # bottom-right corner
        far = r(h)
        mask[i, 0, far, 1 + r(4)] = 1                                 # two holes far apart in one row
        mask[i, 0, far, w - 2 - r(4)] = 1
        mask[i, 0, r(h), r(w)] = 1                                    # a lone pixel
        mask[i, 0, r(h - 6):, r(w - 6):][:5, :5] = torch.rand(5, 5, generator=g) if i % 2 else 1
    return mask


@pytest.mark.parametrize("shape", [(3, 3, 40, 57), (2, 1, 97, 64)])
def test_compiled_solver_on_sparse_holes_equals_the_tensor_steps(shape):
    """The operator visits only the band within two pixels of the holes (a scratch across a large picture
    costs its band): on planes of scattered small holes, touching every side, it still gives the tensor steps
    over the whole plane, and the known pixels stay exactly the input's."""
    from nfinpaint.initial_fill import conjugate_gradients_reference

    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    n, c, h, w = shape
    mask = _sparse_holes(g, n, h, w)
    start = torch.where(mask > 0, torch.rand(n, c, h, w, generator=g), torch.rand(n, c, h, w, generator=g))
    for iterations in (1, 8, 32):
        got = torch.ops.nfinpaint.biharmonic_cg(start, mask, iterations)
        torch.testing.assert_close(got, conjugate_gradients_reference(mask, start, iterations), atol=2e-5, rtol=1e-5)
        known = (mask == 0).expand_as(start)
        assert torch.equal(got[known], start[known])
        assert not torch.equal(got, start)


def test_compiled_solver_gives_each_image_of_a_batch_its_alone_bits():
    """One thread solves the planes of several images in turn, each on its own hole's band: an image after one
    with a larger hole must not see what that solve left in the scratch (bit for bit the image alone)."""
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    big = (torch.rand(1, 1, 33, 41, generator=g) > 0.3).float()           # most of the plane
    mask = torch.cat([big, _sparse_holes(g, 2, 33, 41), big])
    start = torch.rand(4, 3, 33, 41, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        batch = torch.ops.nfinpaint.biharmonic_cg(start, mask, 32)
        alone = [torch.ops.nfinpaint.biharmonic_cg(start[i:i + 1], mask[i:i + 1], 32) for i in range(4)]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(batch, torch.cat(alone))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_compiled_solver_keeps_a_non_finite_plane_to_itself(bad):
    """A NaN or inf in one channel's hole spoils that plane only: one thread solving the next channel
    (and the next image) on scratch the spoiled solve left once read NaN * 0 in the band's padding."""
    from nfinpaint.initial_fill import conjugate_gradients_reference

    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    mask = _sparse_holes(g, 2, 21, 19)
    start = torch.rand(2, 3, 21, 19, generator=g)
    hole = mask[0, 0].nonzero()[0]
    start[0, 0, hole[0], hole[1]] = bad
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        got = torch.ops.nfinpaint.biharmonic_cg(start, mask, 8)
    finally:
        torch.set_num_threads(threads)
    assert not got[0, 0].isfinite().all()
    clean = torch.ones(2, 3, dtype=torch.bool)
    clean[0, 0] = False
    torch.testing.assert_close(got[clean], conjugate_gradients_reference(mask, start, 8)[clean], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("x_shape, mask_shape, dtype, iterations", [
    ((2, 3, 4), (2, 1, 4), torch.float32, 3), ((2, 3, 4, 4), (5, 1, 9, 9), torch.float32, 3),
    ((2, 3, 4, 4), (2, 3, 4, 4), torch.float32, 3), ((2, 3, 4, 4), (2, 1, 4, 4), torch.float64, 3),
    ((2, 3, 4, 4), (2, 1, 4, 4), torch.float32, -1)])
def test_compiled_solver_fake_refuses_what_the_kernel_refuses(x_shape, mask_shape, dtype, iterations):
    """Tracing (meta / fake tensors, torch.compile) fails where the call would, in the kernel's words."""
    def call(device):
        return torch.ops.nfinpaint.biharmonic_cg(torch.zeros(x_shape, dtype=dtype, device=device),
                                                 torch.zeros(mask_shape, dtype=dtype, device=device), iterations)

    assert_meta_refuses_as_cpu(call)


def test_compiled_solver_refuses_a_meta_input_beside_a_cpu_one():
    """One input on "meta" sends the call to the fake kernel, which returned an uninitialised CPU tensor."""
    from nfinpaint.initial_fill import conjugate_gradients

    x, mask = torch.rand(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    with pytest.raises(RuntimeError, match="expected x and mask on one device, got cpu and meta"):
        torch.ops.nfinpaint.biharmonic_cg(x, mask.to("meta"), 3)
    with pytest.raises(RuntimeError, match="expected x and mask on one device, got meta and cpu"):
        torch.ops.nfinpaint.biharmonic_cg(x.to("meta"), mask, 3)
    with pytest.raises(RuntimeError, match="on one device"):
        conjugate_gradients(mask.to("meta"), x, 3)


def test_both_paths_of_conjugate_gradients_take_the_same_problems():
    """The operator (float32) and the reference (float64, graphs) accept the same inputs: a mask shared by
    the batch, which the operator refused, and planes without pixels, on which the reference failed."""
    from nfinpaint.initial_fill import conjugate_gradients

    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    x = torch.rand(3, 2, 15, 17, generator=g, dtype=torch.float64)
    shared = (torch.rand(1, 1, 15, 17, generator=g, dtype=torch.float64) > 0.6).double()
    wide = conjugate_gradients(shared, x, 8)
    torch.testing.assert_close(conjugate_gradients(shared.float(), x.float(), 8), wide.float(), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(wide, conjugate_gradients(shared.expand(3, 1, 15, 17), x, 8))
    for shape in ((2, 0, 8, 8), (2, 3, 0, 8), (2, 3, 8, 0)):
        for dtype in (torch.float32, torch.float64):
            empty = torch.rand(shape, dtype=dtype)
            assert conjugate_gradients(torch.ones(2, 1, *shape[2:], dtype=dtype), empty, 3).shape == shape


def test_compiled_solver_edge_cases():
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    image = torch.rand(2, 3, 9, 10, generator=g)
    # no hole: nothing moves; all hole: no boundary, the residual of a constant start is 0, nothing moves
    assert torch.equal(torch.ops.nfinpaint.biharmonic_cg(image, torch.zeros(2, 1, 9, 10), 8), image)
    flat = torch.full((1, 3, 9, 10), 0.25)
    assert torch.equal(torch.ops.nfinpaint.biharmonic_cg(flat, torch.ones(1, 1, 9, 10), 8), flat)
    # a strided input (a window of a larger picture, channels-last) gives the contiguous input's result
    big = torch.rand(1, 3, 20, 30, generator=g).contiguous(memory_format=torch.channels_last)
    before = big.clone()
    window = big[:, :, 3:12, 5:15]
    mask = (torch.rand(1, 1, 9, 10, generator=g) > 0.5).float()
    out = torch.ops.nfinpaint.biharmonic_cg(window, mask, 8)
    assert torch.equal(out, torch.ops.nfinpaint.biharmonic_cg(window.contiguous(), mask, 8))
    assert not torch.equal(out, window)           # the hole did move
    assert torch.equal(big, before)               # the input is not written to


@pytest.mark.parametrize("scale", [3e17, 5e17, 1e18, 1e30])
def test_values_beyond_the_solvers_range_keep_their_start(scale):
    """Squares that overflow float32 (|x| ~ 1e30) are outside the solver's range: the operator kept the
    start, and the reference turned the whole plane, known pixels too, to NaN (0 * inf).  Between ~2e17
    and ~1e18 r.r is finite but float32's p*Ap is not: both went on, p doubling to inf, and ended in NaN
    (the operator's over known pixels beside the hole too)."""
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    x = torch.rand(1, 2, 12, 12, generator=g) * scale
    mask = torch.zeros(1, 1, 12, 12)
    mask[..., 4:8, 4:8] = 1
    reference = initial_fill.conjugate_gradients_reference(mask, x, 32)
    operator = torch.ops.nfinpaint.biharmonic_cg(x, mask, 32)
    if scale >= 1e18:       # p.Ap overflows at the first step: every plane keeps its start
        assert torch.equal(reference, x) and torch.equal(operator, x)
    else:                   # some planes solve (about a third at 3e17), none turns NaN, known pixels stay
        known = (mask == 0).expand_as(x)
        for out in (reference, operator):
            assert bool(torch.isfinite(out).all()) and torch.equal(out[known], x[known])


@pytest.mark.parametrize("bad, message", [
    (lambda x, m: (x[0], m[0]), r"expected x of shape \(N, C, H, W\)"),
    (lambda x, m: (x, m.expand(-1, 3, -1, -1)), r"expected mask of shape \(N, 1, H, W\) = \(2, 1, 5, 6\)"),
    (lambda x, m: (x, m[:, :, :4]), r"expected mask of shape"),
    (lambda x, m: (x.double(), m), "expected float32 x and mask"),
])
def test_compiled_solver_refuses_bad_input(bad, message):
    x, m = torch.rand(2, 3, 5, 6), torch.ones(2, 1, 5, 6)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.nfinpaint.biharmonic_cg(*bad(x, m), 4)
    with pytest.raises(RuntimeError, match="iterations must be >= 0"):
        torch.ops.nfinpaint.biharmonic_cg(x, m, -1)


def test_opcheck_compiled_solver():
    g = torch.Generator().manual_seed(3)
    for shape in [(1, 3, 6, 7), (2, 1, 1, 5)]:
        torch.library.opcheck(torch.ops.nfinpaint.biharmonic_cg.default, (*_cg_problem(g, *shape), 4))


def test_conjugate_gradients_routes_cpu_float32_to_the_operator_and_the_rest_to_the_reference(monkeypatch):
    """CPU float32 outside graph capture takes the operator; float64 and inputs that need a gradient take the
    tensor steps (no silent fallback for a missing build: the operator path requires the extension; the
    export graph calls the tensor steps itself, with its convolution Laplacian)."""
    from nfinpaint import initial_fill

    calls = []
    real = torch.ops.nfinpaint.biharmonic_cg

    class Spy:
        def __call__(self, *args):
            calls.append("op")
            return real(*args)

    monkeypatch.setattr(torch.ops.nfinpaint, "biharmonic_cg", Spy())
    g = torch.Generator().manual_seed(4)
    start, mask = _cg_problem(g, 1, 3, 8, 9)
    initial_fill.conjugate_gradients(mask, start, 3)
    assert calls == ["op"]
    initial_fill.conjugate_gradients(mask.double(), start.double(), 3)
    initial_fill.conjugate_gradients(mask, start.clone().requires_grad_(), 3)
    assert calls == ["op"]


@pytest.mark.parametrize("solver", ["operator", "tensor steps"])
@pytest.mark.parametrize("side", [2, 3, 5])
def test_small_systems_stay_at_their_solution_after_converging(solver, side):
    """A small system converges in a few steps; the steps after it divided rounding noise by rounding noise and,
    on 2x2 and 3x3 planes that are all hole (a singular system), threw the fill to 1e34 or NaN (468 of 503 and
    7 of 7 such planes among 20,000).  Now every fill after 32 or 300 steps stays finite and near its start,
    and where something is known it is the direct solve's (300 planes a side, each its own system)."""
    from nfinpaint.initial_fill import conjugate_gradients_reference

    solve = (lambda m, x, k: torch.ops.nfinpaint.biharmonic_cg(x, m, k)) if solver == "operator" else \
        (lambda m, x, k: conjugate_gradients_reference(m, x, k))
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    start, mask = _cg_problem(g, 300, 1, side, side)
    mask[:4] = 1                                                          # a few all-hole planes, whatever the draw
    usable = [i for i in range(300) if 0 < mask[i].sum() < side * side]    # a hole and something known
    expected = np.stack([_biharmonic_solution(start[i].double().numpy(), mask[i, 0].numpy() > 0.5) for i in usable])
    all_hole = mask.flatten(1).amin(dim=1) > 0.5
    for steps in (32, 300):
        got = solve(mask, start, steps)
        assert torch.isfinite(got).all() and got.abs().max() < 10
        np.testing.assert_allclose(got[usable].double().numpy(), expected, atol=2e-4)
    assert len(usable) >= 100 and all_hole.sum() >= 4                   # both kinds of plane are there


def test_compiled_solver_gives_the_same_bits_for_any_thread_count():
    """Each plane is solved start to end by one thread, so splitting the planes differently changes nothing."""
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    start, mask = _cg_problem(g, 5, 3, 31, 37)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.nfinpaint.biharmonic_cg(start, mask, 32)
        torch.set_num_threads(4)
        four = torch.ops.nfinpaint.biharmonic_cg(start, mask, 32)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, four)


@pytest.mark.gpu
def test_cuda_solver_equals_the_cpu_solver():
    """The CUDA kernel runs the CPU loops' per-pixel math (one block a plane); only the float64 dot products
    add in another order.  Sizes from one pixel to a plane larger than a block's threads many times over."""
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    for shape in [(1, 3, 1, 1), (2, 1, 2, 2), (2, 3, 17, 23), (4, 3, 96, 128), (1, 3, 300, 257)]:
        for soft in (False, True):
            start, mask = _cg_problem(g, *shape, soft=soft)
            for iterations in (0, 1, 32):
                cpu = torch.ops.nfinpaint.biharmonic_cg(start, mask, iterations)
                gpu = torch.ops.nfinpaint.biharmonic_cg(start.cuda(), mask.cuda(), iterations)
                assert gpu.is_cuda
                torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-5, rtol=1e-5)
    start, mask = _cg_problem(g, 2, 3, 9, 11)
    torch.library.opcheck(torch.ops.nfinpaint.biharmonic_cg.default, (start.cuda(), mask.cuda(), 4))
    # a window of a larger picture on the GPU, as inpaint passes it
    big = torch.rand(1, 3, 40, 50, generator=g).cuda()
    hole = (torch.rand(1, 1, 20, 30, generator=g) > 0.5).float().cuda()
    torch.testing.assert_close(torch.ops.nfinpaint.biharmonic_cg(big[:, :, 5:25, 10:40], hole, 32).cpu(),
                               torch.ops.nfinpaint.biharmonic_cg(big[:, :, 5:25, 10:40].cpu(), hole.cpu(), 32),
                               atol=2e-5, rtol=1e-5)


@pytest.mark.gpu
def test_conjugate_gradients_routes_cuda_float32_to_the_operator(monkeypatch):
    from nfinpaint import initial_fill

    calls = []
    real = torch.ops.nfinpaint.biharmonic_cg

    class Spy:
        def __call__(self, *args):
            calls.append(args[0].device.type)
            return real(*args)

    monkeypatch.setattr(torch.ops.nfinpaint, "biharmonic_cg", Spy())
    start, mask = _cg_problem(torch.Generator().manual_seed(6), 1, 3, 8, 9)
    initial_fill.conjugate_gradients(mask.cuda(), start.cuda(), 3)
    initial_fill.conjugate_gradients(mask.cuda().double(), start.cuda().double(), 3)
    assert calls == ["cuda"]
    side = int(initial_fill.CUDA_PLANE_LIMIT ** 0.5) + 1       # a plane past the one-block-a-plane limit
    initial_fill.conjugate_gradients(torch.zeros(1, 1, side, side, device="cuda"),
                                     torch.zeros(1, 3, side, side, device="cuda"), 1)
    assert calls == ["cuda"]
