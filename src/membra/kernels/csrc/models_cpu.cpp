// Fused CubaLIF and ALIF kernels for CPU: one forward and one BPTT backward over x[T, M],
// two state values per neuron (v and c: the synaptic current i of CubaLIF, the adaptation a
// of ALIF). Equations: membra.functional.models (rho = 1 - 1/tau_syn or 1 - 1/tau_adapt):
//   CubaLIF  i_t = i_{t-1} rho + x_t;  h_t = v_{t-1} + (i_t - (v_{t-1} - v_reset)) / tau
//            s_t = H(h_t - v_th);      v_t = reset(h_t, s_t) as LIF
//   ALIF     theta_t = v_th + beta a_t; h_t = v_{t-1} + (x_t - (v_{t-1} - v_reset)) / tau
//            s_t = H(h_t - theta_t);   v_t = h_t - theta_t s_t (soft) | as LIF (hard)
//            a_{t+1} = a_t rho + s_t
// Backward, t = T..1, carries gv = dL/dv_t and gc = dL/dc (the c the step produced):
//   CubaLIF  gh = gs sg + gv dv/dh (as LIF); gi = gh / tau + gc; gx_t = gi;
//            gv <- gh - gh / tau; gc <- gi rho
//   ALIF     gS = gs + gc + nd gv dv/ds, dv/ds = -theta (soft) | v_reset - h (hard)
//            gu = gS sg; gh = gu + gv (1 (soft) | 1 - s (hard)); gtheta = -gu - gv s (soft)
//            gc <- gc rho + beta gtheta; gx_t = gh / tau; gv <- gh - gh / tau
// Surrogate codes as neuron_cpu.cpp: 0-3 the built-ins inline; 4 PRECOMPUTED: sg read from
// dsg [T, M] (a custom surrogate's derivative at h_t - theta_t, evaluated by torch over all
// steps at once); 5 PRECOMPUTED_TRACE: as 4, and the trace's gradients dL/dh_t, dL/dv_t (ghx,
// gvx [T, M]) join the recurrence: gv += gvx_t before step t, gh += ghx_t.
// The forward can also write h_t and theta_t (what a precomputed derivative is evaluated at;
// theta only for ALIF, CubaLIF's is v_th) and v_t of every step (the membrane trace).
// Memory traffic as the LIF kernel: the forward reads x and writes s; the backward recomputes
// h (and theta) for a block of neurons into cache-resident [T, W] buffers, then walks back.
//
// The storage types, the surrogate derivatives, the spike/reset rule (NaN spikes where the
// potential is not finite) and the threading helpers are those of neuron_cpu.cpp, included
// here so both libraries compute the same formulas (its extern "C" entries are unused here).

#include "neuron_cpu.cpp"

namespace {

// the codes of membra.functional.NeuronKind (0 LIF and 1 IF run neuron_cpu.cpp's kernels)
enum Model : int { CUBA = 2, ALIF_ = 3 };

template <typename A>
struct MParams {
  Params<A> p;   // tau, v_th, v_reset, alpha, nd as LIF
  A rho, beta;   // kept fraction of c per step; ALIF threshold gain
};

template <typename A>
struct Stepped {
  A s, h, theta;  // the spike, the charged potential and the threshold it was tested against
};

// One step of one neuron: updates v and c in place.
template <int MODEL, bool SOFT, typename A>
inline Stepped<A> model_step(A& v, A& c, A x, const MParams<A>& m) {
  if constexpr (MODEL == CUBA) {
    c = c * m.rho + x;
    A h = charge<true>(v, c, m.p);
    Fired<A> f = fire<SOFT>(h, m.p);
    v = f.v;
    return {f.s, h, m.p.v_th};
  } else {
    Params<A> q = m.p;
    q.v_th = m.p.v_th + m.beta * c;
    A h = charge<true>(v, x, m.p);
    Fired<A> f = fire<SOFT>(h, q);
    v = f.v;
    c = c * m.rho + f.s;
    return {f.s, h, q.v_th};
  }
}

// What both C entries read and write, typed: x [T, M], the initial states v0, c0 [M], and
// the outputs y [T, M], yv, yc [M] (forward: s, v_T, c_T; backward: gx, gv0, gc0).
template <typename S, typename A>
struct Io {
  const S* x;
  const A* v0;
  const A* c0;
  S* y;
  A* yv;
  A* yc;

  // v, c of neurons [m0, m0 + n) into a block's registers
  void initial_states(A* v, A* c, int64_t m0, int64_t n) const {
    for (int64_t j = 0; j < n; ++j) {
      v[j] = v0[m0 + j];
      c[j] = c0[m0 + j];
    }
  }
  // a block's v, c (or their gradients) into yv, yc of neurons [m0, m0 + n)
  void final_states(const A* v, const A* c, int64_t m0, int64_t n) const {
    for (int64_t j = 0; j < n; ++j) {
      yv[m0 + j] = v[j];
      yc[m0 + j] = c[j];
    }
  }
};

template <typename S, typename A>
Io<S, A> typed(const void* x, const void* v0, const void* c0, void* y, void* yv, void* yc) {
  return {static_cast<const S*>(x), static_cast<const A*>(v0), static_cast<const A*>(c0),
          static_cast<S*>(y), static_cast<A*>(yv), static_cast<A*>(yc)};
}

// The per-block loops copy the pointers into restrict locals (see neuron_cpu.cpp: pointers
// reached through a struct or a capture would make the compiler assume aliasing).
// HT: also write h_t (and theta_t for ALIF) into ho / tho; VO: also write v_t into vo.
template <typename S, typename A, int MODEL, bool SOFT, bool HT, bool VO>
void mforward_block(const Io<S, A> io, A* __restrict ho, A* __restrict tho, A* __restrict vo,
                    int64_t T, int64_t M, int64_t m0, int64_t n, const MParams<A> m) {
  const S* __restrict x = io.x;
  S* __restrict s = io.y;
  alignas(64) A v[kMaxBlock];
  alignas(64) A c[kMaxBlock];
  io.initial_states(v, c, m0, n);
  for (int64_t t = 0; t < T; ++t) {
    const S* __restrict xt = x + t * M + m0;
    S* __restrict st = s + t * M + m0;
    A* __restrict hot = HT ? ho + t * M + m0 : nullptr;
    A* __restrict thot = (HT && MODEL == ALIF_) ? tho + t * M + m0 : nullptr;
    A* __restrict vot = VO ? vo + t * M + m0 : nullptr;
    for (int64_t j = 0; j < n; ++j) {
      Stepped<A> r = model_step<MODEL, SOFT>(v[j], c[j], load<S, A>(xt, j), m);
      store<S, A>(st, j, r.s);
      if constexpr (HT) hot[j] = r.h;
      if constexpr (HT && MODEL == ALIF_) thot[j] = r.theta;
      if constexpr (VO) vot[j] = v[j];
    }
  }
  io.final_states(v, c, m0, n);
}

// The gradients flowing in: gs [T, M], gvT, gcT [M], and (codes 4, 5) dsg, ghx, gvx [T, M].
template <typename S, typename A>
struct Grads {
  const S* gs;
  const A* gvT;
  const A* gcT;
  const A* dsg;
  const A* ghx;
  const A* gvx;
};

template <typename S, typename A, int MODEL, bool SOFT, int SG>
void mbackward_block(const Io<S, A> io, const Grads<S, A> gi, A* __restrict hbuf,
                     A* __restrict tbuf, int64_t T, int64_t M, int64_t W, int64_t m0,
                     int64_t n, const MParams<A> m) {
  constexpr bool PRE = SG >= PRECOMPUTED;
  constexpr bool TR = SG == PRECOMPUTED_TRACE;
  const S* __restrict x = io.x;
  const S* __restrict gs = gi.gs;
  S* __restrict gx = io.y;
  alignas(64) A v[kMaxBlock];
  alignas(64) A c[kMaxBlock];
  io.initial_states(v, c, m0, n);
  for (int64_t t = 0; t < T; ++t) {  // recompute h_t (and theta_t) into the block buffers
    const S* __restrict xt = x + t * M + m0;
    A* __restrict ht = hbuf + t * W;
    A* __restrict tt = tbuf + t * W;
    for (int64_t j = 0; j < n; ++j) {
      Stepped<A> r = model_step<MODEL, SOFT>(v[j], c[j], load<S, A>(xt, j), m);
      ht[j] = r.h;
      if constexpr (MODEL == ALIF_) tt[j] = r.theta;
    }
  }
  alignas(64) A gv[kMaxBlock];
  alignas(64) A gc[kMaxBlock];
  for (int64_t j = 0; j < n; ++j) {
    gv[j] = gi.gvT[m0 + j];
    gc[j] = gi.gcT[m0 + j];
  }
  const A inv_tau = A(1) / m.p.tau;
  const A nd = m.p.nd;
  for (int64_t t = T - 1; t >= 0; --t) {
    const A* __restrict ht = hbuf + t * W;
    const A* __restrict tt = tbuf + t * W;
    const S* __restrict gst = gs + t * M + m0;
    S* __restrict gxt = gx + t * M + m0;
    const A* __restrict dsgt = PRE ? gi.dsg + t * M + m0 : nullptr;
    const A* __restrict ghxt = TR ? gi.ghx + t * M + m0 : nullptr;
    const A* __restrict gvxt = TR ? gi.gvx + t * M + m0 : nullptr;
    for (int64_t j = 0; j < n; ++j) {
      A h = ht[j];
      A theta = MODEL == ALIF_ ? tt[j] : m.p.v_th;
      A u = h - theta;
      A sg;
      if constexpr (PRE) {
        sg = dsgt[j];
      } else {
        sg = surrogate_grad<SG>(u, m.p.alpha);
      }
      if constexpr (TR) gv[j] += gvxt[j];
      if constexpr (MODEL == CUBA) {
        A dvdh;
        if constexpr (SOFT) {
          // a select, not nd * (...): a detached reset adds nothing even where sg is inf
          dvdh = A(1) + (nd != A(0) ? -m.p.v_th * sg : A(0));
        } else {
          dvdh = ((u >= A(0) ? A(0) : A(1)) + (u - u)) +
                 (nd != A(0) ? (m.p.v_reset - h) * sg : A(0));
        }
        A gh = load<S, A>(gst, j) * sg + gv[j] * dvdh;
        if constexpr (TR) gh += ghxt[j];
        A g = gh * inv_tau;
        A gcur = g + gc[j];
        store<S, A>(gxt, j, gcur);
        gv[j] = gh - g;
        gc[j] = gcur * m.rho;
      } else {
        A nf = u - u;
        A s = (u >= A(0) ? A(1) : A(0)) + nf;
        A dvds, dvdh, gth_reset;
        if constexpr (SOFT) {
          dvds = -theta;
          dvdh = A(1);
          gth_reset = -gv[j] * s;
        } else {
          dvds = m.p.v_reset - h;
          dvdh = (A(1) - s);
          gth_reset = A(0);
        }
        A gS = load<S, A>(gst, j) + gc[j] + nd * (gv[j] * dvds);
        A gu = gS * sg;
        A gh = gu + gv[j] * dvdh;
        if constexpr (TR) gh += ghxt[j];
        A gth = -gu + gth_reset;
        gc[j] = gc[j] * m.rho + m.beta * gth;
        A g = gh * inv_tau;
        store<S, A>(gxt, j, g);
        gv[j] = gh - g;
      }
    }
  }
  io.final_states(gv, gc, m0, n);
}

template <typename A>
MParams<A> make_mparams(double tau, double rho, double beta, double v_th, double v_reset,
                        double alpha, bool detach) {
  return MParams<A>{make_params<A>(tau, v_th, v_reset, alpha, detach), static_cast<A>(rho),
                    static_cast<A>(beta)};
}

// Calls f.template operator()<S, A, MODEL, SOFT>() for the runtime dtype, model and reset;
// false for an unknown dtype or model.
template <typename F>
bool dispatch_model(int dtype, int model, int soft, F&& f) {
  if (model != CUBA && model != ALIF_) return false;
  return dispatch_dtype(dtype, [&](auto* s_tag, auto* a_tag) {
    using S = std::remove_pointer_t<decltype(s_tag)>;
    using A = std::remove_pointer_t<decltype(a_tag)>;
    if (model == CUBA) {
      soft ? f.template operator()<S, A, CUBA, true>() : f.template operator()<S, A, CUBA, false>();
    } else {
      soft ? f.template operator()<S, A, ALIF_, true>()
           : f.template operator()<S, A, ALIF_, false>();
    }
  });
}

}  // namespace

// ho, tho (ALIF only), vo: nullptr, or [T, M] outputs of h_t, theta_t, v_t (state type);
// the trace (vo) needs ho. Returns 0 on success.
extern "C" int membra_model_forward(int model, const void* x, const void* v0, const void* c0,
                                    void* s, void* vT, void* cT, void* ho, void* tho, void* vo,
                                    int64_t T, int64_t M, int dtype, int soft, double tau,
                                    double rho, double beta, double v_th, double v_reset) {
  if ((vo != nullptr && ho == nullptr) || (ho != nullptr && model == ALIF_ && tho == nullptr))
    return 3;
  return dispatch_model(dtype, model, soft, [&]<typename S, typename A, int MO, bool SO>() {
    const auto mp = make_mparams<A>(tau, rho, beta, v_th, v_reset, 1.0, true);
    const Io<S, A> io = typed<S, A>(x, v0, c0, s, vT, cT);
    A* hp = static_cast<A*>(ho);
    A* thp = static_cast<A*>(tho);
    A* vp = static_cast<A*>(vo);
    auto block = ho ? (vo ? &mforward_block<S, A, MO, SO, true, true>
                          : &mforward_block<S, A, MO, SO, true, false>)
                    : &mforward_block<S, A, MO, SO, false, false>;
    const int64_t W = kMaxBlock;
    const int64_t nb = (M + W - 1) / W;
    at::parallel_for(0, nb, grain_blocks(T, W), [=](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        block(io, hp, thp, vp, T, M, b * W, std::min(W, M - b * W), mp);
      }
    });
  }) ? 0 : 1;
}

// surrogate: a built-in's code, PRECOMPUTED (dsg given) or PRECOMPUTED_TRACE (dsg, ghx, gvx).
extern "C" int membra_model_backward(int model, const void* x, const void* v0, const void* c0,
                                     const void* gs, const void* gvT, const void* gcT,
                                     const void* dsg, const void* ghx, const void* gvx, void* gx,
                                     void* gv0, void* gc0, int64_t T, int64_t M, int dtype,
                                     int soft, int surrogate, double alpha, int detach,
                                     double tau, double rho, double beta, double v_th,
                                     double v_reset) {
  if (surrogate < SIGMOID || surrogate > PRECOMPUTED_TRACE) return 2;
  if (surrogate >= PRECOMPUTED && dsg == nullptr) return 3;
  if (surrogate == PRECOMPUTED_TRACE && (ghx == nullptr || gvx == nullptr)) return 3;
  return dispatch_model(dtype, model, soft, [&]<typename S, typename A, int MO, bool SO>() {
    const auto mp = make_mparams<A>(tau, rho, beta, v_th, v_reset, alpha, detach);
    const Io<S, A> io = typed<S, A>(x, v0, c0, gx, gv0, gc0);
    const Grads<S, A> gi{static_cast<const S*>(gs), static_cast<const A*>(gvT),
                         static_cast<const A*>(gcT), static_cast<const A*>(dsg),
                         static_cast<const A*>(ghx), static_cast<const A*>(gvx)};
    auto run = [&](auto sg_c) {
      constexpr int G = decltype(sg_c)::value;
      constexpr int64_t kBufs = MO == ALIF_ ? 2 : 1;  // h, and theta for ALIF
      int64_t W = 16;  // the [T, W] buffers stay in L2
      while (W < kMaxBlock && 2 * kBufs * W * T * int64_t(sizeof(A)) <= (int64_t(1) << 18))
        W *= 2;
      const int64_t nb = (M + W - 1) / W;
      at::parallel_for(0, nb, grain_blocks(T, W), [=](int64_t b0, int64_t b1) {
        std::vector<A> buf(static_cast<size_t>(kBufs * T * W));
        for (int64_t b = b0; b < b1; ++b) {
          mbackward_block<S, A, MO, SO, G>(io, gi, buf.data(), buf.data() + (kBufs - 1) * T * W,
                                           T, M, W, b * W, std::min(W, M - b * W), mp);
        }
      });
    };
    switch (surrogate) {
      case SIGMOID: run(std::integral_constant<int, SIGMOID>{}); break;
      case ATAN: run(std::integral_constant<int, ATAN>{}); break;
      case RECTANGULAR: run(std::integral_constant<int, RECTANGULAR>{}); break;
      case TRIANGLE: run(std::integral_constant<int, TRIANGLE>{}); break;
      case PRECOMPUTED: run(std::integral_constant<int, PRECOMPUTED>{}); break;
      default: run(std::integral_constant<int, PRECOMPUTED_TRACE>{}); break;
    }
  }) ? 0 : 1;
}

// ---- Delay: a per-neuron shift in time ------------------------------------------------------
// dst[t, r, n] = src[t + off[n], r, n] over the sequence src = a [La, R, N] followed by
// b [Lb, R, N], and 0 where t + off[n] is outside [0, La + Lb). An exact copy of each element's
// bits (E: an unsigned integer of the element's size), so NaN and inf pass unchanged.
// Delay's forward (y_t = x_{t-d}: a = history, b = x, off = D - d) and its backward (the
// gradients of x and of the history: a = grad y, off = d and d - D) are this one copy.
namespace {

// A row (t, r) of dst reads each neuron from one of K = max(off) - min(off) + 1 source rows:
// a table of those K row pointers (a zero row where the step is outside the sequence) and a
// per-neuron index into it make the inner loop two loads and a store, without branches.
template <typename E>
void shift_rows(const E* a, int64_t La, const E* b, int64_t Lb, const int64_t* off, E* dst,
                int64_t T, int64_t R, int64_t N) {
  if (N == 0) return;
  const int64_t lo = *std::min_element(off, off + N);
  const int64_t K = *std::max_element(off, off + N) - lo + 1;
  std::vector<uint32_t> sel_v(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) sel_v[n] = static_cast<uint32_t>(off[n] - lo);
  const std::vector<E> zero_v(static_cast<size_t>(N), E(0));
  const uint32_t* sel = sel_v.data();
  const E* zero = zero_v.data();
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / N);
  // rows in the order (r, t): the K source rows of step t are mostly those of step t - 1,
  // still in cache, so each source row comes from memory about once
  at::parallel_for(0, T * R, grain, [=](int64_t i0, int64_t i1) {
    std::vector<const E*> rows(static_cast<size_t>(K));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = i / T, t = i % T;
      for (int64_t q = 0; q < K; ++q) {
        const int64_t k = t + lo + q;
        rows[q] = k < 0 || k >= La + Lb ? zero
                  : (k < La ? a + (k * R + r) * N : b + ((k - La) * R + r) * N);
      }
      const E* const* __restrict src = rows.data();
      const uint32_t* __restrict si = sel;
      E* __restrict d = dst + (t * R + r) * N;
      for (int64_t n = 0; n < N; ++n) d[n] = src[si[n]][n];
    }
  });
}

}  // namespace

// esize: bytes per element (2, 4 or 8). Returns 0 on success.
extern "C" int membra_delay_shift(const void* a, int64_t La, const void* b, int64_t Lb,
                                  const int64_t* off, void* dst, int64_t T, int64_t R, int64_t N,
                                  int esize) {
  if (La < 0 || Lb < 0 || T < 0 || R < 0 || N < 0) return 4;
  switch (esize) {
    case 2:
      shift_rows(static_cast<const uint16_t*>(a), La, static_cast<const uint16_t*>(b), Lb, off,
                 static_cast<uint16_t*>(dst), T, R, N);
      return 0;
    case 4:
      shift_rows(static_cast<const uint32_t*>(a), La, static_cast<const uint32_t*>(b), Lb, off,
                 static_cast<uint32_t*>(dst), T, R, N);
      return 0;
    case 8:
      shift_rows(static_cast<const uint64_t*>(a), La, static_cast<const uint64_t*>(b), Lb, off,
                 static_cast<uint64_t*>(dst), T, R, N);
      return 0;
    default:
      return 2;
  }
}
