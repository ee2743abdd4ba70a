"""Numba kernel for the OBJ writer: rows of numbers as ASCII text, ``printf``-style.

:func:`format_rows` writes what ``"\\n".join([fmt] * N) % values`` writes for the formats the OBJ
writer uses (a literal prefix, then ``%d`` / ``%.Nf`` fields with literal separators), ~50x faster:
the ``%`` form spends ~0.4 s on a 26k-vertex head, most of the whole export. Serial, ``nogil``,
``cache=True``. The reference is the ``%`` form itself (:func:`facegcn.io.mesh._rows_reference`;
tests compare the two).

``%.Nf`` rounds ``|x| · 10^N`` in float64 to the nearest integer (halves up) where ``printf``
rounds the exact binary value (halves to even): the two can differ by one unit in the last digit
when ``x`` lies within float64 rounding of a half-way point — never more. Values the kernel does
not write (non-finite, ``|x| ≥ 10^12``, non-integral ``%d``) are reported, and the caller uses the
reference instead.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _put_uint(buf, pos, n):
    """Write the decimal digits of ``n >= 0`` at ``buf[pos:]``; returns the new position."""
    if n == 0:
        buf[pos] = 48
        return pos + 1
    k = 0
    m = n
    while m > 0:
        k += 1
        m //= 10
    end = pos + k
    while n > 0:
        k -= 1
        buf[pos + k] = 48 + n % 10
        n //= 10
    return end


@njit(cache=True, nogil=True)
def format_rows(values, prefix, seps, sep_len, decimals, out):
    """Write ``values (N, K)`` float64 into ``out`` (uint8, large enough: see :func:`row_bound`).

    Row ``i`` is ``prefix``, then for each column ``k`` the number (``decimals[k] < 0``: an integer,
    ``%d``; else ``%.{decimals[k]}f``) followed by ``seps[k, :sep_len[k]]``; rows are separated by
    ``\\n`` (none after the last).

    Returns:
        the number of bytes written, or ``-1 - i`` when row ``i`` holds a value this kernel does not
        write (non-finite, ``|x| >= 1e12``, a non-integral ``%d``).
    """
    N, K = values.shape
    pos = 0
    for i in range(N):
        if i > 0:
            out[pos] = 10
            pos += 1
        for j in range(prefix.shape[0]):
            out[pos] = prefix[j]
            pos += 1
        for k in range(K):
            x = values[i, k]
            if not (abs(x) < 1e12):  # also NaN
                return -1 - i
            d = decimals[k]
            if x < 0.0 or (x == 0.0 and math.copysign(1.0, x) < 0.0):
                out[pos] = 45  # '-'
                pos += 1
            a = abs(x)
            if d < 0:
                n = np.int64(a)
                if n != a:
                    return -1 - i
                pos = _put_uint(out, pos, n)
            else:
                scale = np.int64(10) ** d
                n = np.int64(math.floor(a * scale + 0.5))
                pos = _put_uint(out, pos, n // scale)
                if d > 0:
                    out[pos] = 46  # '.'
                    pos += 1
                    f = n % scale
                    for j in range(d - 1, -1, -1):
                        out[pos + j] = 48 + f % 10
                        f //= 10
                    pos += d
            for j in range(sep_len[k]):
                out[pos] = seps[k, j]
                pos += 1
    return pos


def row_bound(prefix_len: int, decimals: np.ndarray, sep_len: np.ndarray) -> int:
    """The most bytes one row of :func:`format_rows` can take (its newline included): sign, 12
    integer digits, point and decimals per field."""
    return prefix_len + 1 + int(sum(14 + max(int(d), 0) + int(s) for d, s in zip(decimals, sep_len)))
