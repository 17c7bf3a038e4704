// CPU loops of nfinpaint::biharmonic_cg, compiled once per instruction set (cpu_isa_variants.h):
// one image plane's conjugate gradients on the band around its hole, every pass a plain loop the
// compiler vectorises.
// No include guard: included once per namespace, on purpose. NOLINT(build/header_guard)

// out = L(in) on the band's row spans; the inner columns without index clamps, so they vectorise. Outside the
// spans `out` is left as it is.
inline void laplacian_band(const float* in, float* out, int64_t h, int64_t w, const Band& band) {
  using biharmonic::clamped;
  using biharmonic::laplacian5;
  for (int64_t i = 0; i < h; ++i) {
    const int64_t lo = band.lo[i], hi = band.hi[i];
    if (lo >= hi) continue;
    const float* up = in + clamped(i, -1, h) * w;
    const float* row = in + i * w;
    const float* down = in + clamped(i, 1, h) * w;
    float* o = out + i * w;
    int64_t j = lo;
    if (j == 0) {
      o[0] = laplacian5(up[0], down[0], row[0], row[clamped(0, 1, w)], row[0]);
      j = 1;
    }
    const int64_t inner = std::min(hi, w - 1);
    for (; j < inner; ++j) o[j] = laplacian5(up[j], down[j], row[j - 1], row[j + 1], row[j]);
    if (hi == w && j == w - 1) o[w - 1] = laplacian5(up[w - 1], down[w - 1], row[w - 2], row[w - 1], row[w - 1]);
  }
}

// body(i) for every flat index of the band's ranges.
template <typename Body>
inline void for_band(const Band& band, Body body) {
  for (const auto& [begin, end] : band.ranges) {
    for (int64_t i = begin; i < end; ++i) body(i);
  }
}

// lane[k] += term(i) for the i in [begin, stop) of whole blocks of kLanes, i = begin + k mod kLanes (begin a
// multiple of kLanes), on a local copy of the lanes that the compiler keeps in vector registers; returns
// where the blocks end.
template <typename Term>
inline int64_t add_lanes(double* lane, int64_t begin, int64_t stop, Term term) {
  double acc[kLanes];
  for (int64_t k = 0; k < kLanes; ++k) acc[k] = lane[k];
  // a count of blocks, not `i + kLanes <= stop`: under -fwrapv the compiler could not bound that loop and
  // vectorised none of the sums (the whole plane's solve ran at half speed)
  const int64_t blocks = stop > begin ? (stop - begin) / kLanes : 0;
  for (int64_t block = 0; block < blocks; ++block) {
    for (int64_t k = 0; k < kLanes; ++k) acc[k] += term(begin + block * kLanes + k);
  }
  for (int64_t k = 0; k < kLanes; ++k) lane[k] = acc[k];
  return begin + blocks * kLanes;
}

// The float64 sum of term(i) over the band's ranges (term may also write element i): eight partial sums, so
// the loop vectorises (one chain of additions would not), term(i) in lane i % kLanes up to the last multiple
// of kLanes in the plane and in lane 0 after it, as a pass over the whole plane of n pixels would add it;
// the reference too multiplies in float32 and adds in float64.
template <typename Term>
inline double band_sum(const Band& band, int64_t n, Term term) {
  double lane[kLanes] = {};
  const int64_t body = n - n % kLanes;
  for (const auto& [begin, end] : band.ranges) {     // begin a multiple of kLanes; end one, or n
    for (int64_t i = add_lanes(lane, begin, std::min(end, body), term); i < end; ++i) lane[0] += term(i);
  }
  double s = 0.0;
  for (int64_t k = 0; k < kLanes; ++k) s += lane[k];
  return s;
}

// `iterations` conjugate-gradient steps on P L L P for one (h, w) plane: x in/out (the start in the hole, the
// known pixels elsewhere), m the hole's weights, `band` = hole_band(m), work 4 * h * w floats of scratch, zero
// outside the band on entry (fresh, or cleared by clear_band after the solve before).
// Outside the band r, p and ap stay zero (they are zero outside the hole), and t = L(ap) is zero more than
// a pixel from it, so nothing there is written.
inline void solve_plane(float* x, const float* m, int64_t h, int64_t w, int64_t iterations, const Band& band,
                        float* work) {
  const int64_t n = h * w;
  float* r = work;
  float* p = work + n;
  float* t = work + 2 * n;
  float* ap = work + 3 * n;
  laplacian_band(x, t, h, w, band);               // residual of L L x = 0 in the hole
  laplacian_band(t, r, h, w, band);
  double rs = band_sum(band, n, [&](int64_t i) {
    r[i] = -r[i] * m[i];
    p[i] = r[i];
    return static_cast<double>(r[i] * r[i]);
  });
  const double rs_first = rs;
  for (int64_t step = 0; step < iterations; ++step) {
    for_band(band, [&](int64_t i) { ap[i] = p[i] * m[i]; });     // ap = P L L P p
    laplacian_band(ap, t, h, w, band);
    laplacian_band(t, ap, h, w, band);
    const double pap = band_sum(band, n, [&](int64_t i) {
      ap[i] = ap[i] * m[i];
      return static_cast<double>(p[i] * ap[i]);
    });
    if (biharmonic::converged(rs, rs_first, pap)) return;     // x stays where it is, as the reference's
    const float alpha = biharmonic::step_ratio(rs, pap);
    const double rs_new = band_sum(band, n, [&](int64_t i) {
      x[i] = x[i] + alpha * p[i];
      r[i] = r[i] - alpha * ap[i];
      return static_cast<double>(r[i] * r[i]);
    });
    const float beta = biharmonic::step_ratio(rs_new, rs);
    for_band(band, [&](int64_t i) { p[i] = r[i] + beta * p[i]; });
    rs = rs_new;
  }
}

// Zero the scratch of solve_plane (4 planes of n floats) where a solve on `band` may have written.
inline void clear_band(float* work, int64_t n, const Band& band) {
  for (int64_t v = 0; v < 4; ++v) {
    float* a = work + v * n;
    for_band(band, [&](int64_t i) { a[i] = 0.0f; });
  }
}
