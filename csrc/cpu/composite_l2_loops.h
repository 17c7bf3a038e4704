// The CPU loops of nfinpaint::composite_l2 (composite_l2.cpp), included twice by the .cpp (once per
// instruction set, see cpu_isa.h): no include guard, no #includes.
// NOLINT(build/header_guard)

template <typename scalar_t, MaskLayout L>
void forward_loop(const LossInputs& in, at::Tensor& composite, at::Tensor& sq_err, at::Tensor& count) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = in.n, s = in.s, nchunk = chunk_count(s, kChunk);
  std::vector<acc_t> part_sq(n * nchunk), part_cnt(n * nchunk);
  const scalar_t* g = in.a.const_data_ptr<scalar_t>();
  const scalar_t* t = in.b.const_data_ptr<scalar_t>();
  const scalar_t* m = in.w.const_data_ptr<scalar_t>();
  scalar_t* out = composite.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, n * nchunk, kGrainChunks, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const Chunk ch = chunk_at(item, nchunk, s, kChunk);
      const int64_t i = ch.sample;
      const scalar_t* gs = g + i * s;
      const scalar_t* ts = t + i * s;
      scalar_t* os = out + i * s;
      acc_t sq = 0, cnt = 0;
      for_each_segment<L>(ch.begin, ch.begin + ch.len, in.hw, in.c, m + i * in.w_per_sample,
                          [&](auto mode, int64_t b, int64_t e, const scalar_t* wp, scalar_t wc) {
                            constexpr int M = decltype(mode)::value;
                            const acc_t mc = static_cast<acc_t>(wc);
                            const scalar_t* gp = gs + b;
                            const scalar_t* tp = ts + b;
                            scalar_t* op = os + b;
                            acc_t seg_sq = 0, seg_cnt = 0;
#pragma omp simd reduction(+ : seg_sq, seg_cnt)
                            for (int64_t j = 0; j < e - b; ++j) {
                              const acc_t gv = static_cast<acc_t>(gp[j]);
                              const acc_t tv = static_cast<acc_t>(tp[j]);
                              const acc_t mv = M == kWeightPtr ? static_cast<acc_t>(wp[j]) : mc;
                              op[j] = static_cast<scalar_t>(composite_value(gv, tv, mv));
                              seg_sq += masked_sq_err(gv, tv, mv);
                              seg_cnt += mv;
                            }
                            sq += seg_sq;
                            cnt += seg_cnt;
                          });
      part_sq[item] = sq;
      part_cnt[item] = cnt;
    }
  });
  acc_t* sq_out = sq_err.mutable_data_ptr<acc_t>();
  acc_t* cnt_out = count.mutable_data_ptr<acc_t>();
  for (int64_t i = 0; i < n; ++i) {
    sq_out[i] = sum_chunk_partials(part_sq.data(), i, nchunk);
    cnt_out[i] = sum_chunk_partials(part_cnt.data(), i, nchunk);
  }
}

template <typename scalar_t, MaskLayout L, bool kHasGradComposite, bool kHasGradSqErr>
void backward_loop(const LossInputs& in, const scalar_t* gc, const at::opmath_type<scalar_t>* gsq,
                   at::Tensor& grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = in.n, s = in.s, nchunk = chunk_count(s, kChunk);
  const scalar_t* g = in.a.const_data_ptr<scalar_t>();
  const scalar_t* t = in.b.const_data_ptr<scalar_t>();
  const scalar_t* m = in.w.const_data_ptr<scalar_t>();
  scalar_t* out = grad.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, n * nchunk, kGrainChunks, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const Chunk ch = chunk_at(item, nchunk, s, kChunk);
      const int64_t i = ch.sample;
      const acc_t gs = gsq ? gsq[i] : acc_t(0);
      const int64_t base = i * s;
      for_each_segment<L>(ch.begin, ch.begin + ch.len, in.hw, in.c, m + i * in.w_per_sample,
                          [&](auto mode, int64_t b, int64_t e, const scalar_t* wp, scalar_t wc) {
                            constexpr int M = decltype(mode)::value;
                            const acc_t mc = static_cast<acc_t>(wc);
                            const scalar_t* gp = g + base + b;
                            const scalar_t* tp = t + base + b;
                            const scalar_t* gcp = kHasGradComposite ? gc + base + b : nullptr;
                            scalar_t* op = out + base + b;
#pragma omp simd
                            for (int64_t j = 0; j < e - b; ++j) {
                              const acc_t mv = M == kWeightPtr ? static_cast<acc_t>(wp[j]) : mc;
                              const acc_t gcv = kHasGradComposite ? static_cast<acc_t>(gcp[j]) : acc_t(0);
                              op[j] = static_cast<scalar_t>(
                                  kHasGradSqErr ? composite_l2_grad(gcv, gs, static_cast<acc_t>(gp[j]),
                                                                    static_cast<acc_t>(tp[j]), mv)
                                                : composite_grad(gcv, mv));
                            }
                          });
    }
  });
}

