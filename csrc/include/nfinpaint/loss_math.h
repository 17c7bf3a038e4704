#pragma once
// Per-element math of the fused losses (composite_l2, feature_distance), and
// the index arithmetic of their layouts. Called by the CPU loops
// (csrc/cpu/*.cpp) and the CUDA kernels (csrc/cuda/*.cu), so the CPU tests
// cover this arithmetic for both. nvcc builds with --fmad=false (setup.py), so
// it does not contract these into FMAs: elementwise results round as on the CPU.
// T is the accumulate type: float for float32/float16/bfloat16 inputs (converted
// on load, results rounded once on store), double for float64 (gradcheck).
#include <cstdint>

#include "nfinpaint/macros.h"

namespace nfinpaint {

// ---- composite_l2 ----
// composite = m*g + (1-m)*t; this form (not t + m*(g-t)) gives exactly g where
// m == 1 and exactly t where m == 0.
template <typename T>
NFI_HD T composite_value(T g, T t, T m) { return m * g + (T(1) - m) * t; }

// Squared error of one element inside the (soft) hole: m*(g-t)^2.
template <typename T>
NFI_HD T masked_sq_err(T g, T t, T m) {
  const T d = g - t;
  return m * d * d;
}

// d/dg of (composite, sq_err[n]) contracted with (grad_composite, grad_sq_err[n]):
// m*gc + gs*2*m*(g-t) = m*(gc + 2*gs*(g-t)).
template <typename T>
NFI_HD T composite_l2_grad(T grad_composite, T grad_sq_err, T g, T t, T m) {
  return m * (grad_composite + T(2) * grad_sq_err * (g - t));
}

// The same when the loss got no gradient (grad_sq_err missing): m*gc. Not composite_l2_grad with
// grad_sq_err = 0: its 0*(g-t) is NaN where generated or target is inf or NaN, and m*gc is not.
template <typename T>
NFI_HD T composite_grad(T grad_composite, T m) { return m * grad_composite; }

// ---- feature_distance (equation 2 of the paper) ----
template <typename T>
NFI_HD T weighted_sq_diff(T f, T r, T w) {
  const T d = f - r;
  return w * d * d;
}

// d/dfake of grad_dist[n] * w*(f-r)^2. d/dreal is its negation, taken in the
// autograd wrapper (nfinpaint/ops.py), so no kernel computes it twice.
template <typename T>
NFI_HD T feature_distance_grad(T grad_dist, T f, T r, T w) {
  return T(2) * grad_dist * w * (f - r);
}

// ---- layouts ----
// Both NCHW-contiguous and channels-last tensors store each sample in one
// contiguous run of S = C*H*W elements, so the kernels walk sample n's flat
// range [0, S). Only a mask/weight broadcast over channels, (N,1,H,W), needs
// its own index: one value a pixel, HW values a sample.
enum class MaskLayout : int {
  kNone = 0,         // no weight (feature_distance without weight): w = 1
  kFull = 1,         // (N,C,H,W) in the same memory format: same index as the data
  kBcastNCHW = 2,    // (N,1,H,W) with NCHW data: pixel = i % HW
  kBcastNHWC = 3,    // (N,1,H,W) with channels-last data: pixel = i / C
};

// Index, within sample n's mask of `mask_per_sample` values, of the mask value
// that weights flat element i of the sample's data.
template <MaskLayout L>
NFI_HD int64_t mask_index(int64_t i, int64_t hw, int64_t channels) {
  if constexpr (L == MaskLayout::kBcastNCHW) {
    return i % hw;
  } else if constexpr (L == MaskLayout::kBcastNHWC) {
    return i / channels;
  } else {
    return i;
  }
}

// ---- chunking and the second-pass sum (both backends run these) ----
// Each sample is cut into fixed chunks whose float32 partial sums are added per
// sample in chunk order (in float64): the result does not depend on the number
// of threads or blocks (deterministic). The CPU loops take kChunk elements a
// work item, a CUDA block kCudaChunk (smaller, so a batch of small images still
// fills the GPU); both map work items to elements with chunk_at().
constexpr int64_t kChunk = 4096;
constexpr int64_t kCudaChunk = 2048;

NFI_HD int64_t chunk_count(int64_t s, int64_t chunk) { return (s + chunk - 1) / chunk; }

struct Chunk {
  int64_t sample;  // which sample
  int64_t begin;   // first element within the sample
  int64_t len;     // elements in the chunk
  int64_t base;    // flat offset of the chunk's first element in the batch
};

// Work item `item` of n * nchunk. All int64: a batch may exceed 2^31 elements.
NFI_HD Chunk chunk_at(int64_t item, int64_t nchunk, int64_t s, int64_t chunk) {
  Chunk c;
  c.sample = item / nchunk;
  c.begin = (item % nchunk) * chunk;
  c.len = s - c.begin < chunk ? s - c.begin : chunk;
  c.base = c.sample * s + c.begin;
  return c;
}

// Row `row` of the (rows, nchunk) partials, added in chunk order in double.
template <typename A>
NFI_HD A sum_chunk_partials(const A* part, int64_t row, int64_t nchunk) {
  double s = 0;
  for (int64_t k = 0; k < nchunk; ++k) s += static_cast<double>(part[row * nchunk + k]);
  return static_cast<A>(s);
}

}  // namespace nfinpaint
