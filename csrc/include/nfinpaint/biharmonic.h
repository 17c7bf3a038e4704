#pragma once
// Per-pixel steps of the biharmonic conjugate-gradient solver (nfinpaint::biharmonic_cg,
// csrc/cpu/biharmonic.cpp; reference: nfinpaint/initial_fill.py, _conjugate_gradients_tensor).
//
// The system is P L L P x = 0 in the hole (P: the hole's weights, L: the 5-point graph Laplacian
// with replicated borders, which is symmetric, so conjugate gradients apply). Every value is
// float32 and every dot product float64, each operation in the reference's order, so the two
// differ only by the order in which the float64 dot products add up.
#include <cstdint>

#include "nfinpaint/macros.h"

namespace nfinpaint::biharmonic {

// The Laplacian at a pixel from its four neighbours (replicated at the border) and itself, added in the
// reference's order: ((up + down) + left) + right, minus 4 * centre.
NFI_HD float laplacian5(float up, float down, float left, float right, float centre) {
  return (((up + down) + left) + right) - 4.0f * centre;
}

// A conjugate-gradient step length, as the reference computes it: the float64 quotient with the
// denominator floored at 1e-30 (an empty or converged system moves by 0, not NaN), rounded to float32.
NFI_HD float step_ratio(double numerator, double denominator) {
  return static_cast<float>(numerator / (denominator > 1e-30 ? denominator : 1e-30));
}

// A plane has converged when its squared residual is this fraction of its first (a residual a millionth of
// the first: float32's rounding level); it also stops when p.Ap <= 0 (the operator is positive
// semi-definite, so only rounding gets there). Steps past either divide rounding noise by rounding noise
// and threw small systems to 1e34 or NaN. Python's CG_CONVERGED is the same number.
constexpr double kConverged = 1e-12;

// It also stops when p.Ap is not finite: values of ~1e17-1e18 keep r.r finite while float32's p*Ap
// overflows, and the steps after (alpha 0, beta 1, p doubling to inf) ended in NaN over known pixels too.
NFI_HD bool converged(double rs, double rs_first, double pap) {
  return rs <= rs_first * kConverged || !(pap > 0.0 && pap <= 1.7976931348623157e308);
}

// The index of the neighbour `offset` (-1 or +1) away along a side of `size` pixels, replicated at the border.
NFI_HD int64_t clamped(int64_t index, int64_t offset, int64_t size) {
  const int64_t j = index + offset;
  return j < 0 ? 0 : (j >= size ? size - 1 : j);
}

}  // namespace nfinpaint::biharmonic
