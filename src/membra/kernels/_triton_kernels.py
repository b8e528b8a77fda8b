"""Triton kernels of the ``triton`` backend, one forward and one backward for every neuron kind
with a kernel code (0 LIF, 1 IF, 2 CubaLIF, 3 ALIF; equations in ``docs/kernels.md`` and
:mod:`membra.functional.models`). Imported at first use by :mod:`.triton_backend`.

Spikes and resets follow the reference exactly, non-finite values included: the spike is
``(u >= 0) + (u - u)`` (NaN where ``u`` is NaN or +-inf) and both resets are arithmetic, so a
NaN spike makes the potential NaN (``docs/kernels.md``, "Non-finite values"). The scalar
parameters come in the ``prm`` tensor of the state dtype (a Python float argument would be
rounded to float32 by Triton): ``[v_th, v_reset, rho, beta, alpha, nd]``, ``rho`` the fraction
the second state keeps per step, ``nd`` 0 when the reset is detached, else 1.

``fwd_kernel``: one program per ``BLOCK`` neurons, time loop inside; writes spikes, ``h``
(saved for the backward; not with ``SAVE_H=False``, the inference path, which with
``SPIKE_U8`` also writes the spikes as 0/1 bytes), for ALIF the threshold ``theta_t``,
``v_T`` (and the second state's final value) and with ``TRACE_V`` every ``v_t``.
``bwd_kernel``: walks back in time from ``dL/dv_T`` (and ``dL/dc_T``) reading ``gs``, ``h``
(and ``theta``; ``x`` for the gradient of a learnable LIF ``tau``), writing ``gx``, the
initial states' gradients and per neuron the terms of ``dL/dtau``.
"""

import triton
import triton.language as tl

IF: tl.constexpr = tl.constexpr(1)
CUBA: tl.constexpr = tl.constexpr(2)
ALIF: tl.constexpr = tl.constexpr(3)


@triton.jit
def _charge(v, x, tau, v_reset, KIND: tl.constexpr):
    """``h = v + (x - (v - v_reset)) / tau`` (correctly rounded division, as the reference's
    ``/ tau``, so that spikes match bit for bit: ``div_rn`` in float32, where Triton's ``/`` is
    approximate; ``/`` in float64, where ``div_rn`` does not exist), or ``h = v + x`` for IF."""
    if KIND == IF:
        return v + x
    elif v.dtype == tl.float64:
        return v + (x - (v - v_reset)) / tau
    else:
        return v + tl.math.div_rn(x - (v - v_reset), tau)


@triton.jit
def _spike(h, th):
    # 1 / 0, or NaN where h - th is not finite (u - u is 0 for every finite u)
    u = h - th
    return tl.where(u >= 0.0, 1.0, 0.0) + (u - u)


@triton.jit
def _reset(h, s, th, v_reset, SOFT: tl.constexpr):
    if SOFT:
        return h - th * s
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
def fwd_kernel(x_ptr, v0_ptr, c0_ptr, tau_ptr, prm_ptr, s_ptr, h_ptr, th_ptr, v_ptr, vT_ptr,
               cT_ptr, T, M, KIND: tl.constexpr, SOFT: tl.constexpr, TRACE_V: tl.constexpr,
               BLOCK: tl.constexpr, SAVE_H: tl.constexpr = True,
               SPIKE_U8: tl.constexpr = False):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    acc = v0_ptr.dtype.element_ty
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    tau = tl.load(tau_ptr).to(acc)
    v_th, v_reset = tl.load(prm_ptr), tl.load(prm_ptr + 1)
    rho, beta = tl.load(prm_ptr + 2), tl.load(prm_ptr + 3)
    c = tl.zeros([BLOCK], dtype=acc)
    if KIND >= CUBA:
        c = tl.load(c0_ptr + offs, mask=mask, other=0.0)
    th = tl.zeros([BLOCK], dtype=acc) + v_th  # a block: ALIF's theta_t changes per step
    xp, sp, hp, tp, vp = x_ptr + offs, s_ptr + offs, h_ptr + offs, th_ptr + offs, v_ptr + offs
    for _ in range(T):
        x = tl.load(xp, mask=mask, other=0.0).to(acc)
        if KIND == CUBA:  # i_t = rho i_{t-1} + x_t charges the membrane
            c = c * rho + x
            x = c
        if KIND == ALIF:  # theta_t = v_th + beta a_t
            th = v_th + beta * c
            tl.store(tp, th, mask=mask)
        h = _charge(v, x, tau, v_reset, KIND)
        s = _spike(h, th)
        if SPIKE_U8:  # s != 0 as 0/1 bytes (a NaN spike gives 1, as .to(torch.bool) does)
            tl.store(sp, tl.where(s != 0.0, 1, 0).to(tl.uint8), mask=mask)
        else:
            tl.store(sp, s.to(s_ptr.dtype.element_ty), mask=mask)
        if SAVE_H:
            tl.store(hp, h, mask=mask)
        v = _reset(h, s, th, v_reset, SOFT)
        if KIND == ALIF:  # a_{t+1} = rho a_t + s_t
            c = c * rho + s
        if TRACE_V:
            tl.store(vp, v, mask=mask)
        xp += M
        sp += M
        hp += M
        tp += M
        vp += M
    tl.store(vT_ptr + offs, v, mask=mask)
    if KIND >= CUBA:
        tl.store(cT_ptr + offs, c, mask=mask)


@triton.jit
def bwd_kernel(gs_ptr, gvT_ptr, gcT_ptr, h_ptr, th_ptr, x_ptr, v0_ptr, tau_ptr, prm_ptr,
               gx_ptr, gv0_ptr, gc0_ptr, gtau_ptr, dsg_ptr, ghx_ptr, gvx_ptr, T, M, last,
               KIND: tl.constexpr, SOFT: tl.constexpr, SG: tl.constexpr,
               NEED_TAU: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    acc = v0_ptr.dtype.element_ty
    tau = tl.load(tau_ptr).to(acc)
    v_th, v_reset = tl.load(prm_ptr), tl.load(prm_ptr + 1)
    rho, beta = tl.load(prm_ptr + 2), tl.load(prm_ptr + 3)
    a, nd = tl.load(prm_ptr + 4), tl.load(prm_ptr + 5)
    gv = tl.load(gvT_ptr + offs, mask=mask, other=0.0).to(acc)
    # dL/dc_t of the second state, carried back in time (CubaLIF: the current, ALIF: a_{t+1})
    gc = tl.zeros([BLOCK], dtype=acc)
    if KIND >= CUBA:
        gc = tl.load(gcT_ptr + offs, mask=mask, other=0.0).to(acc)
    gt = tl.zeros([BLOCK], dtype=acc)
    th = tl.zeros([BLOCK], dtype=acc) + v_th
    # last = (T - 1) * M, computed on the host (it may not fit in 32 bits)
    hp, tp, gsp = h_ptr + last + offs, th_ptr + last + offs, gs_ptr + last + offs
    gxp, xp = gx_ptr + last + offs, x_ptr + last + offs
    # SG 4: the surrogate derivative is read from dsg (a custom surrogate); SG 5: also the
    # trace's gradients dL/dh_t (ghx) and dL/dv_t (gvx) join the recurrence
    dp, ghp, gvp = dsg_ptr + last + offs, ghx_ptr + last + offs, gvx_ptr + last + offs
    for i in range(T):
        h = tl.load(hp, mask=mask, other=0.0)
        if KIND == ALIF:
            th = tl.load(tp, mask=mask, other=0.0)
        if SG >= 4:
            sg = tl.load(dp, mask=mask, other=0.0).to(acc)
        else:
            sg = _surrogate(h - th, a, SG)
        if SG == 5:
            gv += tl.load(gvp, mask=mask, other=0.0).to(acc)
        s = _spike(h, th)
        gs = tl.load(gsp, mask=mask, other=0.0).to(acc)
        if KIND == ALIF:  # s_t also feeds a_{t+1} = rho a_t + s_t
            gs += gc
        # dL/du at u = h - theta: through the spike, and the reset's spike unless detached
        if SOFT:
            gu = gs * sg + gv * tl.where(nd != 0, -th * sg, 0.0)  # 0 * inf is NaN
            gh = gu + gv
        else:
            gu = gs * sg + gv * tl.where(nd != 0, (v_reset - h) * sg, 0.0)
            gh = gu + gv * (1.0 - s)
        if SG == 5:
            gh += tl.load(ghp, mask=mask, other=0.0).to(acc)
        if KIND == ALIF:  # theta_t = v_th + beta a_t: dL/da_t = rho dL/da_{t+1} + beta dL/dth
            gth = -gu
            if SOFT:
                gth -= gv * s
            gc = gc * rho + beta * gth
        if KIND == IF:
            g = gh
            gv = gh
        else:
            g = gh / tau
            gv = gh - g
        if KIND == CUBA:  # i_t = rho i_{t-1} + x_t
            g += gc
            gc = g * rho
        tl.store(gxp, g.to(gx_ptr.dtype.element_ty), mask=mask)
        if NEED_TAU:
            # q_t = x_t - (v_{t-1} - v_reset), v_{t-1} from h_{t-1} (or v0 at t = 0)
            not_first = (offs * 0 + i) < T - 1  # a block-shaped mask (t > 0)
            h_prev = tl.load(hp - M, mask=mask & not_first, other=0.0)
            v_prev = _reset(h_prev, _spike(h_prev, v_th), v_th, v_reset, SOFT)
            v_prev = tl.where(not_first, v_prev, tl.load(v0_ptr + offs, mask=mask, other=0.0))
            x = tl.load(xp, mask=mask, other=0.0).to(acc)
            gt += -gh * (x - (v_prev - v_reset)) / (tau * tau)
        hp -= M
        tp -= M
        gsp -= M
        gxp -= M
        xp -= M
        dp -= M
        ghp -= M
        gvp -= M
    tl.store(gv0_ptr + offs, gv, mask=mask)
    if KIND >= CUBA:
        tl.store(gc0_ptr + offs, gc, mask=mask)
    if NEED_TAU:
        tl.store(gtau_ptr + offs, gt, mask=mask)
