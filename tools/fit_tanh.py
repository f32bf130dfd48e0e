"""Fit the rational tanh used by lstmkit's compiled kernels (prints the coefficients).

    tanh(x) ~= x * P(x^2) / Q(x^2)   for |x| <= CLAMP, else sign(x)

P and Q have positive-definite behaviour on [0, CLAMP^2]; the fit is a weighted linear
least-squares solve iterated Sanathanan-Koerner style (each pass divides by the previous
denominator), on points dense near 0, in float64. Run: python tools/fit_tanh.py
"""

from __future__ import annotations

import numpy as np

CLAMP = 9.0
DEG_P, DEG_Q = 6, 6  # in s = x^2


def fit(iterations: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Sanathanan-Koerner passes, with Lawson reweighting toward the minimax error."""
    x = np.concatenate([np.linspace(0, 1, 4000), np.linspace(1, CLAMP, 8000)])[1:]
    s, y = x * x, np.tanh(x)
    q_prev = np.ones_like(x)
    weight = np.ones_like(x)
    for _ in range(iterations):
        # x P(s) - y Q(s) = 0 with Q's constant term fixed at 1: unknowns p0..pD, q1..qD
        cols = [x * s**k for k in range(DEG_P + 1)] + [-y * s**k for k in range(1, DEG_Q + 1)]
        scale = np.sqrt(weight) / q_prev
        sol, *_ = np.linalg.lstsq(np.stack(cols, axis=1) * scale[:, None], y * scale, rcond=None)
        p, q = sol[: DEG_P + 1], np.concatenate([[1.0], sol[DEG_P + 1 :]])
        q_prev = np.polynomial.polynomial.polyval(s, q)
        err = np.abs(x * np.polynomial.polynomial.polyval(s, p) / q_prev - y)
        weight = weight * (err / err.max() + 1e-3)
        weight /= weight.sum()
    return p, q


def evaluate32(x: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    x = np.clip(x.astype(np.float32), -CLAMP, CLAMP)
    s = x * x
    num = np.zeros_like(s)
    den = np.zeros_like(s)
    for c in p[::-1].astype(np.float32):
        num = num * s + c
    for c in q[::-1].astype(np.float32):
        den = den * s + c
    return x * num / den


if __name__ == "__main__":
    p, q = fit()
    grid = np.linspace(-20, 20, 2_000_001)
    err = np.abs(evaluate32(grid, p, q).astype(np.float64) - np.tanh(grid)).max()
    print("P =", ", ".join(repr(float(c)) for c in p))
    print("Q =", ", ".join(repr(float(c)) for c in q))
    print(f"max |error| vs float64 tanh on [-20, 20], float32 evaluation: {err:.3g}")
