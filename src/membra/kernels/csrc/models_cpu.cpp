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
// Memory traffic as the LIF kernel: the forward reads x and writes s; the backward recomputes
// h (and a) for a block of neurons into cache-resident [T, W] buffers, then walks back.
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

// One step of one neuron: updates v and c in place, returns the spike; h (and the c the step
// used, for ALIF) are handed out for the backward's recomputation.
template <int MODEL, bool SOFT, typename A>
inline A model_step(A& v, A& c, A x, const MParams<A>& m, A& h_out, A& c_used) {
  if constexpr (MODEL == CUBA) {
    c = c * m.rho + x;
    A h = charge<true>(v, c, m.p);
    Fired<A> f = fire<SOFT>(h, m.p);
    h_out = h;
    c_used = c;
    v = f.v;
    return f.s;
  } else {
    Params<A> q = m.p;
    q.v_th = m.p.v_th + m.beta * c;
    A h = charge<true>(v, x, m.p);
    Fired<A> f = fire<SOFT>(h, q);
    h_out = h;
    c_used = c;
    v = f.v;
    c = c * m.rho + f.s;
    return f.s;
  }
}

template <typename S, typename A, int MODEL, bool SOFT>
void mforward_block(const S* __restrict x, const A* __restrict v0, const A* __restrict c0,
                    S* __restrict s, A* __restrict vT, A* __restrict cT, int64_t T, int64_t M,
                    int64_t m0, int64_t n, const MParams<A> m) {
  alignas(64) A v[kMaxBlock];
  alignas(64) A c[kMaxBlock];
  for (int64_t j = 0; j < n; ++j) {
    v[j] = v0[m0 + j];
    c[j] = c0[m0 + j];
  }
  for (int64_t t = 0; t < T; ++t) {
    const S* __restrict xt = x + t * M + m0;
    S* __restrict st = s + t * M + m0;
    for (int64_t j = 0; j < n; ++j) {
      A h, cu;
      store<S, A>(st, j, model_step<MODEL, SOFT>(v[j], c[j], load<S, A>(xt, j), m, h, cu));
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    vT[m0 + j] = v[j];
    cT[m0 + j] = c[j];
  }
}

template <typename S, typename A, int MODEL, bool SOFT, int SG>
void mbackward_block(const S* __restrict x, const A* __restrict v0, const A* __restrict c0,
                     const S* __restrict gs, const A* __restrict gvT, const A* __restrict gcT,
                     S* __restrict gx, A* __restrict gv0, A* __restrict gc0, A* __restrict hbuf,
                     A* __restrict cbuf, int64_t T, int64_t M, int64_t W, int64_t m0,
                     int64_t n, const MParams<A> m) {
  alignas(64) A v[kMaxBlock];
  alignas(64) A c[kMaxBlock];
  for (int64_t j = 0; j < n; ++j) {
    v[j] = v0[m0 + j];
    c[j] = c0[m0 + j];
  }
  for (int64_t t = 0; t < T; ++t) {  // recompute h_t (and a_t) into the block buffers
    const S* __restrict xt = x + t * M + m0;
    A* __restrict ht = hbuf + t * W;
    A* __restrict ct = cbuf + t * W;
    for (int64_t j = 0; j < n; ++j) {
      A h, cu;
      model_step<MODEL, SOFT>(v[j], c[j], load<S, A>(xt, j), m, h, cu);
      ht[j] = h;
      ct[j] = cu;
    }
  }
  alignas(64) A gv[kMaxBlock];
  alignas(64) A gc[kMaxBlock];
  for (int64_t j = 0; j < n; ++j) {
    gv[j] = gvT[m0 + j];
    gc[j] = gcT[m0 + j];
  }
  const A inv_tau = A(1) / m.p.tau;
  const A nd = m.p.nd;
  for (int64_t t = T - 1; t >= 0; --t) {
    const A* __restrict ht = hbuf + t * W;
    const A* __restrict ct = cbuf + t * W;
    const S* __restrict gst = gs + t * M + m0;
    S* __restrict gxt = gx + t * M + m0;
    for (int64_t j = 0; j < n; ++j) {
      A h = ht[j];
      if constexpr (MODEL == CUBA) {
        A u = h - m.p.v_th;
        A sg = surrogate_grad<SG>(u, m.p.alpha);
        A dvdh;
        if constexpr (SOFT) {
          dvdh = A(1) + nd * (-m.p.v_th * sg);
        } else {
          dvdh = ((u >= A(0) ? A(0) : A(1)) + (u - u)) + nd * ((m.p.v_reset - h) * sg);
        }
        A gh = load<S, A>(gst, j) * sg + gv[j] * dvdh;
        A g = gh * inv_tau;
        A gi = g + gc[j];
        store<S, A>(gxt, j, gi);
        gv[j] = gh - g;
        gc[j] = gi * m.rho;
      } else {
        A theta = m.p.v_th + m.beta * ct[j];
        A u = h - theta;
        A sg = surrogate_grad<SG>(u, m.p.alpha);
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
        A gth = -gu + gth_reset;
        gc[j] = gc[j] * m.rho + m.beta * gth;
        A g = gh * inv_tau;
        store<S, A>(gxt, j, g);
        gv[j] = gh - g;
      }
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    gv0[m0 + j] = gv[j];
    gc0[m0 + j] = gc[j];
  }
}

template <typename A>
MParams<A> make_mparams(double tau, double rho, double beta, double v_th, double v_reset,
                        double alpha, bool detach) {
  return MParams<A>{make_params<A>(tau, v_th, v_reset, alpha, detach), static_cast<A>(rho),
                    static_cast<A>(beta)};
}

// Calls f(model_c, soft_c) with compile-time constants for the runtime flags.
template <typename F>
void dispatch_model(int model, int soft, F&& f) {
  using T_ = std::true_type;
  using F_ = std::false_type;
  using Cu = std::integral_constant<int, CUBA>;
  using Al = std::integral_constant<int, ALIF_>;
  if (model == CUBA) {
    soft ? f(Cu{}, T_{}) : f(Cu{}, F_{});
  } else {
    soft ? f(Al{}, T_{}) : f(Al{}, F_{});
  }
}

}  // namespace

extern "C" int membra_model_forward(int model, const void* x, const void* v0, const void* c0,
                                    void* s, void* vT, void* cT, int64_t T, int64_t M,
                                    int dtype, int soft, double tau, double rho, double beta,
                                    double v_th, double v_reset) {
  if (model != CUBA && model != ALIF_) return 3;
  return dispatch_dtype(dtype, [&](auto* s_tag, auto* a_tag) {
    using S = std::remove_pointer_t<decltype(s_tag)>;
    using A = std::remove_pointer_t<decltype(a_tag)>;
    auto mp = make_mparams<A>(tau, rho, beta, v_th, v_reset, 1.0, true);
    dispatch_model(model, soft, [&](auto model_c, auto soft_c) {
      constexpr int MO = decltype(model_c)::value;
      constexpr bool SO = decltype(soft_c)::value;
      const S* xp = static_cast<const S*>(x);
      const A* v0p = static_cast<const A*>(v0);
      const A* c0p = static_cast<const A*>(c0);
      S* sp = static_cast<S*>(s);
      A* vTp = static_cast<A*>(vT);
      A* cTp = static_cast<A*>(cT);
      const int64_t W = kMaxBlock;
      const int64_t nb = (M + W - 1) / W;
      at::parallel_for(0, nb, grain_blocks(T, W), [=](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          mforward_block<S, A, MO, SO>(xp, v0p, c0p, sp, vTp, cTp, T, M, b * W,
                                       std::min(W, M - b * W), mp);
        }
      });
    });
  }) ? 0 : 1;
}

extern "C" int membra_model_backward(int model, const void* x, const void* v0, const void* c0,
                                     const void* gs, const void* gvT, const void* gcT, void* gx,
                                     void* gv0, void* gc0, int64_t T, int64_t M, int dtype,
                                     int soft, int surrogate, double alpha, int detach,
                                     double tau, double rho, double beta, double v_th,
                                     double v_reset) {
  if (model != CUBA && model != ALIF_) return 3;
  if (surrogate < SIGMOID || surrogate > TRIANGLE) return 2;  // built-ins only (see models.py)
  return dispatch_dtype(dtype, [&](auto* s_tag, auto* a_tag) {
    using S = std::remove_pointer_t<decltype(s_tag)>;
    using A = std::remove_pointer_t<decltype(a_tag)>;
    auto mp = make_mparams<A>(tau, rho, beta, v_th, v_reset, alpha, detach);
    dispatch_model(model, soft, [&](auto model_c, auto soft_c) {
      constexpr int MO = decltype(model_c)::value;
      constexpr bool SO = decltype(soft_c)::value;
      auto run = [&](auto sg_c) {
        constexpr int G = decltype(sg_c)::value;
        int64_t W = 16;  // the two [T, W] buffers stay in L2
        while (W < kMaxBlock && 2 * W * T * int64_t(sizeof(A)) <= (int64_t(1) << 17)) W *= 2;
        const int64_t nb = (M + W - 1) / W;
        const S* xp = static_cast<const S*>(x);
        const A* v0p = static_cast<const A*>(v0);
        const A* c0p = static_cast<const A*>(c0);
        const S* gsp = static_cast<const S*>(gs);
        const A* gvTp = static_cast<const A*>(gvT);
        const A* gcTp = static_cast<const A*>(gcT);
        S* gxp = static_cast<S*>(gx);
        A* gv0p = static_cast<A*>(gv0);
        A* gc0p = static_cast<A*>(gc0);
        at::parallel_for(0, nb, grain_blocks(T, W), [=](int64_t b0, int64_t b1) {
          std::vector<A> hbuf(static_cast<size_t>(T * W));
          std::vector<A> cbuf(static_cast<size_t>(T * W));
          for (int64_t b = b0; b < b1; ++b) {
            mbackward_block<S, A, MO, SO, G>(xp, v0p, c0p, gsp, gvTp, gcTp, gxp, gv0p, gc0p,
                                             hbuf.data(), cbuf.data(), T, M, W, b * W,
                                             std::min(W, M - b * W), mp);
          }
        });
      };
      switch (surrogate) {
        case SIGMOID: run(std::integral_constant<int, SIGMOID>{}); break;
        case ATAN: run(std::integral_constant<int, ATAN>{}); break;
        case RECTANGULAR: run(std::integral_constant<int, RECTANGULAR>{}); break;
        default: run(std::integral_constant<int, TRIANGLE>{}); break;
      }
    });
  }) ? 0 : 1;
}
