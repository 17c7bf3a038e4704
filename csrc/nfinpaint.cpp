// The one home of nfinpaint's operator schemas. Backends register their
// kernels with TORCH_LIBRARY_IMPL in csrc/cpu/*.cpp and csrc/cuda/*.cu.
#include <Python.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

#include <string>

namespace {
// "backends=CPU[,CUDA][\ncuda_archs=...][\nsources=...]": one key=value a line, parsed by
// nfinpaint/_extension.py (sources: the digest of csrc/ it was built from, nfinpaint/sources_digest.py)
std::string build_info() {
  std::string info = "backends=CPU";
#ifdef NFINPAINT_WITH_CUDA
  info += ",CUDA\ncuda_archs=" NFINPAINT_ARCHS;
#endif
#ifdef NFINPAINT_SOURCES
  info += "\nsources=" NFINPAINT_SOURCES;
#endif
  return info;
}
}  // namespace

TORCH_LIBRARY(nfinpaint, m) {
  // ---- fused losses (nfinpaint/ops.py; kernels csrc/cpu|cuda/{composite_l2,feature_distance}) ----
  // composite = mask*generated + (1-mask)*target (generated's dtype and memory
  // format); per sample n: sq_err[n] = sum of mask*(generated-target)^2 and
  // hole_count[n] = sum of the mask broadcast to (N,C,H,W), both float32
  // (float64 for float64 inputs), added in a fixed order (deterministic).
  m.def("composite_l2(Tensor generated, Tensor target, Tensor mask) -> (Tensor composite, Tensor sq_err, Tensor hole_count)");
  // grad_generated = mask*grad_composite + grad_sq_err[n]*2*mask*(generated-target); a missing grad counts as 0.
  m.def("composite_l2_backward(Tensor? grad_composite, Tensor? grad_sq_err, Tensor generated, Tensor target, Tensor mask) -> Tensor");
  // dist[n] = sum over sample n of weight*(fake-real)^2 (equation 2), float32 (float64 for float64 inputs).
  m.def("feature_distance(Tensor fake, Tensor real, Tensor? weight) -> Tensor");
  // grad_fake = 2*grad_dist[n]*weight*(fake-real); the autograd wrapper (nfinpaint/ops.py) gives real -grad_fake.
  m.def("feature_distance_backward(Tensor grad_dist, Tensor fake, Tensor real, Tensor? weight) -> Tensor");

  // ---- PatchMatch (nfinpaint/patchmatch.py) ----
  // Images are (H, W, C) float32. One scale of nearest-neighbour-field search:
  // init (init_field where usable, else seeded random), then `iterations` x
  // (jump-flooding propagation + random search) over the `active` target
  // pixels. source_allowed (Hs, Ws) bool: True = centre may be matched.
  // field (Ht, Wt, 2) int32 absolute (y, x); dist (Ht, Wt) float32 mean
  // squared difference (-1 for inactive pixels).
  m.def("patchmatch_nnf(Tensor target, Tensor source, Tensor source_allowed, Tensor active, Tensor? init_field, "
        "int patch_size, int iterations, int seed) -> (Tensor field, Tensor dist)");
  // Hole pixels := weighted average of the overlapping matched patches' pixels.
  m.def("patchmatch_vote(Tensor image, Tensor field, Tensor weight, Tensor hole, int patch_size) -> Tensor");
  // Their input rules alone, for the fake kernels (csrc/input_checks.cpp): raise what the ops would raise.
  m.def("_check_patchmatch_nnf_inputs(Tensor target, Tensor source, Tensor source_allowed, Tensor active, "
        "Tensor? init_field, int patch_size, int iterations) -> ()");
  m.def("_check_patchmatch_vote_inputs(Tensor image, Tensor field, Tensor weight, Tensor hole, int patch_size) -> ()");

  // ---- smooth fills (nfinpaint/initial_fill.py; kernel csrc/cpu/biharmonic.cpp) ----
  // `iterations` conjugate-gradient steps on P L L P (L: 5-point Laplacian, borders replicated;
  // P: the hole's weights `mask`) from x (N, C, H, W) float32, the start in the hole and the known
  // pixels elsewhere; mask (N, 1, H, W) float32. Every plane (n, c) its own system, with float64
  // dot products. Returns the new x (contiguous). Not differentiable.
  m.def("biharmonic_cg(Tensor x, Tensor mask, int iterations) -> Tensor");
  // Its input rules alone, for the fake kernel (csrc/input_checks.cpp).
  m.def("_check_biharmonic_inputs(Tensor x, Tensor mask, int iterations) -> ()");

  // ---- build facts for `python -m nfinpaint.info` ----
  m.def("build_info() -> str", &build_info);
}


// The backward ops (and the smooth fill's solver and PatchMatch) have no derivative of their own. Without an Autograd kernel PyTorch's fallback only
// warns and a second backward through them (a gradient penalty through the loss) silently gets no
// gradient; with this one it fails with "derivative for nfinpaint::..._backward is not implemented".
TORCH_LIBRARY_IMPL(nfinpaint, Autograd, m) {
  m.impl("composite_l2_backward", torch::autograd::autogradNotImplementedFallback());
  m.impl("feature_distance_backward", torch::autograd::autogradNotImplementedFallback());
  m.impl("biharmonic_cg", torch::autograd::autogradNotImplementedFallback());
  // PatchMatch is a search, not a function with a derivative: an image that requires grad got a
  // result whose backward gave no gradient through the vote, with only a warning
  m.impl("patchmatch_nnf", torch::autograd::autogradNotImplementedFallback());
  m.impl("patchmatch_vote", torch::autograd::autogradNotImplementedFallback());
}

// Importing nfinpaint._C loads this library and so runs the registrations
// above; the module itself has no Python functions.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
