"""Cascade kernels (numba): permuted parity words, range parities, batched bisection.

Layout shared by both ends. The key of ``n`` bits is cut into frames of
``frame_bits`` bits (the last frame holds the remainder ``last_bits``). Pass
``q`` shuffles every frame with the permutation ``perm[q]`` (the last frame
with ``perm_last[q]``) and cuts the shuffled frame into top-level blocks of
``ks[q]`` bits (the last block of a frame may be shorter). ``words[q, f]`` is
frame ``f`` in pass-``q`` order, packed 64 bits to a word, so the parity of
any range of a block costs one XOR per word.

Blocks are numbered flat: block ``b`` of frame ``f`` in pass ``q`` is
``boff[q] + f * bpf[q] + b`` (``bpf[q]`` blocks per full frame; the last frame
has ``bpl[q]``).

Bob's bisection state is a set of arrays, one entry per running bisection:
pass, frame, range ``[start, stop)`` in shuffled order and Alice's parity of
that range. One round answers the parity of the left half of every running
bisection at once; :func:`bob_apply_reply` then narrows each range, flips a
bit when a range shrinks to one bit, and starts new bisections on every
top-level block (of any pass so far) whose parity a flip made odd: the
"cascade" of the protocol's name.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
#: Positions in a frame: u16 (frames up to 2^16 bits) or u32, unsigned (see CascadeLayout).
I32 = npt.NDArray[np.unsignedinteger]
U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]

# indices into Bob's counters array
C_PASS = 0  # current pass (-1 before the first)
C_BIS = 1  # running bisections
C_PENDING = 2  # blocks waiting for a parity check
C_FLIPS = 3  # bits flipped so far
C_ABANDONED = 4  # bisections dropped because their range became even
C_BUILT = 5  # passes whose parity words exist (kept current by every flip)
N_COUNTERS = 6


@numba.njit(cache=True, nogil=True, inline="always")
def _parity64(w: np.uint64) -> np.uint64:  # pragma: no cover
    w ^= w >> np.uint64(32)
    w ^= w >> np.uint64(16)
    w ^= w >> np.uint64(8)
    w ^= w >> np.uint64(4)
    w ^= w >> np.uint64(2)
    w ^= w >> np.uint64(1)
    return w & np.uint64(1)


@numba.njit(cache=True, nogil=True)
def range_parity(row: U64, start: int, stop: int) -> int:  # pragma: no cover
    """Parity of bits ``[start, stop)`` of a packed word row."""
    if stop <= start:
        return 0
    ws = start >> 6
    we = (stop - 1) >> 6
    lo = np.uint64(start & 63)
    if ws == we:
        w = row[ws] >> lo
        length = stop - start
        if length < 64:
            w &= (np.uint64(1) << np.uint64(length)) - np.uint64(1)
        return int(_parity64(w))
    acc = row[ws] >> lo
    for k in range(np.uint64(ws + 1), np.uint64(we)):  # unsigned: no negative-index check
        acc ^= row[k]
    tail = stop - (we << 6)
    last = row[we]
    if tail < 64:
        last &= (np.uint64(1) << np.uint64(tail)) - np.uint64(1)
    acc ^= last
    return int(_parity64(acc))


@numba.njit(cache=True, nogil=True)
def build_pass_words(
    bits: U8, q: int, perm: I32, perm_last: I32, frame_bits: int, last_bits: int, words: U64
) -> None:  # pragma: no cover
    """Fill ``words[q]`` with every frame of ``bits`` in pass-``q`` order.

    Full words gather four bits per step into four accumulators (independent
    chains), the tail word bit by bit.
    """
    nframes = words.shape[1]
    for f in range(nframes):
        base = f * frame_bits
        size = frame_bits if f < nframes - 1 else last_bits
        p = perm[q] if f < nframes - 1 else perm_last[q]
        row = words[q, f]
        src = bits[base : base + size]
        nw = (size + 63) >> 6
        full = size >> 6
        for w in range(full):
            y0 = w << 6
            a0 = np.uint64(0)
            a1 = np.uint64(0)
            a2 = np.uint64(0)
            a3 = np.uint64(0)
            for t in range(16):
                y = y0 + 4 * t
                a0 |= np.uint64(src[p[y]]) << np.uint64(4 * t)
                a1 |= np.uint64(src[p[y + 1]]) << np.uint64(4 * t + 1)
                a2 |= np.uint64(src[p[y + 2]]) << np.uint64(4 * t + 2)
                a3 |= np.uint64(src[p[y + 3]]) << np.uint64(4 * t + 3)
            row[w] = a0 | a1 | a2 | a3
        for w in range(full, nw):
            acc = np.uint64(0)
            y0 = w << 6
            for y in range(y0, size):
                acc |= np.uint64(src[p[y]]) << np.uint64(y - y0)
            row[w] = acc
        for w in range(nw, row.size):
            row[w] = np.uint64(0)


@numba.njit(cache=True, nogil=True)
def block_parities(
    words: U64,
    q: int,
    k_full: int,
    k_last: int,
    frame_bits: int,
    last_bits: int,
    bpf: int,
    out: U8,
    offset: int,
) -> None:  # pragma: no cover
    """Parity of every top-level block of pass ``q`` into ``out[offset + f * bpf + b]``."""
    nframes = words.shape[1]
    for f in range(nframes):
        size = frame_bits if f < nframes - 1 else last_bits
        k = k_full if f < nframes - 1 else k_last
        row = words[q, f]
        nb = (size + k - 1) // k
        for b in range(nb):
            s = b * k
            e = min(s + k, size)
            out[offset + f * bpf + b] = np.uint8(range_parity(row, s, e))


@numba.njit(cache=True, nogil=True)
def answer_ranges(words: U64, qs: U8, fs: I64, ss: I64, es: I64) -> U8:  # pragma: no cover
    """Alice: parity of each requested range (already validated)."""
    out = np.empty(qs.size, dtype=np.uint8)
    for i in range(qs.size):
        out[i] = np.uint8(range_parity(words[qs[i], fs[i]], ss[i], es[i]))
    return out


@numba.njit(cache=True, nogil=True)
def _flip(
    x: int,
    bits: U8,
    words: U64,
    inv: I32,
    inv_last: I32,
    ks: I64,
    ks_last: I64,
    bpf: I64,
    boff: I64,
    frame_bits: int,
    bob_top: U8,
    pending: I64,
    pending_flag: U8,
    counters: I64,
) -> None:  # pragma: no cover
    """Flip Bob's bit ``x`` in every built pass and queue the blocks it touches."""
    nframes = words.shape[1]
    bits[x] ^= np.uint8(1)
    f = x // frame_bits
    i = x - f * frame_bits
    for q in range(counters[C_BUILT]):
        if f < nframes - 1:
            y = inv[q, i]
            blk = boff[q] + f * bpf[q] + y // ks[q]
        else:
            y = inv_last[q, i]
            blk = boff[q] + f * bpf[q] + y // ks_last[q]
        words[q, f, y >> 6] ^= np.uint64(1) << np.uint64(y & 63)
        if q > counters[C_PASS]:
            continue  # built ahead of time, not started: its parities come at its start
        bob_top[blk] ^= np.uint8(1)
        if pending_flag[blk] == 0:
            pending_flag[blk] = 1
            pending[counters[C_PENDING]] = blk
            counters[C_PENDING] += 1
    counters[C_FLIPS] += 1


@numba.njit(cache=True, nogil=True)
def _drain_pending(
    bits: U8,
    words: U64,
    perm: I32,
    perm_last: I32,
    inv: I32,
    inv_last: I32,
    ks: I64,
    ks_last: I64,
    bpf: I64,
    boff: I64,
    frame_bits: int,
    last_bits: int,
    alice_top: U8,
    bob_top: U8,
    active: U8,
    pending: I64,
    pending_flag: U8,
    bis: I64,
    bis_a: U8,
    counters: I64,
) -> None:  # pragma: no cover
    """Start a bisection on every queued block whose parity differs from Alice's."""
    nframes = words.shape[1]
    npasses = ks.size
    while counters[C_PENDING] > 0:
        counters[C_PENDING] -= 1
        blk = pending[counters[C_PENDING]]
        pending_flag[blk] = 0
        if active[blk] != 0 or bob_top[blk] == alice_top[blk]:
            continue
        q = 0
        while q + 1 < npasses and boff[q + 1] <= blk:
            q += 1
        rel = blk - boff[q]
        f = min(rel // bpf[q], nframes - 1)  # the last frame may hold more blocks
        b = rel - f * bpf[q]
        size = frame_bits if f < nframes - 1 else last_bits
        k = ks[q] if f < nframes - 1 else ks_last[q]
        s = b * k
        e = min(s + k, size)
        if e - s == 1:
            # a one-bit block: its parity is Alice's bit, so the error is located
            p = perm[q] if f < nframes - 1 else perm_last[q]
            _flip(
                f * frame_bits + p[s],
                bits,
                words,
                inv,
                inv_last,
                ks,
                ks_last,
                bpf,
                boff,
                frame_bits,
                bob_top,
                pending,
                pending_flag,
                counters,
            )
            continue
        j = counters[C_BIS]
        bis[j, 0] = q
        bis[j, 1] = f
        bis[j, 2] = s
        bis[j, 3] = e
        bis[j, 4] = blk
        bis_a[j] = alice_top[blk]
        active[blk] = 1
        counters[C_BIS] += 1


@numba.njit(cache=True, nogil=True)
def bob_start_pass(
    q: int,
    bits: U8,
    words: U64,
    perm: I32,
    perm_last: I32,
    inv: I32,
    inv_last: I32,
    ks: I64,
    ks_last: I64,
    bpf: I64,
    boff: I64,
    frame_bits: int,
    last_bits: int,
    alice_top: U8,
    bob_top: U8,
    active: U8,
    pending: I64,
    pending_flag: U8,
    bis: I64,
    bis_a: U8,
    counters: I64,
) -> None:  # pragma: no cover
    """Build pass ``q``, compare its block parities with Alice's, start bisections."""
    if q >= counters[C_BUILT]:
        build_pass_words(bits, q, perm, perm_last, frame_bits, last_bits, words)
        counters[C_BUILT] = q + 1
    block_parities(words, q, ks[q], ks_last[q], frame_bits, last_bits, bpf[q], bob_top, boff[q])
    counters[C_PASS] = q
    end = boff[q + 1] if q + 1 < ks.size else pending.size  # one pending slot per block
    for rel in range(end - boff[q] - 1, -1, -1):
        blk = boff[q] + rel
        if bob_top[blk] != alice_top[blk] and pending_flag[blk] == 0:
            pending_flag[blk] = 1
            pending[counters[C_PENDING]] = blk
            counters[C_PENDING] += 1
    _drain_pending(
        bits,
        words,
        perm,
        perm_last,
        inv,
        inv_last,
        ks,
        ks_last,
        bpf,
        boff,
        frame_bits,
        last_bits,
        alice_top,
        bob_top,
        active,
        pending,
        pending_flag,
        bis,
        bis_a,
        counters,
    )


@numba.njit(cache=True, nogil=True)
def bob_build_ahead(
    bits: U8, words: U64, perm: I32, perm_last: I32, frame_bits: int, last_bits: int, counters: I64
) -> None:  # pragma: no cover
    """Build the parity words of every pass not built yet, from Bob's current bits."""
    for q in range(counters[C_BUILT], words.shape[0]):
        build_pass_words(bits, q, perm, perm_last, frame_bits, last_bits, words)
    counters[C_BUILT] = words.shape[0]


@numba.njit(cache=True, nogil=True)
def bob_queries(bis: I64, count: int) -> tuple[U8, I64, I64, I64]:  # pragma: no cover
    """The left half of every running bisection: (pass, frame, start, stop)."""
    qs = np.empty(count, dtype=np.uint8)
    fs = np.empty(count, dtype=np.int64)
    ss = np.empty(count, dtype=np.int64)
    es = np.empty(count, dtype=np.int64)
    for j in range(count):
        qs[j] = bis[j, 0]
        fs[j] = bis[j, 1]
        ss[j] = bis[j, 2]
        es[j] = (bis[j, 2] + bis[j, 3]) // 2
    return qs, fs, ss, es


@numba.njit(cache=True, nogil=True)
def bob_apply_reply(
    reply: U8,
    bits: U8,
    words: U64,
    perm: I32,
    perm_last: I32,
    inv: I32,
    inv_last: I32,
    ks: I64,
    ks_last: I64,
    bpf: I64,
    boff: I64,
    frame_bits: int,
    last_bits: int,
    alice_top: U8,
    bob_top: U8,
    active: U8,
    pending: I64,
    pending_flag: U8,
    bis: I64,
    bis_a: U8,
    counters: I64,
) -> None:  # pragma: no cover
    """Narrow every running bisection with Alice's left-half parities ``reply``."""
    nframes = words.shape[1]
    count = counters[C_BIS]
    keep = 0
    for j in range(count):
        q = bis[j, 0]
        f = bis[j, 1]
        s = bis[j, 2]
        e = bis[j, 3]
        blk = bis[j, 4]
        a = bis_a[j]
        row = words[q, f]
        mid = (s + e) // 2
        if range_parity(row, s, e) == a:
            # a flip elsewhere made this range even: drop it, recheck its block
            active[blk] = 0
            counters[C_ABANDONED] += 1
            if pending_flag[blk] == 0:
                pending_flag[blk] = 1
                pending[counters[C_PENDING]] = blk
                counters[C_PENDING] += 1
            continue
        a_left = reply[j]
        if range_parity(row, s, mid) != a_left:
            e = mid
            a = a_left
        else:
            s = mid
            a = a ^ a_left
        if e - s == 1:
            active[blk] = 0
            y = s
            if ((row[y >> 6] >> np.uint64(y & 63)) & np.uint64(1)) != a:
                p = perm[q] if f < nframes - 1 else perm_last[q]
                _flip(
                    f * frame_bits + p[y],
                    bits,
                    words,
                    inv,
                    inv_last,
                    ks,
                    ks_last,
                    bpf,
                    boff,
                    frame_bits,
                    bob_top,
                    pending,
                    pending_flag,
                    counters,
                )
            if pending_flag[blk] == 0:
                pending_flag[blk] = 1
                pending[counters[C_PENDING]] = blk
                counters[C_PENDING] += 1
            continue
        bis[keep, 0] = q
        bis[keep, 1] = f
        bis[keep, 2] = s
        bis[keep, 3] = e
        bis[keep, 4] = blk
        bis_a[keep] = a
        keep += 1
    # drop bisections that flips of this round made even before asking about them
    count = keep
    keep = 0
    for j in range(count):
        if range_parity(words[bis[j, 0], bis[j, 1]], bis[j, 2], bis[j, 3]) == bis_a[j]:
            blk = bis[j, 4]
            active[blk] = 0
            counters[C_ABANDONED] += 1
            if pending_flag[blk] == 0:
                pending_flag[blk] = 1
                pending[counters[C_PENDING]] = blk
                counters[C_PENDING] += 1
            continue
        if keep != j:
            bis[keep] = bis[j]
            bis_a[keep] = bis_a[j]
        keep += 1
    counters[C_BIS] = keep
    _drain_pending(
        bits,
        words,
        perm,
        perm_last,
        inv,
        inv_last,
        ks,
        ks_last,
        bpf,
        boff,
        frame_bits,
        last_bits,
        alice_top,
        bob_top,
        active,
        pending,
        pending_flag,
        bis,
        bis_a,
        counters,
    )
