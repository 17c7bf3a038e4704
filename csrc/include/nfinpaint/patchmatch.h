#pragma once
// PatchMatch per-pixel steps, shared by the CPU loop (csrc/cpu/patchmatch.cpp)
// and the CUDA kernels (csrc/cuda/patchmatch.cu). Both backends run these exact
// functions on the same schedule, so for the same seed they produce the same
// nearest-neighbour field: the CPU tests prove the CUDA logic.
//
// Layout: images are (H, W, C) float32, row-major ("channels last") so that a
// patch row is one contiguous run of (2r+1)*C floats. Fields are (H, W, 2)
// int32 absolute source centres (y, x). Costs are patch sums of squared
// differences (SSD), normalised only when the op returns them.
//
// Determinism across backends:
// - random numbers are a counter-based hash of (seed, target pixel, counter),
//   never a stateful generator, so thread/block order does not matter;
// - propagation is Jacobi-style (reads one buffer, writes another), so no pixel
//   sees a neighbour's update from the same pass;
// - float sums use a fixed association order and, on the GPU, explicit
//   round-to-nearest intrinsics so nvcc cannot contract them into FMAs (the
//   host compiler targets baseline x86-64, which has no FMA).
#include <math.h>  // frexpf, ldexpf (host and device)

#include <cstdint>

#include "nfinpaint/macros.h"

namespace nfinpaint::patchmatch {

constexpr float kInf = __builtin_huge_valf();
// Jump-flooding propagation: steps max_step, max_step/2, ..., 1. The first
// iteration of a search from scratch (no initial field) starts from the
// largest power of two below the active region's bounding-box extent (global
// reach in log2 passes); later iterations, and every iteration of a search
// that continues from an initial field, from kLaterMaxStep (local
// refinement). The random search of an iteration runs in the same pass as
// its step-1 propagation, right after it, for each pixel.
constexpr int32_t kLaterMaxStep = 2;  // {2, 1}: best distance per time (notes/patchmatch.md)

struct Problem {
  const float* target;          // (target_h, target_w, channels)
  const float* source;          // (source_h, source_w, channels)
  const bool* usable;           // (source_h, source_w): allowed centre whose patch lies inside the source
  const int32_t* usable_list;   // linear indices of the usable centres, for uniform random draws
  int32_t n_usable;
  int32_t target_h, target_w, source_h, source_w, channels, radius;
  uint32_t seed_lo, seed_hi;
};

NFI_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

NFI_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

NFI_HD int32_t min_i(int32_t a, int32_t b) { return a < b ? a : b; }
NFI_HD int32_t max_i(int32_t a, int32_t b) { return a > b ? a : b; }

// lowbias32 (Chris Wellons' hash-prospector): a strong 32-bit integer mixer.
NFI_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Counter-based random number for (seed, target pixel, counter).
NFI_HD uint32_t random_u32(const Problem& p, uint32_t pixel, uint32_t counter) {
  uint32_t h = mix32(p.seed_lo + 0x9e3779b9U);
  h = mix32(h ^ p.seed_hi);
  h = mix32(h + pixel);
  return mix32(h ^ (counter * 0x85ebca6bU + 0x165667b1U));
}

// Counter 0 is the random initialisation; random search uses the counters of
// search_counter(iteration, draw), two per candidate (y then x).
NFI_HD uint32_t search_counter(int32_t iteration, int32_t draw) {
  return 1U + (static_cast<uint32_t>(iteration) * 64U + static_cast<uint32_t>(draw)) * 2U;
}

NFI_HD bool is_usable(const Problem& p, int32_t sy, int32_t sx) {
  return sy >= 0 && sy < p.source_h && sx >= 0 && sx < p.source_w && p.usable[sy * p.source_w + sx];
}

// Number of target patch pixels inside the target image (the SSD skips the rest).
NFI_HD int32_t valid_pixels(const Problem& p, int32_t ty, int32_t tx) {
  const int32_t r = p.radius;
  const int32_t rows = min_i(r, p.target_h - 1 - ty) + min_i(r, ty) + 1;
  const int32_t cols = min_i(r, p.target_w - 1 - tx) + min_i(r, tx) + 1;
  return rows * cols;
}

// SSD between the target patch centred at (ty, tx) and the source patch at
// (sy, sx) (a usable centre, so its patch is inside the source), over the
// target patch pixels inside the target image. Summation order is fixed: each
// patch row is summed in four interleaved lanes combined as (l0+l1)+(l2+l3),
// then added to the running total (lanes break the add latency chain on the
// CPU). Returns early, with a partial sum > limit, once the running total
// exceeds limit: sums of non-negative terms only grow, so the early-out never
// changes an accept/reject decision.
NFI_HD float patch_ssd(const Problem& p, int32_t ty, int32_t tx, int32_t sy, int32_t sx, float limit) {
  const int32_t r = p.radius, C = p.channels;
  const int32_t dy0 = -min_i(r, ty), dy1 = min_i(r, p.target_h - 1 - ty);
  const int32_t dx0 = -min_i(r, tx), dx1 = min_i(r, p.target_w - 1 - tx);
  const int32_t n = (dx1 - dx0 + 1) * C;
  float total = 0.f;
  for (int32_t dy = dy0; dy <= dy1; ++dy) {
    const float* t = p.target + (static_cast<int64_t>(ty + dy) * p.target_w + tx + dx0) * C;
    const float* s = p.source + (static_cast<int64_t>(sy + dy) * p.source_w + sx + dx0) * C;
    float l0 = 0.f, l1 = 0.f, l2 = 0.f, l3 = 0.f;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
      const float d0 = t[i] - s[i], d1 = t[i + 1] - s[i + 1];
      const float d2 = t[i + 2] - s[i + 2], d3 = t[i + 3] - s[i + 3];
      l0 = add_rn(l0, mul_rn(d0, d0));
      l1 = add_rn(l1, mul_rn(d1, d1));
      l2 = add_rn(l2, mul_rn(d2, d2));
      l3 = add_rn(l3, mul_rn(d3, d3));
    }
    for (; i < n; ++i) {
      const float d = t[i] - s[i];
      l0 = add_rn(l0, mul_rn(d, d));
    }
    total = add_rn(total, add_rn(add_rn(l0, l1), add_rn(l2, l3)));
    if (!(total <= limit)) break;  // over the limit, or NaN
  }
  // A NaN pixel in either patch makes the match unusable, not unbeatable: as +inf, any finite
  // candidate replaces it (NaN compares false with everything, so a NaN start was never left).
  return total != total ? kInf : total;
}

// Index of pixel i's (y, x) pair in an (H, W, 2) field: int64, since 2*i
// overflows int32 for images over 2^30 pixels.
NFI_HD int64_t fi(int32_t i) { return 2 * static_cast<int64_t>(i); }

// The one "try a candidate, keep it if better" of propagation and random
// search: source centre (cy, cx) replaces the best match (by, bx) of target
// pixel (ty, tx) when it is a different usable centre with a strictly lower
// SSD (ties keep the earlier candidate, the fixed order both backends share).
NFI_HD void try_candidate(const Problem& p, int32_t ty, int32_t tx, int32_t cy, int32_t cx, int32_t& by,
                          int32_t& bx, float& best) {
  if ((cy == by && cx == bx) || !is_usable(p, cy, cx)) return;
  const float c = patch_ssd(p, ty, tx, cy, cx, best);
  if (c < best) {
    best = c;
    by = cy;
    bx = cx;
  }
}

// Initialise target pixel idx: the given initial match when it is usable,
// otherwise a uniform draw among the usable centres. The cost is computed
// only for active pixels (inactive ones are never searched; cost -1).
NFI_HD void init_pixel(const Problem& p, int32_t idx, const int32_t* init, bool active, int32_t* field,
                       float* cost) {
  int32_t sy = -1, sx = -1;
  if (init != nullptr) {
    sy = init[fi(idx)];
    sx = init[fi(idx) + 1];
  }
  if (init == nullptr || !is_usable(p, sy, sx)) {
    const int32_t s = p.usable_list[random_u32(p, static_cast<uint32_t>(idx), 0U) % static_cast<uint32_t>(p.n_usable)];
    sy = s / p.source_w;
    sx = s % p.source_w;
  }
  field[fi(idx)] = sy;
  field[fi(idx) + 1] = sx;
  cost[idx] = active ? patch_ssd(p, idx / p.target_w, idx % p.target_w, sy, sx, kInf) : -1.f;
}

// One jump-flooding propagation step at distance `step` for target pixel idx:
// each of the 4 neighbours at (+-step, 0), (0, +-step) proposes its own match
// shifted back by the same offset; the best (strictly lower cost, first in
// the fixed order left, right, up, down) wins. Reads *_in, writes *_out.
NFI_HD void propagate_pixel(const Problem& p, int32_t idx, int32_t step, const int32_t* field_in,
                            const float* cost_in, int32_t* field_out, float* cost_out) {
  const int32_t ty = idx / p.target_w, tx = idx % p.target_w;
  int32_t by = field_in[fi(idx)], bx = field_in[fi(idx) + 1];
  float best = cost_in[idx];
  const int32_t oys[4] = {0, 0, -step, step};
  const int32_t oxs[4] = {-step, step, 0, 0};
  for (int k = 0; k < 4; ++k) {
    const int32_t ny = ty + oys[k], nx = tx + oxs[k];
    if (ny < 0 || ny >= p.target_h || nx < 0 || nx >= p.target_w) continue;
    const int32_t n = ny * p.target_w + nx;
    try_candidate(p, ty, tx, field_in[fi(n)] - oys[k], field_in[fi(n) + 1] - oxs[k], by, bx, best);
  }
  field_out[fi(idx)] = by;
  field_out[fi(idx) + 1] = bx;
  cost_out[idx] = best;
}

// Random search around the current match of target pixel idx (in place: it
// reads and writes only its own entries): radius max(Hs, Ws), halved down to
// 1; candidates are clamped to the centres whose patch fits in the source and
// skipped when not usable.
NFI_HD void search_pixel(const Problem& p, int32_t idx, int32_t iteration, int32_t* field, float* cost) {
  const int32_t ty = idx / p.target_w, tx = idx % p.target_w;
  int32_t by = field[fi(idx)], bx = field[fi(idx) + 1];
  float best = cost[idx];
  int32_t draw = 0;
  for (int32_t radius = max_i(p.source_h, p.source_w); radius >= 1; radius /= 2, ++draw) {
    const uint32_t span = 2U * static_cast<uint32_t>(radius) + 1U;
    const uint32_t c0 = search_counter(iteration, draw);
    const int32_t oy = static_cast<int32_t>(random_u32(p, static_cast<uint32_t>(idx), c0) % span) - radius;
    const int32_t ox = static_cast<int32_t>(random_u32(p, static_cast<uint32_t>(idx), c0 + 1U) % span) - radius;
    const int32_t cy = min_i(max_i(by + oy, p.radius), p.source_h - 1 - p.radius);
    const int32_t cx = min_i(max_i(bx + ox, p.radius), p.source_w - 1 - p.radius);
    try_candidate(p, ty, tx, cy, cx, by, bx, best);
  }
  field[fi(idx)] = by;
  field[fi(idx) + 1] = bx;
  cost[idx] = best;
}

// The returned distance: SSD / (valid patch pixels * channels), i.e. the mean
// squared difference over the patch pixels inside the target and channels.
NFI_HD float normalised_cost(const Problem& p, int32_t idx, float ssd) {
  if (ssd < 0.f) return ssd;  // inactive pixel: not searched
  const int32_t n = valid_pixels(p, idx / p.target_w, idx % p.target_w) * p.channels;
  return ssd / static_cast<float>(n);
}

// Voting (Wexler et al.): hole pixel (y, x) becomes the weighted average, over
// every target patch centre c covering it, of the pixel its match field[c]
// puts there, weighted by weight[c] (<= 0 or NaN: no vote; +inf weights, where
// any vote, outvote the finite ones and count alike). Other pixels, and hole
// pixels that get no vote, keep their value. `image` (H, W, C) is both the
// current estimate and the source of the votes.
//
// Only the weights' ratios matter. The sums take the weights as they are while the largest vote
// weight lies in [2^-64, 2^64] (every case in practice: one pass); otherwise a second pass takes
// every weight times the power of two that brings the largest to [0.5, 1), applied as two normal
// factors (one could be subnormal or overflow). Scaling by a power of two is exact, so the two
// passes agree where both apply; it keeps the average for subnormal weights (whose float32 products
// with the pixels kept a few bits or rounded to 0: 0.4 off at 1e-45) and for weights whose sum
// overflowed (NaN at 3e38). A +inf largest weight counts the +inf weights alike and no other.
NFI_HD void vote_pixel(const float* image, int32_t h, int32_t w, int32_t channels, int32_t radius,
                       const int32_t* field, const float* weight, const bool* hole, int32_t idx,
                       float* out) {
  const int32_t y = idx / w, x = idx % w;
  const float* own = image + static_cast<int64_t>(idx) * channels;
  float* dst = out + static_cast<int64_t>(idx) * channels;
  constexpr int32_t kMaxChannels = 4;
  constexpr float kTwo64 = 18446744073709551616.f;  // 2^64, exact
  float acc[kMaxChannels] = {0.f, 0.f, 0.f, 0.f};
  float wsum = 0.f;
  if (hole[idx]) {
    float wmax = 0.f, scale_a = 1.f, scale_b = 1.f;
    bool infinite = false;
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) {
        if (!(wmax > 0.f) || (wmax >= 1.f / kTwo64 && wmax <= kTwo64)) break;  // no vote, or done
        if (wmax == kInf) {
          infinite = true;
        } else {
          int exponent = 0;  // wmax = m * 2^exponent, m in [0.5, 1); exponent in [-148, 128]
          frexpf(wmax, &exponent);
          scale_a = ldexpf(1.f, -exponent / 2);
          scale_b = ldexpf(1.f, -exponent - (-exponent / 2));
        }
        for (int32_t ch = 0; ch < kMaxChannels; ++ch) acc[ch] = 0.f;
        wsum = 0.f;
      }
      for (int32_t dy = -radius; dy <= radius; ++dy) {
        const int32_t cy = y - dy;
        if (cy < 0 || cy >= h) continue;
        for (int32_t dx = -radius; dx <= radius; ++dx) {
          const int32_t cx = x - dx;
          if (cx < 0 || cx >= w) continue;
          const int32_t c = cy * w + cx;
          const float wc = weight[c];
          if (!(wc > 0.f)) continue;
          const int32_t sy = field[fi(c)] + dy, sx = field[fi(c) + 1] + dx;
          if (sy < 0 || sy >= h || sx < 0 || sx >= w) continue;
          float ws = wc;
          if (pass == 0) {
            wmax = wc > wmax ? wc : wmax;
          } else {
            ws = infinite ? (wc == kInf ? 1.f : 0.f) : wc * scale_a * scale_b;
          }
          const float* src = image + (static_cast<int64_t>(sy) * w + sx) * channels;
          for (int32_t ch = 0; ch < channels; ++ch) acc[ch] = add_rn(acc[ch], mul_rn(ws, src[ch]));
          wsum = add_rn(wsum, ws);
        }
      }
    }
  }
  for (int32_t ch = 0; ch < channels; ++ch) dst[ch] = wsum > 0.f ? acc[ch] / wsum : own[ch];
}

}  // namespace nfinpaint::patchmatch

// Host helpers (ATen), implemented in csrc/cpu/patchmatch.cpp and used by both
// backends' op entry points.
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace nfinpaint::patchmatch {

struct Prepared {
  at::Tensor target, source;   // contiguous float32 (H, W, C)
  at::Tensor usable;           // contiguous bool (Hs, Ws)
  at::Tensor usable_list;      // int32 linear indices of usable centres
  at::Tensor active_list;      // int32 linear indices of active target pixels
  at::Tensor init;             // contiguous int32 (Ht, Wt, 2) or undefined
  int64_t active_extent = 0;   // max side of the active pixels' bounding box
  Problem problem;
};

// The op's input rules (shapes, dtypes, devices, parameters; every backend, and the fake kernel through
// nfinpaint::_check_patchmatch_nnf_inputs on meta copies). Nothing here reads values.
void check_nnf(const at::Tensor& target, const at::Tensor& source, const at::Tensor& source_allowed,
               const at::Tensor& active, const std::optional<at::Tensor>& init_field, int64_t patch_size,
               int64_t iterations);

// check_nnf, then the usable/active lists (which do read values); the Problem's pointers refer to
// Prepared's tensors.
Prepared prepare_nnf(const at::Tensor& target, const at::Tensor& source, const at::Tensor& source_allowed,
                     const at::Tensor& active, const std::optional<at::Tensor>& init_field, int64_t patch_size,
                     int64_t iterations, int64_t seed);

// Jump steps of one iteration, largest first; extent = max side of the
// active pixels' bounding box; from_scratch = no initial field was given.
std::vector<int32_t> jump_steps(int64_t iteration, int64_t extent, bool from_scratch);

// patchmatch_vote's input rules (every backend, and the fake kernel on meta copies)
void check_vote(const at::Tensor& image, const at::Tensor& field, const at::Tensor& weight, const at::Tensor& hole,
                int64_t patch_size);

}  // namespace nfinpaint::patchmatch
