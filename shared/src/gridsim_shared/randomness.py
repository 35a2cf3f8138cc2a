"""Counter-based randomness: every random number is a pure function of (seed, meter, stream, counter).

A reading must not depend on which instance simulates the meter, on the order meters are loaded in, or
on what was simulated before (DESIGN §3: same seed, world and commands → same readings, bit for bit).
A stateful generator cannot give that once the fleet is sharded or reloaded, so each number is a
SplitMix64 hash of its coordinates, vectorised over numpy ``uint64`` arrays (wrap-around arithmetic).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "meter_keys",
    "mix64",
    "normal",
    "normal_from",
    "normal_streams",
    "stream_keys",
    "uniform",
    "uniform_from",
]

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / float(1 << 53)


def mix64(x: U64) -> U64:
    """SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective, well-mixed 64-bit hash."""
    # In place on one temporary (the same arithmetic): a tick hashes millions of numbers, and fresh
    # arrays for every step cost more than the arithmetic.
    z = x + _GOLDEN
    if z.ndim == 0:
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)
    return _mix_in_place(z)


def _mix_in_place(z: U64) -> U64:
    """:func:`mix64` of ``z - golden`` (the golden ratio already added), overwriting ``z``."""
    t = z >> _S30
    z ^= t
    z *= _M1
    np.right_shift(z, _S27, out=t)
    z ^= t
    z *= _M2
    np.right_shift(z, _S31, out=t)
    z ^= t
    return z


def meter_keys(seed: int, meter_ids: npt.NDArray[np.int64]) -> U64:
    """One 64-bit key per meter, derived from the run's seed and the meter's database id."""
    seed_key = mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return mix64(meter_ids.astype(np.uint64) ^ seed_key)


_NORMAL_SECOND = 0x5BD1E995  # the stream offset of Box–Muller's second uniform


def stream_keys(keys: U64, stream: int) -> U64:
    """``keys`` hashed with ``stream``: the half of every draw that does not change with the counter.

    A caller drawing the same stream every tick (meter-sim: every meter, every interval) keeps these and
    calls :func:`uniform_from` / :func:`normal_from`, which give exactly :func:`uniform` / :func:`normal`
    at half the hashing."""
    # Stream and counter are hashed in separately so (stream, counter) pairs never collide by addition.
    stream_key = mix64(np.array([stream], dtype=np.uint64))[0]
    return mix64(keys ^ stream_key)


# Long draws run in blocks of this many numbers: a draw is a dozen passes over its numbers, and a block's
# stay in the core's cache between passes where a whole 100k-meter array (800 KB) would not.
_BLOCK = 16_384


def _in_blocks(
    draw: Callable[..., F64], arrays: tuple[U64, ...], counter: U64 | np.uint64 | int
) -> F64 | None:
    """``draw(*arrays, counter)`` block by block (the same numbers), or None when not worth it (short
    arrays, or a counter per key)."""
    n = arrays[0].shape[0] if arrays[0].ndim == 1 else 0
    if n <= _BLOCK or np.ndim(counter):
        return None
    out = np.empty(n)
    for start in range(0, n, _BLOCK):
        out[start : start + _BLOCK] = draw(*(a[start : start + _BLOCK] for a in arrays), counter)
    return out


def uniform_from(keyed: U64, counter: U64 | np.uint64 | int) -> F64:
    """:func:`uniform` from :func:`stream_keys`."""
    blocks = _in_blocks(_uniform_from, (keyed,), counter)
    return _uniform_from(keyed, counter) if blocks is None else blocks


def _uniform_from(keyed: U64, counter: U64 | np.uint64 | int) -> F64:
    counters = np.asarray(counter, dtype=np.uint64)
    bits = keyed + counters * _GOLDEN
    if bits.ndim == 0:
        bits = mix64(bits)
    else:  # mix64 on the one fresh array (wrap-around: adding the golden ratio here is mix64's first step)
        bits += _GOLDEN
        bits = _mix_in_place(bits)
    bits >>= _S11
    unit = bits.astype(np.float64)
    unit *= _TO_UNIT
    return unit


def uniform(keys: U64, stream: int, counter: U64 | np.uint64 | int) -> F64:
    """Uniform numbers in [0, 1), one per key, for this stream and counter (e.g. a tick or a slot)."""
    return uniform_from(stream_keys(keys, stream), counter)


def normal_streams(keys: U64, stream: int) -> tuple[U64, U64]:
    """The two :func:`stream_keys` :func:`normal_from` needs for ``stream``."""
    return stream_keys(keys, stream), stream_keys(keys, stream + _NORMAL_SECOND)


def normal_from(keyed: tuple[U64, U64], counter: U64 | np.uint64 | int) -> F64:
    """:func:`normal` from :func:`normal_streams`."""
    blocks = _in_blocks(_normal_from, keyed, counter)
    return _normal_from(*keyed, counter) if blocks is None else blocks


def _normal_from(first: U64, second: U64, counter: U64 | np.uint64 | int) -> F64:
    u1 = _uniform_from(first, counter)
    u2 = _uniform_from(second, counter)
    if u1.ndim == 0:
        radius = np.sqrt(-2.0 * np.log1p(-u1))  # 1 - u1 is in (0, 1]: log never sees 0
        out: F64 = radius * np.cos(2.0 * np.pi * u2)
        return out
    # The same operations in place on the two fresh arrays (a tick draws hundreds of thousands).
    radius = np.negative(u1, out=u1)
    np.log1p(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = np.multiply(u2, 2.0 * np.pi, out=u2)
    radius *= np.cos(angle, out=angle)
    return radius


def normal(keys: U64, stream: int, counter: U64 | np.uint64 | int) -> F64:
    """Standard normal numbers, one per key (Box–Muller on two counter-based uniforms)."""
    return normal_from(normal_streams(keys, stream), counter)
