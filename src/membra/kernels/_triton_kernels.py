"""Triton kernels of the ``triton`` backend (imported at first use by
:mod:`membra.kernels.triton_backend`; equations in ``docs/kernels.md``).

Spikes and resets follow the reference exactly, non-finite values included: the spike is
``(u >= 0) + (u - u)`` (NaN where ``h`` is NaN or +-inf) and both resets are arithmetic, so a
NaN spike makes the potential NaN (``docs/kernels.md``, "Non-finite values").

``fwd_kernel``: one program per ``BLOCK`` neurons, time loop inside; writes spikes, ``h``
(the saved tensor), ``v_T`` and with ``TRACE_V`` every ``v_t``. ``bwd_kernel``: walks back
in time from ``dL/dv_T`` reading ``gs`` and ``h`` (and ``x`` for the gradient of a learnable
``tau``), writing ``gx``, ``dL/dv_0`` and one partial sum of ``dL/dtau`` per program.
"""

import triton
import triton.language as tl


@triton.jit
def _charge(v, x, tau, v_reset, LIF: tl.constexpr):
    if LIF:
        # IEEE division, as the reference's `/ tau`, so that spikes match bit for bit
        return v + tl.math.div_rn(x - (v - v_reset), tau)
    else:
        return v + x

@triton.jit
def _spike(h, v_th):
    # 1 / 0, or NaN where h is not finite (u - u is 0 for every finite u)
    u = h - v_th
    return tl.where(u >= 0.0, 1.0, 0.0) + (u - u)

@triton.jit
def _reset(h, s, v_th, v_reset, SOFT: tl.constexpr):
    if SOFT:
        return h - v_th * s
    else:
        return h * (1.0 - s) + v_reset * s

@triton.jit
def _surrogate(u, a, SG: tl.constexpr):
    if SG == 0:  # sigmoid
        sig = tl.sigmoid(a * u)
        return a * sig * (1.0 - sig)
    elif SG == 1:  # atan
        w = 1.5707963267948966 * a * u
        return (a / 2.0) / (1.0 + w * w)
    elif SG == 2:  # rectangular
        return tl.where(tl.abs(u) < 1.0 / (2.0 * a), a, 0.0)
    elif SG == 3:  # triangle
        # max(y, 0) that keeps a NaN y, as torch.clamp(y, min=0)
        y = a - a * a * tl.abs(u)
        return tl.where(y < 0.0, 0.0, y)

@triton.jit
def fwd_kernel(x_ptr, v0_ptr, tau_ptr, s_ptr, h_ptr, v_ptr, vT_ptr, T, M, v_th, v_reset,
               LIF: tl.constexpr, SOFT: tl.constexpr, TRACE_V: tl.constexpr,
               BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    acc = v0_ptr.dtype.element_ty
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    tau = tl.load(tau_ptr).to(acc)
    xp = x_ptr + offs
    sp = s_ptr + offs
    hp = h_ptr + offs
    vp = v_ptr + offs
    for _ in range(T):
        x = tl.load(xp, mask=mask, other=0.0).to(acc)
        h = _charge(v, x, tau, v_reset, LIF)
        s = _spike(h, v_th)
        tl.store(sp, s.to(s_ptr.dtype.element_ty), mask=mask)
        tl.store(hp, h, mask=mask)
        v = _reset(h, s, v_th, v_reset, SOFT)
        if TRACE_V:
            tl.store(vp, v, mask=mask)
        xp += M
        sp += M
        hp += M
        vp += M
    tl.store(vT_ptr + offs, v, mask=mask)

@triton.jit
def bwd_kernel(gs_ptr, gvT_ptr, h_ptr, x_ptr, v0_ptr, tau_ptr, gx_ptr, gv0_ptr, gtau_ptr,
               dsg_ptr, ghx_ptr, gvx_ptr, T, M, last, v_th, v_reset, a, nd, LIF: tl.constexpr,
               SOFT: tl.constexpr, SG: tl.constexpr, NEED_TAU: tl.constexpr,
               BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    acc = v0_ptr.dtype.element_ty
    tau = tl.load(tau_ptr).to(acc)
    gv = tl.load(gvT_ptr + offs, mask=mask, other=0.0).to(acc)
    gt = tl.zeros([BLOCK], dtype=acc)
    # last = (T - 1) * M, computed on the host (it may not fit in 32 bits)
    hp = h_ptr + last + offs
    gsp = gs_ptr + last + offs
    gxp = gx_ptr + last + offs
    xp = x_ptr + last + offs
    # SG 4: the surrogate derivative is read from dsg (a custom surrogate); SG 5: also the
    # trace's gradients dL/dh_t (ghx) and dL/dv_t (gvx) join the recurrence
    dp = dsg_ptr + last + offs
    ghp = ghx_ptr + last + offs
    gvp = gvx_ptr + last + offs
    for i in range(T):
        h = tl.load(hp, mask=mask, other=0.0)
        if SG >= 4:
            sg = tl.load(dp, mask=mask, other=0.0).to(acc)
        else:
            sg = _surrogate(h - v_th, a, SG)
        if SG == 5:
            gv += tl.load(gvp, mask=mask, other=0.0).to(acc)
        if SOFT:
            dvdh = 1.0 + nd * (-v_th * sg)
        else:
            dvdh = (1.0 - _spike(h, v_th)) + nd * ((v_reset - h) * sg)
        gs = tl.load(gsp, mask=mask, other=0.0).to(acc)
        gh = gs * sg + gv * dvdh
        if SG == 5:
            gh += tl.load(ghp, mask=mask, other=0.0).to(acc)
        if LIF:
            g = gh / tau
            tl.store(gxp, g.to(gx_ptr.dtype.element_ty), mask=mask)
            gv = gh - g
            if NEED_TAU:
                # q_t = x_t - (v_{t-1} - v_reset), v_{t-1} from h_{t-1} (or v0 at t = 0)
                not_first = (offs * 0 + i) < T - 1  # a block-shaped mask (t > 0)
                h_prev = tl.load(hp - M, mask=mask & not_first, other=0.0)
                v_prev = _reset(h_prev, _spike(h_prev, v_th), v_th, v_reset, SOFT)
                v_prev = tl.where(not_first, v_prev,
                                  tl.load(v0_ptr + offs, mask=mask, other=0.0))
                x = tl.load(xp, mask=mask, other=0.0).to(acc)
                gt += -gh * (x - (v_prev - v_reset)) / (tau * tau)
        else:
            tl.store(gxp, gh.to(gx_ptr.dtype.element_ty), mask=mask)
            gv = gh
        hp -= M
        gsp -= M
        gxp -= M
        xp -= M
        dp -= M
        ghp -= M
        gvp -= M
    tl.store(gv0_ptr + offs, gv, mask=mask)
    if NEED_TAU:
        tl.store(gtau_ptr + pid, tl.sum(tl.where(mask, gt, 0.0), axis=0))
