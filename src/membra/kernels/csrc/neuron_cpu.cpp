// Fused LIF / IF neuron kernels for CPU: one forward and one BPTT backward over x[T, M].
//
// Equations (docs/kernels.md, membra.functional.neuron), per neuron m and step t:
//   LIF charge  h_t = v_{t-1} + (x_t - (v_{t-1} - v_reset)) / tau
//   IF  charge  h_t = v_{t-1} + x_t
//   fire        s_t = (u_t >= 0 ? 1 : 0) + (u_t - u_t),  u_t = h_t - v_th
//               (u - u is 0 for a finite u and NaN for NaN/inf: a broken potential spikes NaN)
//   reset       soft: v_t = h_t - v_th s_t      hard: v_t = h_t (1 - s_t) + v_reset s_t
//               (so a NaN spike makes v_t, and every later h, s and v_T, NaN)
// Backward (t = T..1, gv = dL/dv_t carried from the future, sg = surrogate'(h_t - v_th)):
//   dv/dh = (soft ? 1 : 1 - s_t) + nd * (soft ? -v_th sg : (v_reset - h_t) sg)
//   gh    = gs_t sg + gv dv/dh            (nd = 0 when the reset is detached, else 1)
//   LIF: gx_t = gh / tau, gv <- gh - gx_t, g_tau += -gh q_t / tau^2, q_t = x_t - (v_{t-1} - v_reset)
//   IF:  gx_t = gh,       gv <- gh
//
// Surrogate codes (the table membra.functional.SURROGATES): 0-3 the built-ins, computed inline;
// 4 PRECOMPUTED: sg is read from dsg[T, M] (a custom surrogate's derivative, evaluated by torch
// over all steps at once); 5 PRECOMPUTED_TRACE: as 4, and the trace's own gradients dL/dh_t and
// dL/dv_t (ghx, gvx [T, M]) join the recurrence: gv += gvx_t before step t, gh += ghx_t.
// The forward can also write h_t and v_t for every step (the membrane trace).
//
// Memory traffic: the forward reads x and writes s; the backward re-runs the forward for a
// block of W neurons into a [T, W] buffer that stays in cache, then walks back in time reading
// gs and writing gx. Nothing of size [T, M] is saved besides x itself (with a custom surrogate
// the forward writes h, saved in place of x, and the walk reads it: PRECOMPUTED with hin).
//
// The charge, spike and reset are computed with the same operations in the same order as the
// reference (`v + (x - (v - v_reset)) / tau`, true division, no FMA contraction: built with
// -ffp-contract=off), so spikes match the reference bit for bit, exact threshold hits included,
// and NaN/inf reach the same places (a spike of 0 or 1 makes the reset products exact).
// The time loop is outside, the neuron loop inside: contiguous and branch-free, so the
// compiler vectorises it. Neuron blocks are spread over threads with at::parallel_for.

#include <ATen/Parallel.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <ATen/dlpack.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <type_traits>
#include <vector>

namespace {

// ---- storage <-> state conversions ---------------------------------------------------------
// bfloat16 is stored as uint16_t: upcast is a shift, downcast rounds to nearest even.
struct bf16 {
  uint16_t bits;
};

template <typename S, typename A>
inline A load(const S* p, int64_t i) { return static_cast<A>(p[i]); }
template <>
inline float load<bf16, float>(const bf16* p, int64_t i) {
  uint32_t u = static_cast<uint32_t>(p[i].bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

template <typename S, typename A>
inline void store(S* p, int64_t i, A v) { p[i] = static_cast<S>(v); }
template <>
inline void store<bf16, float>(bf16* p, int64_t i, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  uint32_t nan = (u >> 16) | 0x40u;  // keep NaN a (quiet) NaN
  p[i].bits = static_cast<uint16_t>(std::isnan(v) ? nan : rounded);
}

// ---- exp that the compiler can vectorise (Cephes expf, ~1 ulp) -----------------------------
// Capped at e^43 (x > 43 gives e^43): its one use, the sigmoid surrogate a e / (1 + e)^2,
// would overflow to inf / inf = NaN for e > ~1e19, and past the cap it is a / e < 1e-18 a.
constexpr double kExpCap = 43.0;
inline float vexp(float x) {
  x = std::min(std::max(x, -87.3f), static_cast<float>(kExpCap));
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * (r * r) + r + 1.0f;
  int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return y * scale;
}
inline double vexp(double x) { return std::exp(std::min(x, kExpCap)); }

// ---- surrogate derivatives, the formulas of membra.functional.surrogate ---------------------
enum Surrogate : int {
  SIGMOID = 0, ATAN = 1, RECTANGULAR = 2, TRIANGLE = 3, PRECOMPUTED = 4, PRECOMPUTED_TRACE = 5
};

template <int SG, typename A>
inline A surrogate_grad(A u, A a) {
  if constexpr (SG == SIGMOID) {
    // a sig(au) (1 - sig(au)) = a e / (1 + e)^2 with e = exp(-au) (capped, see vexp): one
    // division, finite for every finite or infinite u
    A e = vexp(-(a * u));
    A d = A(1) + e;
    return a * e / (d * d);
  } else if constexpr (SG == ATAN) {
    A w = A(M_PI / 2.0) * a * u;
    return (a / A(2)) / (A(1) + w * w);
  } else if constexpr (SG == RECTANGULAR) {
    return std::abs(u) < A(1) / (A(2) * a) ? a : A(0);
  } else {
    // max(x, 0) with x first: a NaN x stays NaN, as torch.clamp(x, min=0) does
    return std::max(a - a * a * std::abs(u), A(0));
  }
}

template <typename A>
struct Params {
  A tau, v_th, v_reset, alpha, nd;  // nd = 1 when the reset is not detached
  A inv_tau;                        // 1 / tau, exact when tau is a power of two
  bool pow2;                        // tau is a power of two: q / tau == q * inv_tau exactly
};

// LIF charge with q / tau: a true division, or, when tau = 2^k, the multiplication by 2^-k,
// which gives the same correctly rounded value (both round the same real number q 2^-k) at a
// fraction of the cost. The kernels pick the variant once per call (DIV template flag).
template <bool LIF, typename A, bool DIV = true>
inline A charge(A v, A x, const Params<A>& p) {
  if constexpr (LIF) {
    if constexpr (DIV) {
      return v + (x - (v - p.v_reset)) / p.tau;
    } else {
      return v + (x - (v - p.v_reset)) * p.inv_tau;
    }
  } else {
    return v + x;
  }
}

template <typename A>
struct Fired {
  A s, v;  // the spike and the potential after the reset
};

// Fire and reset one potential h (see the header). nf = u - u is 0 for a finite u and NaN
// otherwise; it makes s NaN, and the hard reset, written as a select plus nf, then gives the
// reference's h (1 - s) + v_reset s: the same value for s = 0 or 1, NaN where s is NaN.
template <bool SOFT, typename A>
inline Fired<A> fire(A h, const Params<A>& p) {
  A u = h - p.v_th;
  A nf = u - u;
  bool fired = u >= A(0);
  A s = (fired ? A(1) : A(0)) + nf;
  if constexpr (SOFT) {
    return {s, h - p.v_th * s};
  } else {
    return {s, (fired ? p.v_reset : h) + nf};
  }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__AVX512F__)
#define MEMBRA_WIDE __attribute__((target("prefer-vector-width=512")))
#else
#define MEMBRA_WIDE
#endif

constexpr int64_t kMaxBlock = 1024;

int64_t grain_blocks(int64_t T, int64_t W) {
  // at least ~64k element-steps per task, so small inputs stay on one thread
  return std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, T * W));
}

// The per-block loops take restrict pointers and parameters by value: with pointers and
// parameters reached through a lambda's captures the compiler must assume that every store
// may change them, and the loop runs several times slower.

// ---- forward -----------------------------------------------------------------------------
// One block of n <= kMaxBlock neurons at offset m0, all T steps.
// U: the spike's storage type: S, or uint8_t for 0/1 spikes (s != 0: a NaN spike gives 1, as
// torch's float-to-bool conversion does). HO / VO: also write h_t / v_t of every step into
// ho / vo [T, M] (state type). DIV: the LIF charge divides by tau (else multiplies, tau = 2^k).
template <typename S, typename U, typename A, bool LIF, bool DIV, bool SOFT, bool HO, bool VO>
void forward_block(const S* __restrict x, const A* __restrict v0, U* __restrict s,
                   A* __restrict vT, A* __restrict ho, A* __restrict vo, int64_t T, int64_t M,
                   int64_t m0, int64_t n, const Params<A> p) {
  alignas(64) A v[kMaxBlock];
  for (int64_t j = 0; j < n; ++j) v[j] = v0[m0 + j];
  for (int64_t t = 0; t < T; ++t) {
    const S* __restrict xt = x + t * M + m0;
    U* __restrict st = s + t * M + m0;
    A* __restrict hot = HO ? ho + t * M + m0 : nullptr;
    A* __restrict vot = VO ? vo + t * M + m0 : nullptr;
    for (int64_t j = 0; j < n; ++j) {
      A h = charge<LIF, A, DIV>(v[j], load<S, A>(xt, j), p);
      Fired<A> f = fire<SOFT>(h, p);
      if constexpr (std::is_same_v<U, uint8_t>) {
        st[j] = static_cast<uint8_t>(f.s != A(0));
      } else {
        store<S, A>(st, j, f.s);
      }
      if constexpr (HO) hot[j] = h;
      if constexpr (VO) vot[j] = f.v;
      v[j] = f.v;
    }
  }
  for (int64_t j = 0; j < n; ++j) vT[m0 + j] = v[j];
}

template <typename S, typename U, typename A, bool LIF, bool SOFT, bool HO, bool VO>
void forward_impl(const S* x, const A* v0, U* s, A* vT, A* ho, A* vo, int64_t T, int64_t M,
                  Params<A> p) {
  const int64_t W = kMaxBlock;
  const int64_t nblocks = (M + W - 1) / W;
  const bool div = !(LIF && p.pow2);
  at::parallel_for(0, nblocks, grain_blocks(T, W), [=](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t m0 = b * W, n = std::min(W, M - m0);
      if (!LIF || div) {
        forward_block<S, U, A, LIF, true, SOFT, HO, VO>(x, v0, s, vT, ho, vo, T, M, m0, n, p);
      } else {
        forward_block<S, U, A, LIF, false, SOFT, HO, VO>(x, v0, s, vT, ho, vo, T, M, m0, n, p);
      }
    }
  });
}

// ---- backward ----------------------------------------------------------------------------
// 1. recompute h_t (and q_t = x_t - (v_{t-1} - v_reset) when tau needs a gradient) for the
// block into the [T, W] buffers hbuf / qbuf.
template <typename S, typename A, bool LIF, bool DIV, bool SOFT, bool NT>
MEMBRA_WIDE void recompute_block(const S* __restrict x, const A* __restrict v0, A* __restrict hbuf,
                     A* __restrict qbuf, int64_t T, int64_t M, int64_t W, int64_t m0, int64_t n,
                     const Params<A> p) {
  alignas(64) A v[kMaxBlock];
  for (int64_t j = 0; j < n; ++j) v[j] = v0[m0 + j];
  for (int64_t t = 0; t < T; ++t) {
    const S* __restrict xt = x + t * M + m0;
    A* __restrict ht = hbuf + t * W;
    A* __restrict qt = qbuf + t * W;
    for (int64_t j = 0; j < n; ++j) {
      A xv = load<S, A>(xt, j);
      A h = charge<LIF, A, DIV>(v[j], xv, p);
      if constexpr (NT) qt[j] = xv - (v[j] - p.v_reset);
      ht[j] = h;
      v[j] = fire<SOFT>(h, p).v;
    }
  }
}

// 2. walk back in time from gv = dL/dv_T (0 when gvT is null), reading gs and writing gx.
// Compute-heavy (a built-in surrogate's exp and division per element): with AVX-512 both
// steps of the backward run 512-bit vectors (MEMBRA_WIDE; GCC prefers 256 bits). The vector
// width changes no value: each lane does the same operations in the same order.
template <typename S, typename A, bool LIF, bool SOFT, int SG, bool NT>
MEMBRA_WIDE void walk_back_block(const S* __restrict gs, const A* __restrict gvT, S* __restrict gx,
                     A* __restrict gv0, A* __restrict gtau, const A* __restrict hbuf,
                     const A* __restrict qbuf, const A* __restrict dsg,
                     const A* __restrict ghx, const A* __restrict gvx, int64_t T, int64_t M,
                     int64_t W, int64_t m0, int64_t n, int64_t ldd, const Params<A> p) {
  // dsg points at this block's first neuron, rows ldd apart; hbuf / qbuf rows W apart
  constexpr bool PRE = SG >= PRECOMPUTED;
  constexpr bool TR = SG == PRECOMPUTED_TRACE;
  alignas(64) A gv[kMaxBlock];
  alignas(64) A gt[kMaxBlock];
  for (int64_t j = 0; j < n; ++j) {
    gv[j] = gvT != nullptr ? gvT[m0 + j] : A(0);
    gt[j] = A(0);
  }
  const A inv_tau = A(1) / p.tau;
  const A inv_tau2 = A(1) / (p.tau * p.tau);
  for (int64_t t = T - 1; t >= 0; --t) {
    const A* __restrict ht = hbuf + t * W;
    const A* __restrict qt = qbuf + t * W;
    const S* __restrict gst = gs + t * M + m0;
    S* __restrict gxt = gx + t * M + m0;
    const A* __restrict dsgt = PRE ? dsg + t * ldd : nullptr;
    const A* __restrict ghxt = TR ? ghx + t * M + m0 : nullptr;
    const A* __restrict gvxt = TR ? gvx + t * M + m0 : nullptr;
    for (int64_t j = 0; j < n; ++j) {
      A h = ht[j];
      A u = h - p.v_th;
      A sg;
      if constexpr (PRE) {
        sg = dsgt[j];
      } else {
        sg = surrogate_grad<SG>(u, p.alpha);
      }
      if constexpr (TR) gv[j] += gvxt[j];
      A dvdh;
      if constexpr (SOFT) {
        // a select, not nd * (...): a detached reset adds nothing even where sg is inf
        dvdh = A(1) + (p.nd != A(0) ? -p.v_th * sg : A(0));
      } else {  // 1 - s_t, NaN where h is not finite
        dvdh = ((u >= A(0) ? A(0) : A(1)) + (u - u)) +
               (p.nd != A(0) ? (p.v_reset - h) * sg : A(0));
      }
      A gh = load<S, A>(gst, j) * sg + gv[j] * dvdh;
      if constexpr (TR) gh += ghxt[j];
      if constexpr (LIF) {
        A g = gh * inv_tau;
        store<S, A>(gxt, j, g);
        gv[j] = gh - g;
        if constexpr (NT) gt[j] += -gh * qt[j] * inv_tau2;
      } else {
        store<S, A>(gxt, j, gh);
        gv[j] = gh;
      }
    }
  }
  for (int64_t j = 0; j < n; ++j) gv0[m0 + j] = gv[j];
  if constexpr (NT) {
    for (int64_t j = 0; j < n; ++j) gtau[m0 + j] = gt[j];
  }
}

// Neurons [mb, me) of x [T, M]; dsg (when PRE) holds their derivative as [T, me - mb] rows
// ldd apart (ldd = M, mb = 0 for the whole layer). hin, when given (and no tau gradient is
// wanted), is their h as [T, me - mb] with rows ldh apart: read instead of re-running the
// forward (ldh = M for a column block of the forward's saved h [T, M]).
template <typename S, typename A, bool LIF, bool SOFT, int SG, bool NT>
void backward_impl(const S* x, const A* v0, const S* gs, const A* gvT, S* gx, A* gv0, A* gtau,
                   const A* dsg, const A* ghx, const A* gvx, const A* hin, int64_t T,
                   int64_t M, int64_t mb, int64_t me, int64_t ldd, int64_t ldh, Params<A> p) {
  if (hin != nullptr && !NT) {
    const int64_t W = kMaxBlock, ld = me - mb;
    at::parallel_for(0, (ld + W - 1) / W, grain_blocks(T, W), [=](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t m0 = mb + b * W, n = std::min(W, me - m0);
        walk_back_block<S, A, LIF, SOFT, SG, false>(gs, gvT, gx, gv0, gtau, hin + (m0 - mb),
                                                    nullptr, dsg + (m0 - mb), ghx, gvx, T, M,
                                                    ldh, m0, n, ldd, p);
      }
    });
    return;
  }
  // block width: the [T, W] buffers of the recomputed forward stay in L2
  int64_t W = 16;
  while (W < kMaxBlock && 2 * W * T * int64_t(sizeof(A)) <= (int64_t(1) << 17)) W *= 2;
  const int64_t nblocks = (me - mb + W - 1) / W;
  at::parallel_for(0, nblocks, grain_blocks(T, W), [=](int64_t b0, int64_t b1) {
    std::vector<A> hbuf(static_cast<size_t>(T * W));
    std::vector<A> qbuf(NT ? static_cast<size_t>(T * W) : 0);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t m0 = mb + b * W;
      const int64_t n = std::min(W, me - m0);
      if (!LIF || !p.pow2) {
        recompute_block<S, A, LIF, true, SOFT, NT>(x, v0, hbuf.data(), qbuf.data(), T, M, W, m0,
                                                   n, p);
      } else {
        recompute_block<S, A, LIF, false, SOFT, NT>(x, v0, hbuf.data(), qbuf.data(), T, M, W,
                                                    m0, n, p);
      }
      walk_back_block<S, A, LIF, SOFT, SG, NT>(gs, gvT, gx, gv0, gtau, hbuf.data(),
                                               qbuf.data(), dsg ? dsg + (m0 - mb) : nullptr,
                                               ghx, gvx, T, M, W, m0, n, ldd, p);
    }
  });
}

// h_t of neurons [mb, me) of x [T, M] into h [T, me - mb] (the forward, re-run).
template <typename S, typename A, bool LIF, bool SOFT>
void recompute_impl(const S* x, const A* v0, A* h, int64_t T, int64_t M, int64_t mb,
                    int64_t me, Params<A> p) {
  const int64_t W = kMaxBlock, ld = me - mb;
  const int64_t nblocks = (ld + W - 1) / W;
  at::parallel_for(0, nblocks, grain_blocks(T, W), [=](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t m0 = mb + b * W, n = std::min(W, me - m0);
      if (!LIF || !p.pow2) {
        recompute_block<S, A, LIF, true, SOFT, false>(x, v0, h + (m0 - mb), nullptr, T, M, ld,
                                                      m0, n, p);
      } else {
        recompute_block<S, A, LIF, false, SOFT, false>(x, v0, h + (m0 - mb), nullptr, T, M,
                                                       ld, m0, n, p);
      }
    }
  });
}

// ---- dispatch on dtype and flags ---------------------------------------------------------
// dtype codes: 0 float32, 1 float64, 2 bfloat16; the state is float64 for float64 input and
// float32 otherwise (float16 input is upcast to float32 by the caller).
template <typename F>
bool dispatch_dtype(int dtype, F&& f) {
  if (dtype < 0 || dtype > 2) return false;
  switch (dtype) {
    case 0: f(static_cast<float*>(nullptr), static_cast<float*>(nullptr)); break;
    case 1: f(static_cast<double*>(nullptr), static_cast<double*>(nullptr)); break;
    case 2: f(static_cast<bf16*>(nullptr), static_cast<float*>(nullptr)); break;
    default: break;
  }
  return true;
}

template <typename A>
Params<A> make_params(double tau, double v_th, double v_reset, double alpha, bool detach) {
  // parameters are rounded to the state type first, as the reference does for Python scalars
  const A t = static_cast<A>(tau);
  int e = 0;
  const bool pow2 = std::isfinite(t) && t > A(0) && std::frexp(t, &e) == A(0.5) && e > -100;
  return Params<A>{t, static_cast<A>(v_th), static_cast<A>(v_reset), static_cast<A>(alpha),
                   detach ? A(0) : A(1), A(1) / t, pow2};
}

}  // namespace

// ---- C interface (loaded with ctypes by membra.kernels.cpu); returns 0 on success ----------

// Advise the kernel to back a new, untouched output buffer with transparent huge pages: the
// first touch of a fresh [T, M] output then costs one fault per 2 MiB instead of one per
// 4 KiB, which on virtual machines can cost more than the kernel itself. A hint only: it
// changes no value, and does nothing where THP is off or the range holds no aligned 2 MiB.
extern "C" int membra_advise_hugepages(void* p, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = uintptr_t(1) << 21;
  uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + huge - 1) & ~(huge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)) & ~(huge - 1);
  if (end > begin) return madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
  (void)p;
  (void)bytes;
  return 0;
}

// ---- output pool: large kernel outputs on reused, already mapped memory ------------------
// A fresh [T, M] output costs a page fault and the kernel's zeroing of every page on first
// touch, which on virtual machines takes longer than the neuron kernel itself. The kernels'
// outputs are therefore handed to torch as DLPack tensors whose deleter returns the block to
// this pool instead of to the system; the next output of the same (2 MiB-rounded) size reuses
// it, already mapped. A block is reused only after torch has freed every tensor on it (the
// deleter runs when the storage dies), so no value is ever shared. Idle blocks above the limit
// (membra_pool_limit, default 1 GiB) are given back to the system, oldest first.
namespace membra_pool {

constexpr size_t kHuge = size_t(1) << 21;

struct Block {
  void* p;
  size_t bytes;
};

struct Managed {
  DLManagedTensor m;
  int64_t shape[8];
  Block block;
};

// Never destroyed: a tensor freed during interpreter shutdown may still call the deleter.
struct State {
  std::mutex mu;
  std::deque<Block> idle;  // oldest first
  size_t idle_bytes = 0;
  size_t limit = size_t(1) << 30;
};
State& st = *new State();

void trim_locked(size_t keep) {
  while (st.idle_bytes > keep && !st.idle.empty()) {
    st.idle_bytes -= st.idle.front().bytes;
    std::free(st.idle.front().p);
    st.idle.pop_front();
  }
}

Block take(size_t want) {
  const size_t bytes = (want + kHuge - 1) / kHuge * kHuge;
  {
    std::lock_guard<std::mutex> g(st.mu);
    for (auto it = st.idle.rbegin(); it != st.idle.rend(); ++it) {
      if (it->bytes == bytes) {
        Block b = *it;
        st.idle.erase(std::next(it).base());
        st.idle_bytes -= bytes;
        return b;
      }
    }
  }
  void* p = std::aligned_alloc(kHuge, bytes);
  if (p != nullptr) membra_advise_hugepages(p, static_cast<int64_t>(bytes));
  return {p, bytes};
}

void give_back(Block b) {
  std::lock_guard<std::mutex> g(st.mu);
  if (b.bytes > st.limit) {
    std::free(b.p);
    return;
  }
  trim_locked(st.limit - b.bytes);
  st.idle.push_back(b);
  st.idle_bytes += b.bytes;
}

void deleter(DLManagedTensor* m) {
  Managed* h = static_cast<Managed*>(m->manager_ctx);
  give_back(h->block);
  delete h;
}

}  // namespace membra_pool

// A contiguous CPU tensor of the given shape on pool memory, as a DLManagedTensor* for
// torch.from_dlpack (dtype: DLPack code and bits); nullptr when out of memory or ndim > 8.
extern "C" void* membra_pool_tensor(int ndim, const int64_t* shape, int code, int bits) {
  if (ndim < 0 || ndim > 8 || bits <= 0 || bits % 8 != 0) return nullptr;
  size_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= static_cast<size_t>(shape[i]);
  const size_t bytes = std::max<size_t>(n * static_cast<size_t>(bits / 8), 1);
  membra_pool::Block b = membra_pool::take(bytes);
  if (b.p == nullptr) return nullptr;
  auto* h = new membra_pool::Managed();
  std::copy(shape, shape + ndim, h->shape);
  h->block = b;
  DLTensor& t = h->m.dl_tensor;
  t.data = b.p;
  t.device = DLDevice{kDLCPU, 0};
  t.ndim = ndim;
  t.dtype = DLDataType{static_cast<uint8_t>(code), static_cast<uint8_t>(bits), 1};
  t.shape = h->shape;
  t.strides = nullptr;
  t.byte_offset = 0;
  h->m.manager_ctx = h;
  h->m.deleter = membra_pool::deleter;
  return &h->m;
}

// Set the most idle pool memory kept (bytes; 0 gives every freed block back at once) and
// return the idle bytes held after trimming to it.
extern "C" int64_t membra_pool_limit(int64_t bytes) {
  std::lock_guard<std::mutex> g(membra_pool::st.mu);
  membra_pool::st.limit = static_cast<size_t>(std::max<int64_t>(bytes, 0));
  membra_pool::trim_locked(membra_pool::st.limit);
  return static_cast<int64_t>(membra_pool::st.idle_bytes);
}

// Calls run(lif_c, soft_c) with the neuron kind and reset as compile-time std::true_type /
// std::false_type values, so each of the four (LIF|IF) x (soft|hard) loops is its own
// instantiation.
template <class Run>
static void dispatch_kind(bool lif, bool soft, Run&& run) {
  using T_ = std::true_type;
  using F_ = std::false_type;
  if (lif) {
    soft ? run(T_{}, T_{}) : run(T_{}, F_{});
  } else {
    soft ? run(F_{}, T_{}) : run(F_{}, F_{});
  }
}
extern "C" int membra_neuron_forward(const void* x, const void* v0, void* s, void* vT, void* ho,
                                     void* vo, int64_t T, int64_t M, int dtype, int lif,
                                     int soft, double tau, double v_th, double v_reset) {
  if (vo != nullptr && ho == nullptr) return 3;  // the trace writes h and v together
  return dispatch_dtype(dtype, [&](auto* s_tag, auto* a_tag) {
    using S = std::remove_pointer_t<decltype(s_tag)>;
    using A = std::remove_pointer_t<decltype(a_tag)>;
    auto p = make_params<A>(tau, v_th, v_reset, 1.0, true);
    auto run = [&](auto lif_c, auto soft_c) {
      constexpr bool L = decltype(lif_c)::value;
      constexpr bool SO = decltype(soft_c)::value;
      auto impl = ho ? (vo ? &forward_impl<S, S, A, L, SO, true, true>
                           : &forward_impl<S, S, A, L, SO, true, false>)
                     : &forward_impl<S, S, A, L, SO, false, false>;
      impl(static_cast<const S*>(x), static_cast<const A*>(v0), static_cast<S*>(s),
           static_cast<A*>(vT), static_cast<A*>(ho), static_cast<A*>(vo), T, M, p);
    };
    dispatch_kind(lif, soft, run);
  }) ? 0 : 1;
}

// Inference: the forward without traces, spikes written as uint8 0/1 (s != 0) into s [T, M].
extern "C" int membra_neuron_forward_u8(const void* x, const void* v0, void* s, void* vT,
                                        int64_t T, int64_t M, int dtype, int lif, int soft,
                                        double tau, double v_th, double v_reset) {
  return dispatch_dtype(dtype, [&](auto* s_tag, auto* a_tag) {
    using S = std::remove_pointer_t<decltype(s_tag)>;
    using A = std::remove_pointer_t<decltype(a_tag)>;
    auto p = make_params<A>(tau, v_th, v_reset, 1.0, true);
    auto run = [&](auto lif_c, auto soft_c) {
      forward_impl<S, uint8_t, A, decltype(lif_c)::value, decltype(soft_c)::value, false,
                   false>(static_cast<const S*>(x), static_cast<const A*>(v0),
                          static_cast<uint8_t*>(s), static_cast<A*>(vT), nullptr, nullptr, T,
                          M, p);
    };
    dispatch_kind(lif, soft, run);
  }) ? 0 : 1;
}

// Backward of neurons [mb, me) of x [T, M] (the whole layer: 0, M); dsg, when given, is
// [T, me - mb]; gx, gv0 and gtau are written in those neurons only.
static int backward_cols(const void* x, const void* v0, const void* gs, const void* gvT, void* gx,
                  void* gv0, void* gtau, const void* dsg, const void* ghx, const void* gvx,
                  const void* hin, int64_t ldh, int64_t T, int64_t M, int64_t mb, int64_t me,
                  int dtype, int lif, int soft, int surrogate, double alpha, int detach,
                  double tau, double v_th, double v_reset) {
  if (surrogate < 0 || surrogate > PRECOMPUTED_TRACE) return 2;
  if (hin != nullptr && surrogate != PRECOMPUTED) return 3;
  if (surrogate >= PRECOMPUTED && dsg == nullptr) return 3;
  if (surrogate == PRECOMPUTED_TRACE && (ghx == nullptr || gvx == nullptr)) return 3;
  if (mb < 0 || me > M || mb > me) return 4;
  if (hin != nullptr && ldh < me - mb) return 4;
  return dispatch_dtype(dtype, [&](auto* s_tag, auto* a_tag) {
    using S = std::remove_pointer_t<decltype(s_tag)>;
    using A = std::remove_pointer_t<decltype(a_tag)>;
    auto p = make_params<A>(tau, v_th, v_reset, alpha, detach);
    auto run = [&](auto lif_c, auto soft_c, auto sg_c) {
      constexpr bool L = decltype(lif_c)::value;
      constexpr bool SO = decltype(soft_c)::value;
      constexpr int G = decltype(sg_c)::value;
      auto impl = (L && gtau != nullptr) ? &backward_impl<S, A, L, SO, G, L>
                                         : &backward_impl<S, A, L, SO, G, false>;
      impl(
          static_cast<const S*>(x), static_cast<const A*>(v0),
          static_cast<const S*>(gs), static_cast<const A*>(gvT),
          static_cast<S*>(gx), static_cast<A*>(gv0), static_cast<A*>(gtau),
          static_cast<const A*>(dsg), static_cast<const A*>(ghx), static_cast<const A*>(gvx),
          static_cast<const A*>(hin), T, M, mb, me, dsg == nullptr || surrogate == PRECOMPUTED_TRACE ? M : me - mb, ldh, p);
    };
    auto by_surrogate = [&](auto lif_c, auto soft_c) {
      switch (surrogate) {
        case SIGMOID: run(lif_c, soft_c, std::integral_constant<int, SIGMOID>{}); break;
        case ATAN: run(lif_c, soft_c, std::integral_constant<int, ATAN>{}); break;
        case RECTANGULAR: run(lif_c, soft_c, std::integral_constant<int, RECTANGULAR>{}); break;
        case TRIANGLE: run(lif_c, soft_c, std::integral_constant<int, TRIANGLE>{}); break;
        case PRECOMPUTED: run(lif_c, soft_c, std::integral_constant<int, PRECOMPUTED>{}); break;
        default: run(lif_c, soft_c, std::integral_constant<int, PRECOMPUTED_TRACE>{}); break;
      }
    };
    dispatch_kind(lif, soft, by_surrogate);
  }) ? 0 : 1;
}

extern "C" int membra_neuron_backward(const void* x, const void* v0, const void* gs,
                                      const void* gvT, void* gx, void* gv0, void* gtau,
                                      const void* dsg, const void* ghx, const void* gvx,
                                      int64_t T, int64_t M, int dtype, int lif, int soft,
                                      int surrogate, double alpha, int detach, double tau,
                                      double v_th, double v_reset) {
  return backward_cols(x, v0, gs, gvT, gx, gv0, gtau, dsg, ghx, gvx, nullptr, 0, T, M, 0, M, dtype,
                       lif, soft, surrogate, alpha, detach, tau, v_th, v_reset);
}

// Backward of neurons [mb, me) with their surrogate derivative given as dsg [T, me - mb]
// (PRECOMPUTED): a custom surrogate evaluated block by block while the block is in cache.
// hin (or null): their h [T, me - mb], rows ldh apart (at least me - mb), read instead of
// recomputed (ignored when gtau is wanted).
extern "C" int membra_neuron_backward_cols(const void* x, const void* v0, const void* gs,
                                           const void* gvT, void* gx, void* gv0, void* gtau,
                                           const void* dsg, const void* hin, int64_t ldh,
                                           int64_t T,
                                           int64_t M, int64_t mb, int64_t me, int dtype, int lif,
                                           int soft, int detach, double tau, double v_th,
                                           double v_reset) {
  return backward_cols(x, v0, gs, gvT, gx, gv0, gtau, dsg, nullptr, nullptr,
                       gtau != nullptr ? nullptr : hin, ldh, T, M, mb, me, dtype, lif, soft,
                       PRECOMPUTED, 1.0, detach, tau, v_th, v_reset);
}

// The charged potential h_t of neurons [mb, me) of x [T, M] into h [T, me - mb].
extern "C" int membra_neuron_recompute_h(const void* x, const void* v0, void* h, int64_t T,
                                         int64_t M, int64_t mb, int64_t me, int dtype, int lif,
                                         int soft, double tau, double v_th, double v_reset) {
  if (mb < 0 || me > M || mb > me) return 4;
  return dispatch_dtype(dtype, [&](auto* s_tag, auto* a_tag) {
    using S = std::remove_pointer_t<decltype(s_tag)>;
    using A = std::remove_pointer_t<decltype(a_tag)>;
    auto p = make_params<A>(tau, v_th, v_reset, 1.0, true);
    auto run = [&](auto lif_c, auto soft_c) {
      recompute_impl<S, A, decltype(lif_c)::value, decltype(soft_c)::value>(
          static_cast<const S*>(x), static_cast<const A*>(v0), static_cast<A*>(h), T, M, mb,
          me, p);
    };
    dispatch_kind(lif, soft, run);
  }) ? 0 : 1;
}
