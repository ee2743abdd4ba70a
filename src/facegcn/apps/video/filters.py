"""Temporal filters for per-frame coefficient vectors, and a jitter measure.

The One Euro filter (Casiez, Roussel, Vogel, CHI 2012) is a first-order low-pass whose cut-off
rises with the signal's speed, ``fc = min_cutoff + beta·|dx/dt|``: still signals lose their jitter
while fast motion keeps little lag. The EMA is a fixed exponential moving average
``y = a·x + (1 − a)·y_prev``.
"""

from __future__ import annotations

import math

import numpy as np

from facegcn.apps.video.options import VideoOptions

__all__ = ["EMAFilter", "NoFilter", "OneEuroFilter", "jitter", "make_filter"]


class OneEuroFilter:
    """The One Euro filter on vectors.

    Args:
        min_cutoff: cut-off at rest (Hz); lower = smoother.
        beta: speed coefficient (Hz per unit/s); higher = less lag on fast motion.
        d_cutoff: cut-off (Hz) of the low-pass on the derivative.

    Call with ``(x, t)``: ``x`` an array (any shape, kept), ``t`` its time in seconds (increasing);
    returns the filtered float64 array. The first call returns ``x`` unchanged.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x_prev: np.ndarray | None = None
        self.dx_prev: np.ndarray | None = None
        self.t_prev = 0.0

    @staticmethod
    def _alpha(dt: float, cutoff):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x_prev is None:
            self.x_prev, self.dx_prev, self.t_prev = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = max(t - self.t_prev, 1e-6)
        dx = (x - self.x_prev) / dt
        a_d = self._alpha(dt, self.d_cutoff)
        dx_hat = a_d * dx + (1 - a_d) * self.dx_prev
        a = self._alpha(dt, self.min_cutoff + self.beta * np.abs(dx_hat))
        x_hat = a * x + (1 - a) * self.x_prev
        self.x_prev, self.dx_prev, self.t_prev = x_hat, dx_hat, t
        return x_hat.copy()


class EMAFilter:
    """Exponential moving average ``y = alpha·x + (1 − alpha)·y_prev`` (``t`` is ignored).

    Args:
        alpha: weight of the newest value, in ``(0, 1]``.
    """

    def __init__(self, alpha: float = 0.4):
        self.alpha = float(alpha)
        self.y: np.ndarray | None = None

    def __call__(self, x: np.ndarray, t: float = 0.0) -> np.ndarray:
        x = np.asarray(x, np.float64)
        self.y = x.copy() if self.y is None else self.alpha * x + (1 - self.alpha) * self.y
        return self.y.copy()


class NoFilter:
    """The identity filter (``smoothing="none"``): returns a float64 copy of ``x``."""

    def __call__(self, x: np.ndarray, t: float = 0.0) -> np.ndarray:
        return np.asarray(x, np.float64).copy()


def make_filter(opts: VideoOptions) -> OneEuroFilter | EMAFilter | NoFilter:
    """The filter chosen by ``opts.smoothing`` (``"one-euro"``, ``"ema"`` or ``"none"``), with its options."""
    if opts.smoothing == "one-euro":
        return OneEuroFilter(opts.min_cutoff, opts.beta, opts.d_cutoff)
    if opts.smoothing == "ema":
        return EMAFilter(opts.ema_alpha)
    return NoFilter()


def jitter(seq: np.ndarray) -> float:
    """Frame-to-frame jitter of a sequence: the RMS over frames of the second difference's norm
    (zero for constant velocity, so smooth motion does not count).

    Args:
        seq: one vector per frame.

    Returns:
        the jitter, in the sequence's units per frame² (0.0 for fewer than 3 frames).

    Shapes:
        seq: ``(T, D)`` (or ``(T, ...)``, flattened per frame).
    """
    s = np.asarray(seq, np.float64)
    if len(s) < 3:
        return 0.0
    d2 = s[2:] - 2 * s[1:-1] + s[:-2]
    return float(np.sqrt((np.linalg.norm(d2.reshape(len(d2), -1), axis=1) ** 2).mean()))
