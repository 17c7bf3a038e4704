// CPU loops of nfinpaint::biharmonic_cg, compiled once per instruction set (cpu_isa_variants.h):
// one image plane's conjugate gradients, every pass a plain loop the compiler vectorises.
// No include guard: included once per namespace, on purpose. NOLINT(build/header_guard)

// out = L(in) over an (h, w) plane; the inner columns without index clamps, so they vectorise.
inline void laplacian_plane(const float* in, float* out, int64_t h, int64_t w) {
  using biharmonic::clamped;
  using biharmonic::laplacian5;
  for (int64_t i = 0; i < h; ++i) {
    const float* up = in + clamped(i, -1, h) * w;
    const float* row = in + i * w;
    const float* down = in + clamped(i, 1, h) * w;
    float* o = out + i * w;
    o[0] = laplacian5(up[0], down[0], row[0], row[clamped(0, 1, w)], row[0]);
    for (int64_t j = 1; j < w - 1; ++j) o[j] = laplacian5(up[j], down[j], row[j - 1], row[j + 1], row[j]);
    if (w > 1) o[w - 1] = laplacian5(up[w - 1], down[w - 1], row[w - 2], row[w - 1], row[w - 1]);
  }
}

// The float64 sum over i < n of term(i), which may also write element i: eight partial sums, so the loop
// vectorises (one chain of additions would not); the reference too multiplies in float32 and adds in float64.
constexpr int64_t kLanes = 8;

template <typename Term>
inline double lane_sum(int64_t n, Term term) {
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) lane[k] += term(i + k);
  }
  for (; i < n; ++i) lane[0] += term(i);
  double s = 0.0;
  for (int64_t k = 0; k < kLanes; ++k) s += lane[k];
  return s;
}

// `iterations` conjugate-gradient steps on P L L P for one (h, w) plane: x in/out (the start in the
// hole, the known pixels elsewhere), m the hole's weights, work 4 * h * w floats of scratch.
inline void solve_plane(float* x, const float* m, int64_t h, int64_t w, int64_t iterations, float* work) {
  const int64_t n = h * w;
  float* r = work;
  float* p = work + n;
  float* t = work + 2 * n;
  float* ap = work + 3 * n;
  laplacian_plane(x, t, h, w);                    // residual of L L x = 0 in the hole
  laplacian_plane(t, r, h, w);
  double rs = lane_sum(n, [&](int64_t i) {
    r[i] = -r[i] * m[i];
    p[i] = r[i];
    return static_cast<double>(r[i] * r[i]);
  });
  const double rs_first = rs;
  for (int64_t step = 0; step < iterations; ++step) {
    for (int64_t i = 0; i < n; ++i) ap[i] = p[i] * m[i];     // ap = P L L P p
    laplacian_plane(ap, t, h, w);
    laplacian_plane(t, ap, h, w);
    const double pap = lane_sum(n, [&](int64_t i) {
      ap[i] = ap[i] * m[i];
      return static_cast<double>(p[i] * ap[i]);
    });
    if (biharmonic::converged(rs, rs_first, pap)) return;     // x stays where it is, as the reference's
    const float alpha = biharmonic::step_ratio(rs, pap);
    const double rs_new = lane_sum(n, [&](int64_t i) {
      x[i] = x[i] + alpha * p[i];
      r[i] = r[i] - alpha * ap[i];
      return static_cast<double>(r[i] * r[i]);
    });
    const float beta = biharmonic::step_ratio(rs_new, rs);
    for (int64_t i = 0; i < n; ++i) p[i] = r[i] + beta * p[i];
    rs = rs_new;
  }
}
