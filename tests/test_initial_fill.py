"""The harmonic initial fill that the residual generators refine."""
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

from nfinpaint.initial_fill import biharmonic_fill, harmonic_fill
from nfinpaint.masks import make_masks
from nfinpaint.networks import Generator


def _laplace_solution(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Direct sparse solve of the 5-point Laplace equation in the hole, replicate boundary."""
    h, w = hole.shape
    index = -np.ones((h, w), int)
    ys, xs = np.nonzero(hole)
    index[ys, xs] = np.arange(len(ys))
    a = scipy.sparse.lil_matrix((len(ys), len(ys)))
    b = np.zeros((len(ys), image.shape[0]))
    for k, (y, x) in enumerate(zip(ys, xs)):
        a[k, k] = 1.0
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            ny, nx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
            if hole[ny, nx]:
                a[k, index[ny, nx]] -= 0.25
            else:
                b[k] += 0.25 * image[:, ny, nx]
    solution = scipy.sparse.linalg.spsolve(a.tocsr(), b)
    out = image.copy()
    out[:, ys, xs] = solution.reshape(len(ys), -1).T
    return out


def test_known_pixels_are_kept_and_hole_content_ignored():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, 24, 24, generator=gen)
    mask = make_masks("random", 4, 24, 8, gen)
    a = harmonic_fill(image, mask)
    b = harmonic_fill(image * (1 - mask) + mask * torch.rand(4, 3, 24, 24, generator=gen), mask)
    assert torch.equal(a, b)
    assert torch.equal(a * (1 - mask), image * (1 - mask))


def test_matches_a_direct_solve_of_laplaces_equation():
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 24, 24, generator=gen, dtype=torch.float64)
    mask = make_masks("random", 2, 24, 8, gen).double()
    got = harmonic_fill(image, mask, iterations=3000)
    for n in range(2):
        want = _laplace_solution(image[n].numpy(), mask[n, 0].numpy() > 0.5)
        np.testing.assert_allclose(got[n].numpy(), want, atol=1e-6)


@pytest.mark.parametrize("iterations", [24, 48])
def test_default_iterations_are_close_to_the_solution_on_ramps(iterations):
    # a linear ramp is harmonic: the exact fill reproduces it
    y, x = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 24), indexing="ij")
    image = torch.stack([x, y, 0.5 * x + 0.3 * y])[None]
    mask = torch.zeros(1, 1, 24, 24)
    mask[..., 6:18, 5:17] = 1
    got = harmonic_fill(image, mask, iterations=iterations)
    assert float((got - image).abs().max()) < 0.02


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


def _biharmonic_solution(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Direct sparse solve of (L L u)[hole] = 0 with u fixed outside the hole, L the 5-point
    Laplacian with mirrored borders (the discretisation biharmonic_fill relaxes towards)."""
    h, w = hole.shape
    n = h * w
    lap = scipy.sparse.lil_matrix((n, n))
    for y in range(h):
        for x in range(w):
            k = y * w + x
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                lap[k, ny * w + nx] += 1.0
                lap[k, k] -= 1.0
    bilap = (lap.tocsr() @ lap.tocsr()).tocsr()
    inside = hole.reshape(-1)
    a = bilap[inside][:, inside]
    out = image.copy()
    for c in range(image.shape[0]):
        u = image[c].reshape(-1)
        b = -bilap[inside][:, ~inside] @ u[~inside]
        out[c].reshape(-1)[inside] = scipy.sparse.linalg.spsolve(a.tocsc(), b)
    return out


def test_biharmonic_fill_matches_a_direct_solve():
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(2, 3, 20, 20, generator=gen, dtype=torch.float64)
    mask = make_masks("random", 2, 20, 7, gen).double()
    got = biharmonic_fill(image, mask, iterations=400)
    for n in range(2):
        want = _biharmonic_solution(image[n].numpy(), mask[n, 0].numpy() > 0.5)
        np.testing.assert_allclose(got[n].numpy(), want, atol=1e-5)


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
