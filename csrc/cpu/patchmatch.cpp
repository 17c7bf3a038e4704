// PatchMatch on the CPU: the per-pixel steps of nfinpaint/patchmatch.h run
// over at::parallel_for, on the same schedule as the CUDA kernels.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <utility>

#include "nfinpaint/patchmatch.h"

namespace nfinpaint::patchmatch {

namespace {
// Active pixels per parallel task: each costs tens of patch SSDs (~2 us), so a
// task is ~10 ms. Every pass ends in a barrier; on a loaded 2-core machine a
// barrier waits for a descheduled thread (a time slice), so small searches
// (e.g. a 64x64 hole) stay on one thread and only large ones fan out.
constexpr int64_t kPixelGrain = 4096;
constexpr int64_t kCheapGrain = 32768;  // init / normalise / vote: cheap per pixel

void check_image(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 3 && t.size(0) > 0 && t.size(1) > 0 && t.size(2) > 0, "patchmatch: ", name,
              " must be a non-empty (H, W, C) tensor, got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "patchmatch: ", name, " must be float32, got ", t.scalar_type());
}

void check_plane(const at::Tensor& t, const char* name, int64_t h, int64_t w, at::ScalarType dtype) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == h && t.size(1) == w, "patchmatch: ", name, " must have shape (", h,
              ", ", w, "), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, "patchmatch: ", name, " must be ", dtype, ", got ", t.scalar_type());
}

void check_patch_size(int64_t patch_size) {
  TORCH_CHECK(patch_size >= 1 && patch_size % 2 == 1, "patchmatch: patch_size must be a positive odd number, got ",
              patch_size);
}
}  // namespace

void check_nnf(const at::Tensor& target, const at::Tensor& source, const at::Tensor& source_allowed,
               const at::Tensor& active, const std::optional<at::Tensor>& init_field, int64_t patch_size,
               int64_t iterations) {
  check_image(target, "target");
  check_image(source, "source");
  TORCH_CHECK(target.size(2) == source.size(2), "patchmatch: target and source must have the same channel count, got ",
              target.size(2), " and ", source.size(2));
  TORCH_CHECK(target.device() == source.device() && target.device() == source_allowed.device() &&
                  target.device() == active.device(),
              "patchmatch: all inputs must be on the same device");
  check_patch_size(patch_size);
  TORCH_CHECK(iterations >= 0, "patchmatch: iterations must be >= 0, got ", iterations);
  const int64_t ht = target.size(0), wt = target.size(1), hs = source.size(0), ws = source.size(1);
  TORCH_CHECK(patch_size <= hs && patch_size <= ws, "patchmatch: patch_size ", patch_size,
              " is larger than the source image (", hs, "x", ws, ")");
  TORCH_CHECK(ht * wt < (int64_t{1} << 31) && hs * ws < (int64_t{1} << 31), "patchmatch: image too large");
  check_plane(source_allowed, "source_allowed", hs, ws, at::kBool);
  check_plane(active, "active", ht, wt, at::kBool);
  if (init_field.has_value() && init_field->defined()) {
    const at::Tensor& init = *init_field;
    TORCH_CHECK(init.dim() == 3 && init.size(0) == ht && init.size(1) == wt && init.size(2) == 2,
                "patchmatch: init_field must have shape (", ht, ", ", wt, ", 2), got ", init.sizes());
    TORCH_CHECK(init.scalar_type() == at::kInt, "patchmatch: init_field must be int32, got ", init.scalar_type());
    TORCH_CHECK(init.device() == target.device(), "patchmatch: init_field must be on the target's device");
  }
}

Prepared prepare_nnf(const at::Tensor& target, const at::Tensor& source, const at::Tensor& source_allowed,
                     const at::Tensor& active, const std::optional<at::Tensor>& init_field, int64_t patch_size,
                     int64_t iterations, int64_t seed) {
  check_nnf(target, source, source_allowed, active, init_field, patch_size, iterations);
  const int64_t ht = target.size(0), wt = target.size(1), hs = source.size(0), ws = source.size(1);

  Prepared out;
  out.target = target.contiguous();
  out.source = source.contiguous();
  const int64_t r = patch_size / 2;
  // Usable centres: allowed, and their whole patch inside the source. Row-major
  // whatever source_allowed's strides (zeros_like would keep a column-major
  // layout, and patchmatch.h indexes the plane as sy * source_w + sx).
  out.usable = at::zeros({hs, ws}, source_allowed.options());
  out.usable.slice(0, r, hs - r).slice(1, r, ws - r).copy_(source_allowed.slice(0, r, hs - r).slice(1, r, ws - r));
  out.usable_list = at::nonzero(out.usable.flatten()).squeeze(1).to(at::kInt).contiguous();
  TORCH_CHECK(out.usable_list.numel() > 0,
              "patchmatch: no usable source patch (every centre is forbidden or too close to the border)");
  out.active_list = at::nonzero(active.flatten()).squeeze(1).to(at::kInt).contiguous();
  if (out.active_list.numel() > 0) {
    const at::Tensor rows = at::nonzero(active.any(1)), cols = at::nonzero(active.any(0));
    out.active_extent = std::max(rows.max().item<int64_t>() - rows.min().item<int64_t>(),
                                 cols.max().item<int64_t>() - cols.min().item<int64_t>()) + 1;
  }
  if (init_field.has_value() && init_field->defined()) out.init = init_field->contiguous();
  Problem& p = out.problem;
  p.target = out.target.data_ptr<float>();
  p.source = out.source.data_ptr<float>();
  p.usable = out.usable.data_ptr<bool>();
  p.usable_list = out.usable_list.data_ptr<int32_t>();
  p.n_usable = static_cast<int32_t>(out.usable_list.numel());
  p.target_h = static_cast<int32_t>(ht);
  p.target_w = static_cast<int32_t>(wt);
  p.source_h = static_cast<int32_t>(hs);
  p.source_w = static_cast<int32_t>(ws);
  p.channels = static_cast<int32_t>(target.size(2));
  p.radius = static_cast<int32_t>(r);
  const auto useed = static_cast<uint64_t>(seed);
  p.seed_lo = static_cast<uint32_t>(useed);
  p.seed_hi = static_cast<uint32_t>(useed >> 32);
  return out;
}

std::vector<int32_t> jump_steps(int64_t iteration, int64_t extent, bool from_scratch) {
  int32_t step = 1;
  while (2 * static_cast<int64_t>(step) < extent) step *= 2;
  if (iteration > 0 || !from_scratch) step = std::min(step, kLaterMaxStep);
  std::vector<int32_t> steps;
  for (; step >= 1; step /= 2) steps.push_back(step);
  return steps;
}

void check_vote(const at::Tensor& image, const at::Tensor& field, const at::Tensor& weight, const at::Tensor& hole,
                int64_t patch_size) {
  check_image(image, "image");
  TORCH_CHECK(image.size(2) <= 4, "patchmatch_vote: at most 4 channels, got ", image.size(2));
  check_patch_size(patch_size);
  const int64_t h = image.size(0), w = image.size(1);
  // as patchmatch_nnf's source: the image is the source the field points into. Unbounded, a patch_size
  // over 2^31 wrapped the int32 radius negative (no votes at all, the hole returned as it came)
  TORCH_CHECK(patch_size <= h && patch_size <= w, "patchmatch_vote: patch_size ", patch_size,
              " is larger than the image (", h, "x", w, ")");
  // pixel indices are int32 in vote_pixel, as in patchmatch_nnf (which refuses the same sizes)
  TORCH_CHECK(h * w < (int64_t{1} << 31), "patchmatch_vote: image too large (", h, "x", w,
              " pixels; at most 2^31 - 1)");
  TORCH_CHECK(field.dim() == 3 && field.size(0) == h && field.size(1) == w && field.size(2) == 2,
              "patchmatch_vote: field must have shape (", h, ", ", w, ", 2), got ", field.sizes());
  TORCH_CHECK(field.scalar_type() == at::kInt, "patchmatch_vote: field must be int32, got ", field.scalar_type());
  check_plane(weight, "weight", h, w, at::kFloat);
  check_plane(hole, "hole", h, w, at::kBool);
  TORCH_CHECK(image.device() == field.device() && image.device() == weight.device() && image.device() == hole.device(),
              "patchmatch_vote: all inputs must be on the same device");
}

namespace {

std::tuple<at::Tensor, at::Tensor> nnf_cpu(const at::Tensor& target, const at::Tensor& source,
                                           const at::Tensor& source_allowed, const at::Tensor& active,
                                           const std::optional<at::Tensor>& init_field, int64_t patch_size,
                                           int64_t iterations, int64_t seed) {
  const Prepared prep = prepare_nnf(target, source, source_allowed, active, init_field, patch_size, iterations, seed);
  const Problem p = prep.problem;
  const int64_t ht = target.size(0), wt = target.size(1);
  at::Tensor field = at::empty({ht, wt, 2}, target.options().dtype(at::kInt));
  at::Tensor cost = at::empty({ht, wt}, target.options());
  const at::Tensor active_c = active.contiguous();
  const bool* act = active_c.data_ptr<bool>();
  const int32_t* init = prep.init.defined() ? prep.init.data_ptr<int32_t>() : nullptr;
  {
    int32_t* f = field.data_ptr<int32_t>();
    float* c = cost.data_ptr<float>();
    at::parallel_for(0, ht * wt, kCheapGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) init_pixel(p, static_cast<int32_t>(i), init, act[i], f, c);
    });
  }
  const int64_t n_active = prep.active_list.numel();
  const int32_t* list = prep.active_list.data_ptr<int32_t>();
  // Double buffers for the Jacobi propagation; inactive pixels are equal in both.
  at::Tensor field_next = field.clone(), cost_next = cost.clone();
  for (int64_t it = 0; it < iterations && n_active > 0; ++it) {
    for (const int32_t step : jump_steps(it, prep.active_extent, !prep.init.defined())) {
      const int32_t* fi = field.data_ptr<int32_t>();
      const float* ci = cost.data_ptr<float>();
      int32_t* fo = field_next.data_ptr<int32_t>();
      float* co = cost_next.data_ptr<float>();
      const bool search = step == 1;  // the pass's last step: random search follows per pixel
      at::parallel_for(0, n_active, kPixelGrain, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          propagate_pixel(p, list[k], step, fi, ci, fo, co);
          if (search) search_pixel(p, list[k], static_cast<int32_t>(it), fo, co);
        }
      });
      std::swap(field, field_next);
      std::swap(cost, cost_next);
    }
  }
  at::Tensor dist = at::empty_like(cost);
  const float* c = cost.data_ptr<float>();
  float* d = dist.data_ptr<float>();
  at::parallel_for(0, ht * wt, kCheapGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) d[i] = normalised_cost(p, static_cast<int32_t>(i), c[i]);
  });
  return {field, dist};
}

at::Tensor vote_cpu(const at::Tensor& image, const at::Tensor& field, const at::Tensor& weight,
                    const at::Tensor& hole, int64_t patch_size) {
  check_vote(image, field, weight, hole, patch_size);
  const at::Tensor img = image.contiguous(), f = field.contiguous(), w = weight.contiguous(), m = hole.contiguous();
  at::Tensor out = at::empty_like(img);
  const int32_t h = static_cast<int32_t>(img.size(0)), wd = static_cast<int32_t>(img.size(1));
  const int32_t ch = static_cast<int32_t>(img.size(2)), r = static_cast<int32_t>(patch_size / 2);
  const float* ip = img.data_ptr<float>();
  const int32_t* fp = f.data_ptr<int32_t>();
  const float* wp = w.data_ptr<float>();
  const bool* mp = m.data_ptr<bool>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, static_cast<int64_t>(h) * wd, kCheapGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) vote_pixel(ip, h, wd, ch, r, fp, wp, mp, static_cast<int32_t>(i), op);
  });
  return out;
}

}  // namespace
}  // namespace nfinpaint::patchmatch

TORCH_LIBRARY_IMPL(nfinpaint, CPU, m) {
  m.impl("patchmatch_nnf", &nfinpaint::patchmatch::nnf_cpu);
  m.impl("patchmatch_vote", &nfinpaint::patchmatch::vote_cpu);
}
