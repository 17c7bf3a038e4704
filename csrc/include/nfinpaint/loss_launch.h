#pragma once
// Host-side launch plan of the CUDA fused-loss kernels: block count, its limit
// and the vector-load choice. Plain C++ (no CUDA types), so the CPU build has it
// too and the CPU tests check it through nfinpaint::_loss_launch_plan.
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "nfinpaint/loss_math.h"

namespace nfinpaint {

constexpr int kThreads = 256;      // CUDA threads a block
constexpr int kVectorBytes = 16;   // one vector load/store

inline bool is_aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Vector loads need every sample (and so every chunk) to start 16-byte aligned:
// the sample length a multiple of the vector and every pointer aligned (nullptr
// = not read through vectors).
inline bool can_vectorise(int64_t s, int64_t elem_size, c10::ArrayRef<const void*> ptrs) {
  if (elem_size <= 0 || kVectorBytes % elem_size != 0 || s % (kVectorBytes / elem_size) != 0) return false;
  for (const void* p : ptrs)
    if (p != nullptr && !is_aligned(p, kVectorBytes)) return false;
  return true;
}

struct LaunchPlan {
  int64_t nchunk = 0;  // chunks a sample
  int64_t blocks = 0;  // n * nchunk, one block each (grid axis 0, < 2^31)
  bool vec = false;    // vector loads (16 / elem_size elements) or scalar
};

inline LaunchPlan loss_launch_plan(const char* op, int64_t n, int64_t s, int64_t elem_size,
                                   c10::ArrayRef<const void*> ptrs) {
  LaunchPlan plan;
  plan.nchunk = chunk_count(s, kCudaChunk);
  plan.blocks = n * plan.nchunk;
  TORCH_CHECK(plan.blocks < (int64_t{1} << 31), op, ": input too large (", plan.blocks,
              " blocks; CUDA grids stop at 2^31 - 1)");
  plan.vec = can_vectorise(s, elem_size, ptrs);
  return plan;
}

}  // namespace nfinpaint
