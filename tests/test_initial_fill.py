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
