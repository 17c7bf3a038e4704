// nfinpaint::biharmonic_cg on the CPU: each (image, channel) plane is an independent system, solved
// start to end by one thread (at::parallel_for over planes), in cache, by the loops of
// biharmonic_loops.h. The tensor version (nfinpaint/initial_fill.py) makes ~25 operator calls a step,
// each a pass over memory; this makes six passes a step over the band around the plane's hole, in
// cache, and no calls.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include "nfinpaint/biharmonic.h"
#include "nfinpaint/biharmonic_inputs.h"
#include "cpu_isa.h"

namespace nfinpaint::biharmonic {
namespace {

// The pixels one plane's solver touches (`Band`): row i's columns [lo[i], hi[i]) hold the hole's pixels
// (m != 0) of rows i-1 .. i+1, widened by a column each side; `ranges` are those row spans as flat indices,
// widened to multiples of kLanes and merged, in increasing order. The vectors of the solve are zero outside
// the hole, so L L P v is needed in the hole only, from L P v on the hole and the pixels next to it: the
// passes visit that band alone, and a scratch across a 12-megapixel picture costs its band, not its box
// (the box was 3.7 of an 11 s fill). The float64 sums keep each term in the lane of its flat index, so they
// add the same non-zero terms in the same order as a pass over the whole plane: the result is the whole
// plane's to the last bit (checked against the whole-plane loops this replaced).
constexpr int64_t kLanes = 8;
constexpr int64_t kReach = 1;

struct Band {
  std::vector<int64_t> lo, hi;
  std::vector<std::pair<int64_t, int64_t>> ranges;
};

inline Band hole_band(const float* m, int64_t h, int64_t w) {
  std::vector<int64_t> first(static_cast<size_t>(h), w), last(static_cast<size_t>(h), -1);
  for (int64_t i = 0; i < h; ++i) {     // each row's first and last hole pixel
    const float* row = m + i * w;
    int64_t a = w, b = -1;
    for (int64_t j = 0; j < w; ++j) a = std::min(a, row[j] != 0.0f ? j : w);
    for (int64_t j = 0; j < w; ++j) b = std::max(b, row[j] != 0.0f ? j : int64_t{-1});
    first[i] = a;
    last[i] = b;
  }
  Band band;
  band.lo.assign(static_cast<size_t>(h), 0);
  band.hi.assign(static_cast<size_t>(h), 0);
  const int64_t n = h * w;
  for (int64_t i = 0; i < h; ++i) {
    int64_t a = w, b = -1;
    for (int64_t k = std::max<int64_t>(0, i - kReach); k <= std::min(h - 1, i + kReach); ++k) {
      a = std::min(a, first[k]);
      b = std::max(b, last[k]);
    }
    if (b < 0) continue;                                       // no hole within reach of this row
    band.lo[i] = std::max<int64_t>(0, a - kReach);
    band.hi[i] = std::min(w, b + kReach + 1);
    const int64_t begin = (i * w + band.lo[i]) / kLanes * kLanes;
    const int64_t end = std::min(n, (i * w + band.hi[i] + kLanes - 1) / kLanes * kLanes);
    if (!band.ranges.empty() && begin <= band.ranges.back().second) {
      band.ranges.back().second = std::max(band.ranges.back().second, end);
    } else {
      band.ranges.emplace_back(begin, end);
    }
  }
  return band;
}

#define NFI_CPU_LOOPS "biharmonic_loops.h"
#include "cpu_isa_variants.h"

at::Tensor biharmonic_cg_cpu(const at::Tensor& x, const at::Tensor& mask, int64_t iterations) {
  check_inputs(x, mask, iterations);
  auto out = x.clone(at::MemoryFormat::Contiguous);   // one copy, whatever the strides
  const auto m = mask.contiguous();
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), hw = h * w;
  if (out.numel() == 0) return out;
  float* xp = out.data_ptr<float>();
  const float* mp = m.const_data_ptr<float>();
  std::vector<Band> bands(static_cast<size_t>(n));    // one per image: its channels share the hole
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t image = begin; image < end; ++image) bands[image] = hole_band(mp + image * hw, h, w);
  });
  at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
    // zero outside the band of the plane's image. calloc, not a vector: a large block comes as fresh zero
    // pages that stay unmapped until written, so a scratch's solve holds its band in memory, not four planes
    const std::unique_ptr<float, decltype(&std::free)> scratch(
        static_cast<float*>(std::calloc(static_cast<size_t>(4 * hw), sizeof(float))), &std::free);
    TORCH_CHECK(scratch != nullptr, kOp, ": out of memory for the solver's scratch (", 4 * hw, " floats)");
    float* work = scratch.get();
    for (int64_t plane = begin; plane < end; ++plane) {
      // every plane starts from zeroed scratch, not only each image: a solve that met a NaN or inf leaves
      // it in the band's padding, where the next solve reads it as NaN * 0 (it once poisoned the next channel)
      if (plane > begin) NFI_CPU_CALL(clear_band(work, hw, bands[(plane - 1) / c]));
      NFI_CPU_CALL(solve_plane(xp + plane * hw, mp + (plane / c) * hw, h, w, iterations, bands[plane / c],
                               work));
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(nfinpaint, CPU, m) { m.impl("biharmonic_cg", &biharmonic_cg_cpu); }

}  // namespace nfinpaint::biharmonic
