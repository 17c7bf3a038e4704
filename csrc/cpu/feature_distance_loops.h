// The CPU loops of nfinpaint::feature_distance (feature_distance.cpp), included twice by the .cpp (once per
// instruction set, see cpu_isa.h): no include guard, no #includes.
// NOLINT(build/header_guard)

template <typename scalar_t, MaskLayout L>
void forward_loop(const LossInputs& in, at::Tensor& dist) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = in.n, s = in.s, nchunk = chunk_count(s, kChunk);
  std::vector<acc_t> part(n * nchunk);
  const scalar_t* f = in.a.const_data_ptr<scalar_t>();
  const scalar_t* r = in.b.const_data_ptr<scalar_t>();
  const scalar_t* w = in.w.defined() ? in.w.const_data_ptr<scalar_t>() : nullptr;
  at::parallel_for(0, n * nchunk, kGrainChunks, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const Chunk ch = chunk_at(item, nchunk, s, kChunk);
      const int64_t i = ch.sample;
      const scalar_t* fs = f + i * s;
      const scalar_t* rs = r + i * s;
      acc_t sum = 0;
      for_each_segment<L>(ch.begin, ch.begin + ch.len, in.hw, in.c,
                          w ? w + i * in.w_per_sample : nullptr,
                          [&](auto mode, int64_t b, int64_t e, const scalar_t* wp, scalar_t wc) {
                            constexpr int M = decltype(mode)::value;
                            const acc_t wcv = static_cast<acc_t>(wc);
                            const scalar_t* fp = fs + b;
                            const scalar_t* rp = rs + b;
                            acc_t seg = 0;
#pragma omp simd reduction(+ : seg)
                            for (int64_t j = 0; j < e - b; ++j) {
                              const acc_t wv = M == kWeightPtr ? static_cast<acc_t>(wp[j]) : wcv;
                              seg += weighted_sq_diff(static_cast<acc_t>(fp[j]), static_cast<acc_t>(rp[j]), wv);
                            }
                            sum += seg;
                          });
      part[item] = sum;
    }
  });
  acc_t* out = dist.mutable_data_ptr<acc_t>();
  for (int64_t i = 0; i < n; ++i) out[i] = sum_chunk_partials(part.data(), i, nchunk);
}

template <typename scalar_t, MaskLayout L>
void backward_loop(const LossInputs& in, const at::opmath_type<scalar_t>* gd, at::Tensor& grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = in.n, s = in.s, nchunk = chunk_count(s, kChunk);
  const scalar_t* f = in.a.const_data_ptr<scalar_t>();
  const scalar_t* r = in.b.const_data_ptr<scalar_t>();
  const scalar_t* w = in.w.defined() ? in.w.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* out = grad.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, n * nchunk, kGrainChunks, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const Chunk ch = chunk_at(item, nchunk, s, kChunk);
      const int64_t i = ch.sample;
      const acc_t gdv = gd[i];
      const int64_t base = i * s;
      for_each_segment<L>(ch.begin, ch.begin + ch.len, in.hw, in.c,
                          w ? w + i * in.w_per_sample : nullptr,
                          [&](auto mode, int64_t b, int64_t e, const scalar_t* wp, scalar_t wc) {
                            constexpr int M = decltype(mode)::value;
                            const acc_t wcv = static_cast<acc_t>(wc);
                            const scalar_t* fp = f + base + b;
                            const scalar_t* rp = r + base + b;
                            scalar_t* op = out + base + b;
#pragma omp simd
                            for (int64_t j = 0; j < e - b; ++j) {
                              const acc_t wv = M == kWeightPtr ? static_cast<acc_t>(wp[j]) : wcv;
                              op[j] = static_cast<scalar_t>(
                                  feature_distance_grad(gdv, static_cast<acc_t>(fp[j]), static_cast<acc_t>(rp[j]), wv));
                            }
                          });
    }
  });
}

