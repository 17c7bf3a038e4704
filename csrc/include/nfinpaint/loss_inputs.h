#pragma once
// Host-side input checks and layout choice shared by the CPU and CUDA kernels
// of the fused losses. nfinpaint/ops.py's fake kernels apply the same rules
// (memory format, output dtypes), so keep the two in step.
#include <ATen/ATen.h>

#include <algorithm>
#include <initializer_list>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "nfinpaint/loss_math.h"

namespace nfinpaint {

// The memory format the kernels work (and return results) in: channels-last
// only when the tensor is exactly channels-last and not also NCHW-contiguous;
// anything else is made NCHW-contiguous.
inline at::MemoryFormat loss_memory_format(const at::Tensor& x) {
  return (x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast))
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

// Reductions come back in float32, or float64 for float64 inputs (gradcheck).
inline at::ScalarType loss_accumulate_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline std::string shape_str(const at::Tensor& x) {
  std::ostringstream s;
  s << x.sizes();
  return s.str();
}

// For the CUDA kernels, before their device guard: the dispatcher sends a call
// there when any input is on CUDA, and a guard made from a CPU tensor fails with
// "CUDAGuardImpl initialized with non-CUDA DeviceType", which names no input.
// Undefined (missing optional) inputs are skipped.
inline void check_one_cuda_device(const char* op,
                                  std::initializer_list<std::pair<const char*, const at::Tensor*>> inputs) {
  const char* first_name = nullptr;
  c10::Device first(c10::kCUDA);
  for (const auto& [name, t] : inputs) {
    if (t == nullptr || !t->defined()) continue;
    TORCH_CHECK(t->is_cuda(), op, ": expected every input on one CUDA device, got ", name, " on ", t->device(),
                "; move it with .to(device)");
    if (first_name == nullptr) {
      first_name = name;
      first = t->device();
    }
    TORCH_CHECK(t->device() == first, op, ": expected every input on one CUDA device, got ", first_name, " on ",
                first, " and ", name, " on ", t->device());
  }
}

inline const at::Tensor* opt_ptr(const c10::optional<at::Tensor>& t) { return t.has_value() ? &*t : nullptr; }

// Two same-shaped (N,C,H,W) tensors `a`, `b` and an optional weight of shape
// (N,1,H,W) or (N,C,H,W), made contiguous in a's memory format.
struct LossInputs {
  at::Tensor a, b, w;  // w undefined when there is no weight
  MaskLayout layout = MaskLayout::kNone;
  at::MemoryFormat format = at::MemoryFormat::Contiguous;
  int64_t n = 0, s = 0, hw = 0, c = 0;  // batch, elements a sample, pixels a sample, channels
  int64_t w_per_sample = 0;             // weight values a sample
};

inline LossInputs prepare_loss_inputs(const char* op, const char* a_name, const char* b_name,
                                      const char* w_name, const at::Tensor& a, const at::Tensor& b,
                                      const c10::optional<at::Tensor>& w) {
  TORCH_CHECK(a.dim() == 4, op, ": expected ", a_name, " of shape (N,C,H,W), got ", shape_str(a));
  TORCH_CHECK(b.sizes() == a.sizes(), op, ": expected ", b_name, " of the same shape as ", a_name, " ",
              shape_str(a), ", got ", shape_str(b));
  const auto st = a.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16 || st == at::kDouble, op,
              ": expected ", a_name, " of dtype float32, float16, bfloat16 or float64, got ", st);
  TORCH_CHECK(b.scalar_type() == st, op, ": expected ", b_name, " of the same dtype as ", a_name, " (",
              st, "), got ", b.scalar_type());
  TORCH_CHECK(b.device() == a.device(), op, ": expected ", b_name, " on ", a.device(), " like ", a_name,
              ", got ", b.device());
  LossInputs in;
  in.format = loss_memory_format(a);
  in.n = a.size(0);
  in.c = a.size(1);
  in.hw = a.size(2) * a.size(3);
  in.s = in.c * in.hw;
  in.a = a.contiguous(in.format);
  in.b = b.contiguous(in.format);
  if (w.has_value() && w->defined()) {
    const at::Tensor& m = *w;
    TORCH_CHECK(m.dim() == 4 && m.size(0) == a.size(0) && (m.size(1) == 1 || m.size(1) == a.size(1)) &&
                    m.size(2) == a.size(2) && m.size(3) == a.size(3),
                op, ": expected ", w_name, " of shape (N,1,H,W) or (N,C,H,W) = [", a.size(0), ", 1 or ",
                a.size(1), ", ", a.size(2), ", ", a.size(3), "] to match ", a_name, " ", shape_str(a),
                ", got ", shape_str(m));
    TORCH_CHECK(m.scalar_type() == st, op, ": expected ", w_name, " of the same dtype as ", a_name, " (",
                st, "), got ", m.scalar_type());
    TORCH_CHECK(m.device() == a.device(), op, ": expected ", w_name, " on ", a.device(), " like ", a_name,
                ", got ", m.device());
    if (m.size(1) == a.size(1)) {
      in.layout = MaskLayout::kFull;
      in.w = m.contiguous(in.format);
      in.w_per_sample = in.s;
    } else {
      // (N,1,H,W): NCHW- and channels-last-contiguous are the same bytes.
      in.layout = in.format == at::MemoryFormat::ChannelsLast ? MaskLayout::kBcastNHWC : MaskLayout::kBcastNCHW;
      in.w = m.contiguous();
      in.w_per_sample = in.hw;
    }
  }
  return in;
}

// Per-sample gradient vectors ((N,), accumulate dtype) as contiguous tensors.
inline at::Tensor prepare_sample_grad(const char* op, const char* name, const at::Tensor& g,
                                      const LossInputs& in) {
  TORCH_CHECK(g.dim() == 1 && g.size(0) == in.n, op, ": expected ", name, " of shape (", in.n, ",), got ",
              shape_str(g));
  TORCH_CHECK(g.device() == in.a.device(), op, ": expected ", name, " on ", in.a.device(), ", got ", g.device());
  return g.to(loss_accumulate_dtype(in.a.scalar_type())).contiguous();
}

}  // namespace nfinpaint

namespace nfinpaint {

// How a CPU inner loop reads the weight of its segment: none (w = 1), one
// value an element from a contiguous pointer, or one value for the segment.
enum WeightMode : int { kWeightOne = 0, kWeightPtr = 1, kWeightConst = 2 };
template <int M>
using weight_mode = std::integral_constant<int, M>;

// Cut the flat range [begin, end) of one sample into segments within which the
// weight is read in one of the WeightModes, and call
// body(weight_mode<M>{}, seg_begin, seg_end, weight_ptr_at_seg_begin, weight_const)
// for each, so the body's loop is a plain vectorisable loop over [seg_begin, seg_end).
template <MaskLayout L, typename W, typename Body>
inline void for_each_segment(int64_t begin, int64_t end, int64_t hw, int64_t c, const W* w, Body&& body) {
  if constexpr (L == MaskLayout::kNone) {
    body(weight_mode<kWeightOne>{}, begin, end, w, W(1));
  } else if constexpr (L == MaskLayout::kFull) {
    body(weight_mode<kWeightPtr>{}, begin, end, w + begin, W(1));
  } else if constexpr (L == MaskLayout::kBcastNCHW) {
    // rows of hw elements (one channel plane) share the sample's hw weights
    for (int64_t i = begin; i < end;) {
      const int64_t p = i % hw;
      const int64_t stop = std::min(end, i + (hw - p));
      body(weight_mode<kWeightPtr>{}, i, stop, w + p, W(1));
      i = stop;
    }
  } else {
    // channels-last: the c channels of one pixel share its weight
    for (int64_t i = begin; i < end;) {
      const int64_t q = i / c;
      const int64_t stop = std::min(end, (q + 1) * c);
      body(weight_mode<kWeightConst>{}, i, stop, w, w[q]);
      i = stop;
    }
  }
}

}  // namespace nfinpaint

namespace nfinpaint {

template <MaskLayout L>
using mask_layout = std::integral_constant<MaskLayout, L>;

// Call f(mask_layout<L>{}) with the runtime layout as a compile-time constant.
template <typename F>
inline void dispatch_mask_layout(MaskLayout layout, F&& f) {
  switch (layout) {
    case MaskLayout::kNone: f(mask_layout<MaskLayout::kNone>{}); break;
    case MaskLayout::kFull: f(mask_layout<MaskLayout::kFull>{}); break;
    case MaskLayout::kBcastNCHW: f(mask_layout<MaskLayout::kBcastNCHW>{}); break;
    case MaskLayout::kBcastNHWC: f(mask_layout<MaskLayout::kBcastNHWC>{}); break;
  }
}

}  // namespace nfinpaint
