// Fused per-unit statistics for deadrelu (CPU, float32 activations).
//
// Why this exists: in eager PyTorch the per-unit statistics of one activation need
// about four passes over it (mask, count, sum, max), which costs 5-9% of a ResNet
// forward on CPU. These kernels read each value once and keep every partial result
// in registers. They produce exactly what deadrelu/stats.py's eager path produces
// (same counts, same NaN/Inf rules; sums equal up to float rounding).
//
// Built on first use by deadrelu/native/build.py against the installed torch, with
// that torch's OpenMP runtime, so at::parallel_for shares torch's thread pool.
//
// Both kernels add one batch into seven float64 per-unit accumulators, in order:
// active, sample_active, sum, abs_sum, max, saturated, nonfinite
// (see deadrelu/stats.py for their meaning).
//
//   stats with slice_layout: y is (S, U, R) with rows of R positions contiguous
//           (conv outputs): slices_kernel.
//   stats without: y is (S, R, U) with units contiguous (rows_kernel) (sequence features; R == 1 for
//           Linear outputs, where the eager rule "a non-finite value drops the
//           unit's whole batch from sum/abs_sum/max" is kept).
//
// relu_into also computes the ReLU itself: they read the input once,
// write max(x, 0) (NaN stays NaN, as torch.relu) and count on what they wrote, so
// recording a ReLU costs almost nothing beyond the ReLU (the output is in register
// when it is counted). The collector uses them once a site is known.
//
// A slice is one (sample, unit) pair. A slice whose float32 sum is not finite
// (it holds NaN or +-Inf, or its finite values overflow) counts once in
// `nonfinite` and is left out of sum/abs_sum/max; NaN never counts as firing.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace {

// Counts within one slice (or, for Linear outputs, one batch) are float32: a masked
// float add is one instruction where an integer count needs three, and float32 is
// exact below 2**24, which the caller guarantees (deadrelu/native/__init__.py).
using Count = float;
inline Count hit(bool b) { return b ? 1.f : 0.f; }

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int64_t kExact = int64_t{1} << 24;  // float32 counts are exact below this

struct Bounds {
  float level, low, high;
  bool has_low, has_high, nonneg;
  bool saturates() const { return has_low || has_high; }
};

// Per-unit totals of one block of samples, folded into the accumulators at the end.
struct Totals {
  int64_t active = 0, sample_active = 0, saturated = 0, nonfinite = 0;
  double sum = 0, abs_sum = 0, max = -std::numeric_limits<double>::infinity();

  void add_slice(Count fired, float sum_, float abs_, float max_, Count sat) {
    active += static_cast<int64_t>(fired);
    sample_active += fired > 0;
    saturated += static_cast<int64_t>(sat);
    if (std::isfinite(sum_)) {
      sum += sum_;
      abs_sum += abs_;
      max = std::max<double>(max, max_);
    } else {
      nonfinite += 1;
    }
  }
};

struct Accumulators {
  double* p[7];
  explicit Accumulators(const at::Tensor* const* acc) {
    for (int i = 0; i < 7; ++i) p[i] = acc[i]->mutable_data_ptr<double>();
  }
  // The seven counters as the rows of one (7, units) block (UnitStats.zeros makes them so).
  Accumulators(double* block, int64_t units) {
    for (int i = 0; i < 7; ++i) p[i] = block + i * units;
  }
  void fold(int64_t u, const Totals& t) const {
    p[0][u] += t.active;
    p[1][u] += t.sample_active;
    p[2][u] += t.sum;
    p[3][u] += t.abs_sum;
    p[4][u] = std::max(p[4][u], t.max);
    p[5][u] += t.saturated;
    p[6][u] += t.nonfinite;
  }
};

// Below this many values one thread does everything (waking the pool costs more).
constexpr int64_t kSerialBelow = 1 << 15;

// Runs body(first_unit, end_unit, totals) over ranges of units in parallel and folds
// each unit's totals into acc (totals[k] is unit first_unit + k). Each thread owns a
// contiguous range of units, so it reads one contiguous run of memory per sample, and
// each unit's values are added in sample order whatever the thread count: results are
// identical run to run. The totals live in a per-thread buffer that is reused:
// a fresh one per call was an mmap and a page fault per 4 KiB (about 30 us for 2048
// units), more than the statistics of a small activation.
template <class Body>
void over_units(int64_t U, int64_t values_per_unit, const Accumulators& acc,
                const Body& body) {
  const int64_t grain = std::max<int64_t>(4, kSerialBelow / std::max<int64_t>(1, values_per_unit));
  at::parallel_for(0, U, grain, [&](int64_t begin, int64_t end) {
    thread_local std::vector<Totals> buffer;
    buffer.assign(static_cast<size_t>(end - begin), Totals{});
    Totals* const t = buffer.data();
    body(begin, end, t);
    for (int64_t u = begin; u < end; ++u) acc.fold(u, t[u - begin]);  // this thread's units only
  });
}

// |x| sum and saturation count of one contiguous row: extra passes that only the
// kinds that need them pay (signed outputs, bounded activations).
inline void row_extras(const float* row, int64_t n, const Bounds& b, float& abs_sum,
                       Count& sat) {
  abs_sum = 0.f;
  sat = 0;
  if (!b.nonneg) {
#pragma omp simd reduction(+ : abs_sum)
    for (int64_t r = 0; r < n; ++r) abs_sum += std::fabs(row[r]);
  }
  if (b.saturates()) {
    const float lo = b.low, hi = b.high;
    const bool has_lo = b.has_low, has_hi = b.has_high;
#pragma omp simd reduction(+ : sat)
    for (int64_t r = 0; r < n; ++r) sat += hit(has_lo && row[r] <= lo) + hit(has_hi && row[r] >= hi);
  }
}

// One (S, *, *) strided view of float32 data (innermost stride 1).
struct View {
  float* data;
  int64_t s_stride, mid_stride;
  float* at(int64_t s, int64_t mid) const { return data + s * s_stride + mid * mid_stride; }
};

// torch.relu's value: 0 for x <= 0 (and for -0.0), x otherwise, NaN stays NaN.
inline float relu(float v) { return v <= 0.f ? 0.f : v; }

// Reads v from src and, when kRelu, replaces it by relu(v) written to dst.
template <bool kRelu>
inline float load(const float* src, float* dst, int64_t r) {
  if constexpr (kRelu) {
    const float w = relu(src[r]);
    dst[r] = w;
    return w;
  } else {
    return src[r];
  }
}

// Rows shorter than this take packed_slices_kernel (when a sample's rows lie end to
// end): reducing rows of a few positions one by one costs several horizontal
// reductions and a scalar fold per handful of values. Measured in
// benchmarks/bench_kernel.py.
constexpr int64_t kPackedBelow = 32;
// Positions (units x R) per block of packed_slices_kernel: the block's accumulators
// (a few arrays of this many floats) stay in L1 while the samples stream through.
constexpr int64_t kBlockPositions = 1024;
// Samples per fold in packed_slices_kernel: one bit each in a uint32_t per position.
constexpr int64_t kFoldSamples = 32;
// Samples read together in packed_slices_kernel (sequential streams at once).
constexpr int64_t kGroup = 4;
// A unit whose summed |values| over a fold stay below this cannot have overflowed any
// float32 slice sum (FLT_MAX is 3.4e38), so none of its slices can be non-finite.
constexpr double kSafeTotal = 1e37;

// Firing count, float32 sum and maximum of one row of R values (with kRelu, relu(src)
// is written to dst and counted).
template <bool kRelu>
inline void reduce_row(const float* src, float* dst, int64_t R, float level, Count& fired,
                       float& sum, float& max) {
  Count c = 0;
  float sm = 0, m = kNegInf;
#pragma omp simd reduction(+ : c, sm) reduction(max : m)
  for (int64_t r = 0; r < R; ++r) {
    const float v = load<kRelu>(src, dst, r);
    c += hit(v > level); sm += v; m = v > m ? v : m;
  }
  fired = c; sum = sm; max = m;
}

// The per-slice results of one row of R values (with kRelu, relu(src) is written to dst
// and counted), added to t: the exact rule, slice by slice.
template <bool kRelu>
inline void add_row(const float* src, float* dst, int64_t R, const Bounds& b, Totals& t) {
  Count c;
  float sm, m;
  reduce_row<kRelu>(src, dst, R, b.level, c, sm, m);
  float abs_sum = sm;
  Count sat = 0;
  if (!b.nonneg || b.saturates()) row_extras(kRelu ? dst : src, R, b, abs_sum, sat);
  if (b.nonneg) abs_sum = sm;
  t.add_slice(c, sm, abs_sum, m, sat);
}

// GCC/Clang vector types: 16 floats (one AVX-512 register, two AVX2 ones), so that
// packed_slices_kernel's accumulators stay in registers while samples stream by.
using F16 = float __attribute__((vector_size(64)));
using I16 = int32_t __attribute__((vector_size(64)));
using U16 = uint32_t __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

inline F16 load16(const float* p) { F16 v; __builtin_memcpy(&v, p, sizeof v); return v; }
inline void store16(float* p, F16 v) { __builtin_memcpy(p, &v, sizeof v); }
inline F16 splat(float x) { return F16{} + x; }

// Adds samples j0 .. j0 + ns of a fold (src[j * ss + i] for j < ns) at kVecs * 16
// consecutive positions into the per-position accumulators, which are loaded once
// (or, for the fold's first group, started) and stored once for the whole group: per
// value one load (and, with kRelu, one store of relu(v) to dst[j * ds + i]). With
// kBits, bit j0 + j of bits[i] is set where that sample fired; else counts[i] counts
// the values that fired (rows_kernel, where the "samples" are a slice's rows).
template <bool kRelu, bool kAbs, bool kSat, bool kBits, int kVecs>
inline void accumulate_vecs(const float* src, int64_t ss, float* dst, int64_t ds, int64_t j0,
                            int64_t ns, bool first, const Bounds& b, float* sums, float* maxes,
                            float* abss, float* sats, uint32_t* bits, float* counts) {
  const F16 level = splat(b.level), lo = splat(b.low), hi = splat(b.high), zero = splat(0.f);
  const F16 one = splat(1.f);
  const I16 abs_mask = I16{} + 0x7fffffff;
  F16 sm[kVecs], mx[kVecs], ab[kVecs], st[kVecs], ct[kVecs];
  U16 bt[kVecs];
  for (int k = 0; k < kVecs; ++k) {
    if (first) {
      sm[k] = ab[k] = st[k] = ct[k] = zero;
      mx[k] = splat(kNegInf);
      bt[k] = U16{};
    } else {
      sm[k] = load16(sums + k * kLanes);
      mx[k] = load16(maxes + k * kLanes);
      if constexpr (kAbs) ab[k] = load16(abss + k * kLanes);
      if constexpr (kSat) st[k] = load16(sats + k * kLanes);
      if constexpr (kBits) __builtin_memcpy(&bt[k], bits + k * kLanes, sizeof bt[k]);
      else ct[k] = load16(counts + k * kLanes);
    }
  }
  for (int64_t j = 0; j < ns; ++j) {
    const U16 bit = U16{} + (kBits ? uint32_t{1} << (j0 + j) : 0u);
    for (int k = 0; k < kVecs; ++k) {
      F16 v = load16(src + j * ss + k * kLanes);
      if constexpr (kRelu) {
        v = v <= zero ? zero : v;  // NaN stays NaN, as torch.relu
        store16(dst + j * ds + k * kLanes, v);
      }
      if constexpr (kBits) bt[k] |= (U16)(v > level) & bit;
      else ct[k] += v > level ? one : zero;
      sm[k] += v;
      mx[k] = v > mx[k] ? v : mx[k];
      if constexpr (kAbs) ab[k] += (F16)((I16)v & abs_mask);
      if constexpr (kSat) {
        if (b.has_low) st[k] += v <= lo ? one : zero;
        if (b.has_high) st[k] += v >= hi ? one : zero;
      }
    }
  }
  for (int k = 0; k < kVecs; ++k) {
    store16(sums + k * kLanes, sm[k]);
    store16(maxes + k * kLanes, mx[k]);
    if constexpr (kAbs) store16(abss + k * kLanes, ab[k]);
    if constexpr (kSat) store16(sats + k * kLanes, st[k]);
    if constexpr (kBits) __builtin_memcpy(bits + k * kLanes, &bt[k], sizeof bt[k]);
    else store16(counts + k * kLanes, ct[k]);
  }
}

// The same for fewer than 16 positions (a block's tail).
template <bool kRelu, bool kAbs, bool kSat, bool kBits>
inline void accumulate_tail(const float* src, int64_t ss, float* dst, int64_t ds, int64_t j0,
                            int64_t ns, bool first, int64_t w, const Bounds& b, float* sums,
                            float* maxes, float* abss, float* sats, uint32_t* bits,
                            float* counts) {
  if (first) {
    for (int64_t i = 0; i < w; ++i) {
      sums[i] = abss[i] = sats[i] = 0.f;
      maxes[i] = kNegInf;
      if constexpr (kBits) bits[i] = 0;
      else counts[i] = 0.f;
    }
  }
  for (int64_t j = 0; j < ns; ++j) {
    for (int64_t i = 0; i < w; ++i) {
      const float v = load<kRelu>(src + j * ss, kRelu ? dst + j * ds : nullptr, i);
      if constexpr (kBits) bits[i] |= v > b.level ? uint32_t{1} << (j0 + j) : 0u;
      else counts[i] += hit(v > b.level);
      sums[i] += v;
      maxes[i] = v > maxes[i] ? v : maxes[i];
      if constexpr (kAbs) abss[i] += std::fabs(v);
      if constexpr (kSat) sats[i] += hit(b.has_low && v <= b.low) + hit(b.has_high && v >= b.high);
    }
  }
}

// accumulate_vecs/_tail over n consecutive positions: vectors of 32, of 16, then the tail.
template <bool kRelu, bool kAbs, bool kSat, bool kBits>
inline void accumulate(const float* src, int64_t ss, float* dst, int64_t ds, int64_t j0,
                       int64_t ns, bool first, int64_t n, const Bounds& b, float* sums,
                       float* maxes, float* abss, float* sats, uint32_t* bits, float* counts) {
  int64_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes)
    accumulate_vecs<kRelu, kAbs, kSat, kBits, 2>(
        src + i, ss, kRelu ? dst + i : nullptr, ds, j0, ns, first, b, sums + i, maxes + i,
        abss + i, sats + i, kBits ? bits + i : nullptr, kBits ? nullptr : counts + i);
  for (; i + kLanes <= n; i += kLanes)
    accumulate_vecs<kRelu, kAbs, kSat, kBits, 1>(
        src + i, ss, kRelu ? dst + i : nullptr, ds, j0, ns, first, b, sums + i, maxes + i,
        abss + i, sats + i, kBits ? bits + i : nullptr, kBits ? nullptr : counts + i);
  if (i < n)
    accumulate_tail<kRelu, kAbs, kSat, kBits>(
        src + i, ss, kRelu ? dst + i : nullptr, ds, j0, ns, first, n - i, b, sums + i,
        maxes + i, abss + i, sats + i, kBits ? bits + i : nullptr, kBits ? nullptr : counts + i);
}

// One unit of a Linear-like output (one value per sample) by the eager flat rule: every
// NaN/Inf value counts in `nonfinite`, and the unit's sum/abs_sum/max are kept only if
// its float32 batch sum, added in sample order, is finite.
inline void add_column(View vals, int64_t S, int64_t u, const Bounds& b, Totals& t) {
  Count fired = 0, sat = 0, bad = 0;
  float sm = 0, ab = 0, m = kNegInf;
  for (int64_t s = 0; s < S; ++s) {
    const float v = *vals.at(s, u);
    fired += hit(v > b.level);
    sm += v;
    ab += std::fabs(v);
    m = v > m ? v : m;
    sat += hit(b.has_low && v <= b.low) + hit(b.has_high && v >= b.high);
    bad += hit(!(v - v == 0.f));
  }
  t.active = t.sample_active = static_cast<int64_t>(fired);
  t.saturated = static_cast<int64_t>(sat);
  t.nonfinite = static_cast<int64_t>(bad);
  if (std::isfinite(sm)) {
    t.sum = sm;
    t.abs_sum = b.nonneg ? sm : ab;
    t.max = m;
  }
}

// (S, U, R) where each sample's rows lie end to end (mid_stride == R), R small (5x5
// feature maps and below). Reducing each short row on its own is what made these
// shapes cost 4-11 ReLUs (horizontal reductions and a scalar fold per few values);
// here no row is reduced per sample. A block of units' n * R values of one sample is
// contiguous, so it is read as vectors of 16 positions, and for each vector the
// samples of a fold (up to 32) stream through accumulators held in registers: per
// position a sum, a maximum (|x| and saturation where the kind needs them), and a
// word whose bit j says sample j fired there. Then each unit folds its R positions:
// active = the popcounts of its words, sample_active = the popcount of their OR.
// The eager rule for non-finite slices needs each slice's float32 sum; a unit whose
// fold totals are finite and far from overflow has none (a NaN or Inf makes its
// position's sum non-finite), and a unit's fold that is not is redone slice by slice
// (add_row on the values as written), so the counts stay those of the eager path.
// With `flat` (R == 1, a Linear output: units contiguous, one value per sample) the
// eager rule is per unit and batch (add_column), so it is checked once all folds are in.
template <bool kRelu, bool kAbs, bool kSat>
void packed_slices_kernel(View in, View out, int64_t S, int64_t U, int64_t R, const Bounds& b,
                          bool flat, const Accumulators& acc) {
  const int64_t per_block = std::max<int64_t>(1, kBlockPositions / R);
  over_units(U, S * R, acc, [&](int64_t u_begin, int64_t u_end, Totals* totals) {
    const int64_t P = std::min(per_block, u_end - u_begin) * R;
    thread_local std::vector<float> buf;
    thread_local std::vector<uint32_t> words;
    buf.resize(static_cast<size_t>(4 * P));
    words.resize(static_cast<size_t>(P));
    float *sums = buf.data(), *maxes = sums + P, *abss = maxes + P, *sats = abss + P;
    uint32_t* bits = words.data();
    const View vals = kRelu ? out : in;  // what is counted: the values as written
    for (int64_t u0 = u_begin; u0 < u_end; u0 += per_block) {
      const int64_t n = std::min(per_block, u_end - u0), np = n * R;
      for (int64_t s0 = 0; s0 < S; s0 += kFoldSamples) {
        const int64_t ns = std::min(S, s0 + kFoldSamples) - s0;
        // samples in groups of kGroup: each group reads kGroup sequential streams and
        // touches the accumulators once
        for (int64_t g = 0; g < ns; g += kGroup) {
          const int64_t ng = std::min(kGroup, ns - g);
          const float* src = in.at(s0 + g, u0);
          float* dst = kRelu ? out.at(s0 + g, u0) : nullptr;
          const int64_t ss = in.s_stride, ds = out.s_stride;
          accumulate<kRelu, kAbs, kSat, true>(src, ss, dst, ds, g, ng, g == 0, np, b, sums,
                                              maxes, abss, sats, bits, nullptr);
        }
        for (int64_t k = 0; k < n; ++k) {
          const int64_t i0 = k * R;
          uint32_t any = 0;
          int64_t fired = 0;
          double sm = 0, ab = 0, sat = 0;
          float m = kNegInf;
          for (int64_t r = i0; r < i0 + R; ++r) {
            any |= bits[r];
            fired += __builtin_popcount(bits[r]);
            sm += sums[r];
            if constexpr (kAbs) ab += abss[r];
            if constexpr (kSat) sat += sats[r];
            m = std::max(m, maxes[r]);
          }
          if constexpr (!kAbs) ab = sm;
          Totals& t = totals[u0 - u_begin + k];
          const bool safe = std::isfinite(sm) && std::isfinite(ab) &&
                            std::fabs(sm) < kSafeTotal && ab < kSafeTotal;
          if (safe || flat) {  // flat: checked once the whole batch is in, below
            t.active += fired;
            t.sample_active += __builtin_popcount(any);
            t.saturated += static_cast<int64_t>(sat);
            t.sum += sm;
            t.abs_sum += ab;
            t.max = std::max<double>(t.max, m);
            if (!safe) t.nonfinite = 1;  // marks the unit for the batch rule
          } else {  // a NaN/Inf or a huge value: the exact rule, slice by slice
            for (int64_t s = s0; s < s0 + ns; ++s)
              add_row<false>(vals.at(s, u0 + k), nullptr, R, b, t);
          }
        }
      }
      if (flat) {
        for (int64_t k = 0; k < n; ++k) {
          Totals& t = totals[u0 - u_begin + k];
          if (t.nonfinite || !(std::fabs(t.sum) < kSafeTotal && t.abs_sum < kSafeTotal)) {
            t = Totals{};
            add_column(vals, S, u0 + k, b, t);
          }
        }
      }
    }
  });
}

// packed_slices_kernel for the kind's statistics (|x| and saturation only where needed).
template <bool kRelu>
void packed(View in, View out, int64_t S, int64_t U, int64_t R, const Bounds& b, bool flat,
            const Accumulators& acc) {
  const bool abs = !b.nonneg, sat = b.saturates();
  if (kRelu || (!abs && !sat)) packed_slices_kernel<kRelu, false, false>(in, out, S, U, R, b, flat, acc);
  else if (!sat) packed_slices_kernel<false, true, false>(in, out, S, U, R, b, flat, acc);
  else if (!abs) packed_slices_kernel<false, false, true>(in, out, S, U, R, b, flat, acc);
  else packed_slices_kernel<false, true, true>(in, out, S, U, R, b, flat, acc);
}

// (S, U, R), R contiguous. For each sample, the rows of four units are reduced
// together, which gives the CPU four independent dependency chains per statistic
// (a single chain is latency-bound).
template <bool kRelu>
void slices_kernel(View in, View out, int64_t S, int64_t U, int64_t R, const Bounds& b,
                   const Accumulators& acc) {
  if (R < kPackedBelow && in.mid_stride == R && (!kRelu || out.mid_stride == R)) {
    packed<kRelu>(in, out, S, U, R, b, false, acc);
    return;
  }
  const float level = b.level;
  over_units(U, S * R, acc, [&](int64_t u_begin, int64_t u_end, Totals* totals) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t u0 = u_begin; u0 < u_end; u0 += 4) {
        const int64_t n = std::min<int64_t>(4, u_end - u0);
        const float* base = in.at(s, u0);
        float* obase = kRelu ? out.at(s, u0) : nullptr;
        const int64_t step = in.mid_stride, ostep = out.mid_stride;
        Count fired[4] = {0, 0, 0, 0};
        float sums[4] = {0, 0, 0, 0}, maxes[4] = {kNegInf, kNegInf, kNegInf, kNegInf};
        if (n == 4) {
          const float *r0 = base, *r1 = base + step, *r2 = base + 2 * step,
                      *r3 = base + 3 * step;
          float *o0 = obase, *o1 = obase + ostep, *o2 = obase + 2 * ostep,
                *o3 = obase + 3 * ostep;
          Count c0 = 0, c1 = 0, c2 = 0, c3 = 0;
          float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          float m0 = kNegInf, m1 = kNegInf, m2 = kNegInf, m3 = kNegInf;
#pragma omp simd reduction(+ : c0, c1, c2, c3, s0, s1, s2, s3) reduction(max : m0, m1, m2, m3)
          for (int64_t r = 0; r < R; ++r) {
            const float v0 = load<kRelu>(r0, o0, r), v1 = load<kRelu>(r1, o1, r),
                        v2 = load<kRelu>(r2, o2, r), v3 = load<kRelu>(r3, o3, r);
            c0 += hit(v0 > level); c1 += hit(v1 > level); c2 += hit(v2 > level); c3 += hit(v3 > level);
            s0 += v0; s1 += v1; s2 += v2; s3 += v3;
            m0 = v0 > m0 ? v0 : m0; m1 = v1 > m1 ? v1 : m1;
            m2 = v2 > m2 ? v2 : m2; m3 = v3 > m3 ? v3 : m3;
          }
          fired[0] = c0; fired[1] = c1; fired[2] = c2; fired[3] = c3;
          sums[0] = s0; sums[1] = s1; sums[2] = s2; sums[3] = s3;
          maxes[0] = m0; maxes[1] = m1; maxes[2] = m2; maxes[3] = m3;
        } else {
          for (int64_t k = 0; k < n; ++k)
            reduce_row<kRelu>(base + k * step, kRelu ? obase + k * ostep : nullptr, R, level,
                              fired[k], sums[k], maxes[k]);
        }
        for (int64_t k = 0; k < n; ++k) {
          float abs_sum = sums[k];
          Count sat = 0;
          if (!b.nonneg || b.saturates()) row_extras(base + k * step, R, b, abs_sum, sat);
          if (b.nonneg) abs_sum = sums[k];
          totals[u0 - u_begin + k].add_slice(fired[k], sums[k], abs_sum, maxes[k], sat);
        }
      }
    }
  });
}

// (S, R, U), U contiguous (sequence features). Every statistic is a vector over
// units, so there are no horizontal reductions: for each sample a thread's units'
// slice results build up in per-unit arrays, kGroup rows at a time (the arrays are
// read and written once per group), and are then added to the counters in one vector
// loop (a slice with a non-finite float32 sum goes to `nonfinite` instead). Linear
// outputs (R == 1) go to packed_slices_kernel, with the eager rule for them: a unit's
// values count toward sum/abs_sum/max only if its float32 batch sum is finite.
template <bool kRelu, bool kAbs, bool kSat>
void seq_kernel(View in, View out, int64_t S, int64_t R, int64_t U, const Bounds& b,
                const Accumulators& acc) {
  const int64_t grain = std::max<int64_t>(4, kSerialBelow / std::max<int64_t>(1, S * R));
  at::parallel_for(0, U, grain, [&](int64_t begin, int64_t end) {
    const int64_t n = end - begin;
    thread_local std::vector<float> buf;
    buf.resize(static_cast<size_t>(5 * n));
    float *counts = buf.data(), *sums = counts + n, *maxes = sums + n, *abss = maxes + n,
          *sats = abss + n;
    if (!kAbs) std::fill(abss, abss + n, 0.f);
    if (!kSat) std::fill(sats, sats + n, 0.f);
    // this thread's units of the counters (see Accumulators)
    double *active = acc.p[0] + begin, *sample_active = acc.p[1] + begin,
           *sum = acc.p[2] + begin, *abs_sum = acc.p[3] + begin, *max = acc.p[4] + begin,
           *saturated = acc.p[5] + begin, *nonfinite = acc.p[6] + begin;
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t g = 0; g < R; g += kGroup) {
        accumulate<kRelu, kAbs, kSat, false>(
            in.at(s, g) + begin, in.mid_stride, kRelu ? out.at(s, g) + begin : nullptr,
            out.mid_stride, 0, std::min(kGroup, R - g), g == 0, n, b, sums, maxes, abss, sats,
            nullptr, counts);
      }
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) {
        const float sm = sums[k];
        const bool finite = sm - sm == 0.f;  // the slice held no NaN/Inf and did not overflow
        active[k] += counts[k];
        sample_active[k] += counts[k] > 0.f ? 1.0 : 0.0;
        saturated[k] += sats[k];
        sum[k] += finite ? sm : 0.f;
        abs_sum[k] += finite ? (kAbs ? abss[k] : sm) : 0.f;
        const double m = maxes[k];
        max[k] = finite && m > max[k] ? m : max[k];
        nonfinite[k] += finite ? 0.0 : 1.0;
      }
    }
  });
}

template <bool kRelu>
void rows_kernel(View in, View out, int64_t S, int64_t R, int64_t U, const Bounds& b,
                 const Accumulators& acc) {
  if (R == 1) {  // the units of a sample are one packed run of positions
    packed<kRelu>(View{in.data, in.s_stride, 1}, View{out.data, out.s_stride, 1}, S, U, 1, b,
                  true, acc);
    return;
  }
  const bool abs = !b.nonneg, sat = b.saturates();
  if (kRelu || (!abs && !sat)) seq_kernel<kRelu, false, false>(in, out, S, R, U, b, acc);
  else if (!sat) seq_kernel<false, true, false>(in, out, S, R, U, b, acc);
  else if (!abs) seq_kernel<false, false, true>(in, out, S, R, U, b, acc);
  else seq_kernel<false, true, true>(in, out, S, R, U, b, acc);
}

Bounds bounds(double level, std::optional<double> low, std::optional<double> high, bool nonneg) {
  return Bounds{static_cast<float>(level), static_cast<float>(low.value_or(0.0)),
                static_cast<float>(high.value_or(0.0)), low.has_value(), high.has_value(), nonneg};
}

void check_acc(const at::Tensor* const* acc, int64_t units) {
  for (int i = 0; i < 7; ++i) {
    TORCH_CHECK(acc[i]->scalar_type() == at::kDouble && acc[i]->is_contiguous() &&
                    acc[i]->numel() == units && acc[i]->device().is_cpu(),
                "deadrelu native stats: accumulators must be contiguous CPU float64 of ",
                units, " units");
  }
}

void check(const at::Tensor& y, const at::Tensor* const* acc, int64_t units) {
  TORCH_CHECK(y.dim() == 3 && y.scalar_type() == at::kFloat && y.device().is_cpu() &&
                  y.stride(2) == 1,
              "deadrelu native stats: y must be a 3-D CPU float32 tensor with stride(2) == 1");
  check_acc(acc, units);
}

// Counts are float32 (see Count): a slice, or a Linear output's batch, must stay below 2**24.
void check_exact(int64_t samples, int64_t positions) {
  TORCH_CHECK(positions < kExact && (positions > 1 || samples < kExact),
              "deadrelu native stats: 2**24 or more positions per slice need the eager path");
}

#define ACC_PARAMS                                                                            \
  at::Tensor &active, at::Tensor &sample_active, at::Tensor &sum, at::Tensor &abs_sum,      \
      at::Tensor &max, at::Tensor &saturated, at::Tensor &nonfinite
#define ACC_LIST {&active, &sample_active, &sum, &abs_sum, &max, &saturated, &nonfinite}

View view(const at::Tensor& t) {
  return View{const_cast<float*>(t.const_data_ptr<float>()), t.stride(0), t.stride(1)};
}

// The statistics of y, laid out (S, U, R) with slice_layout, else (S, R, U).
void stats(const at::Tensor& y, bool slice_layout, double level, std::optional<double> low,
           std::optional<double> high, bool nonneg, ACC_PARAMS) {
  const at::Tensor* acc[7] = ACC_LIST;
  check(y, acc, y.size(slice_layout ? 1 : 2));
  check_exact(y.size(0), y.size(slice_layout ? 2 : 1));
  const Bounds b = bounds(level, low, high, nonneg);
  if (slice_layout) {
    slices_kernel<false>(view(y), view(y), y.size(0), y.size(1), y.size(2), b, Accumulators(acc));
  } else {
    rows_kernel<false>(view(y), view(y), y.size(0), y.size(1), y.size(2), b, Accumulators(acc));
  }
}

// out = relu(x) (out may be x itself), and its statistics, in one pass.
void relu_into(const at::Tensor& x, at::Tensor& out, bool slice_layout, ACC_PARAMS) {
  const at::Tensor* acc[7] = ACC_LIST;
  check(x, acc, x.size(slice_layout ? 1 : 2));
  check(out, acc, x.size(slice_layout ? 1 : 2));
  TORCH_CHECK(out.sizes() == x.sizes(), "deadrelu native relu: out and x differ in shape");
  check_exact(x.size(0), x.size(slice_layout ? 2 : 1));
  const Bounds b = bounds(0.0, std::nullopt, std::nullopt, true);
  View dst{out.mutable_data_ptr<float>(), out.stride(0), out.stride(1)};
  if (slice_layout) {
    slices_kernel<true>(view(x), dst, x.size(0), x.size(1), x.size(2), b, Accumulators(acc));
  } else {
    rows_kernel<true>(view(x), dst, x.size(0), x.size(1), x.size(2), b, Accumulators(acc));
  }
}

// The (S, M, R) view of t given by the collector's plan (innermost stride 1), checked
// to lie inside t's storage: the collector computes a site's view once per shape and
// strides, and then passes t itself, which spares a few Python view ops per call.
View planned(const at::Tensor& t, int64_t S, int64_t M, int64_t R, int64_t ss, int64_t ms) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu() && S > 0 && M > 0 && R > 0 &&
                  ss >= 0 && ms >= 0 && S * M * R == t.numel(),
              "deadrelu native stats: the planned view does not match the tensor");
  const int64_t room = static_cast<int64_t>(t.storage().nbytes() / sizeof(float)) -
                       t.storage_offset();
  TORCH_CHECK((S - 1) * ss + (M - 1) * ms + (R - 1) < room,
              "deadrelu native stats: the planned view leaves the tensor's storage");
  return View{const_cast<float*>(t.const_data_ptr<float>()), ss, ms};
}

// The counters as one contiguous (7, units) float64 CPU block.
Accumulators block(at::Tensor& counters, int64_t units) {
  TORCH_CHECK(counters.scalar_type() == at::kDouble && counters.is_contiguous() &&
                  counters.device().is_cpu() && counters.dim() == 2 &&
                  counters.size(0) == 7 && counters.size(1) == units,
              "deadrelu native stats: counters must be a contiguous CPU float64 (7, ", units,
              ") block");
  return Accumulators(counters.mutable_data_ptr<double>(), units);
}

// stats() on the planned (S, M, R) view of y; the counters as one block. The collector's
// steady state: few arguments, as each one costs the Python call some time.
void stats_view(const at::Tensor& y, int64_t S, int64_t M, int64_t R, int64_t ss, int64_t ms,
                bool slice_layout, double level, std::optional<double> low,
                std::optional<double> high, bool nonneg, at::Tensor& counters) {
  const View v = planned(y, S, M, R, ss, ms);
  const Accumulators acc = block(counters, slice_layout ? M : R);
  check_exact(S, slice_layout ? R : M);
  const Bounds b = bounds(level, low, high, nonneg);
  if (slice_layout) slices_kernel<false>(v, v, S, M, R, b, acc);
  else rows_kernel<false>(v, v, S, M, R, b, acc);
}

// relu_into() on the planned (S, M, R) views of x and out (out has x's strides).
void relu_view(const at::Tensor& x, at::Tensor& out, int64_t S, int64_t M, int64_t R, int64_t ss,
               int64_t ms, bool slice_layout, at::Tensor& counters) {
  TORCH_CHECK(out.sizes() == x.sizes() && out.strides() == x.strides(),
              "deadrelu native relu: out and x differ in shape or strides");
  const View src = planned(x, S, M, R, ss, ms);
  View dst = planned(out, S, M, R, ss, ms);
  dst.data = out.mutable_data_ptr<float>();
  const Accumulators acc = block(counters, slice_layout ? M : R);
  check_exact(S, slice_layout ? R : M);
  const Bounds b = bounds(0.0, std::nullopt, std::nullopt, true);
  if (slice_layout) slices_kernel<true>(src, dst, S, M, R, b, acc);
  else rows_kernel<true>(src, dst, S, M, R, b, acc);
}

}  // namespace

TORCH_LIBRARY(deadrelu_native, m) {
  const char* acc =
      "Tensor(a!) active, Tensor(b!) sample_active, Tensor(c!) sum, Tensor(d!) abs_sum, "
      "Tensor(e!) max, Tensor(f!) saturated, Tensor(g!) nonfinite) -> ()";
  m.def((std::string("stats(Tensor y, bool slice_layout, float level, float? low, float? high, "
                     "bool nonneg, ") + acc).c_str(),
        &stats);
  m.def((std::string("relu_into(Tensor x, Tensor(z!) out, bool slice_layout, ") + acc).c_str(),
        &relu_into);
  m.def("stats_view(Tensor y, int S, int M, int R, int ss, int ms, bool slice_layout, "
        "float level, float? low, float? high, bool nonneg, Tensor(a!) counters) -> ()",
        &stats_view);
  m.def("relu_view(Tensor x, Tensor(z!) out, int S, int M, int R, int ss, int ms, "
        "bool slice_layout, Tensor(a!) counters) -> ()",
        &relu_view);
}

#ifdef DEADRELU_PYTHON
// The collector's steady-state calls as a Python extension module as well: a call
// through torch.ops parses its arguments against the op's schema and goes through the
// dispatcher, about 3.5 us per call with twelve arguments, where a direct binding
// costs about 0.4 us (benchmarks/bench_calls.py). The counters come first and the
// per-site constants last, so that Python passes a prebuilt tuple after the tensors.
// The GIL is released while the kernel runs, as torch.ops does.
#include <torch/csrc/utils/pybind.h>

namespace {

void py_stats_view(const at::Tensor& y, const at::Tensor& counters, int64_t S, int64_t M,
                   int64_t R, int64_t ss, int64_t ms, bool slice_layout, double level,
                   std::optional<double> low, std::optional<double> high, bool nonneg) {
  at::Tensor block = counters;
  stats_view(y, S, M, R, ss, ms, slice_layout, level, low, high, nonneg, block);
}

void py_relu_view(const at::Tensor& x, const at::Tensor& out, const at::Tensor& counters,
                  int64_t S, int64_t M, int64_t R, int64_t ss, int64_t ms, bool slice_layout) {
  at::Tensor dst = out, block = counters;
  relu_view(x, dst, S, M, R, ss, ms, slice_layout, block);
}

}  // namespace

PYBIND11_MODULE(deadrelu_native_py, m) {
  m.def("stats_view", &py_stats_view, pybind11::call_guard<pybind11::gil_scoped_release>());
  m.def("relu_view", &py_relu_view, pybind11::call_guard<pybind11::gil_scoped_release>());
}
#endif
