"""Cascade kernels (numba): permuted parity words, range parities, batched bisection.

Layout shared by both ends (:class:`Passes`). The key of ``n`` bits is cut
into frames of ``frame_bits`` bits (the last frame holds the remainder
``last_bits``). Pass ``q`` shuffles every frame with the permutation
``perm[q]`` (the last frame with ``perm_last[q]``) and cuts the shuffled
frame into top-level blocks of ``ks[q]`` bits (the last block of a frame may
be shorter). ``words[q, f]`` is frame ``f`` in pass-``q`` order, packed 64
bits to a word, so the parity of any range of a block costs one XOR per word.

Blocks are numbered flat: block ``b`` of frame ``f`` in pass ``q`` is
``boff[q] + f * bpf[q] + b`` (``bpf[q]`` blocks per full frame; the last frame
has ``bpl[q]``).

Rows on demand (:class:`Rows`). Building a row (gathering a frame's bits in
pass order) is most of a pass's cost, and the late passes, whose blocks are
half a frame, almost never find an error: on 10^7 bits at QBER 2.9 % (153
frames, 14 passes) bisections ran in 153, 153, 84 and 2 frames of passes 0-3
and in none after. So a pass with two blocks per full frame (``lazy[q]``) is
not built: the parity of its first block is the parity of the frame's
natural-order words ANDed with ``masks[q]`` (the positions the permutation
puts in that block), the second block's is the frame's parity minus that, and
a row ``words[q, f]`` is built (``built[q, f]``) only when a bisection or a
query needs it. The other passes, and every pass's last frame, are built
whole. Which rows exist changes nothing in the messages: built late or early,
a row equals the frame's current bits in pass order (every flip updates the
rows that exist and the natural-order words).

Bob's bisection state (:class:`BobState`) is a set of arrays, one entry per
running bisection: pass, frame, range ``[start, stop)`` in shuffled order and
Alice's parity of that range. One round answers the parity of the left half
of every running bisection at once; :func:`bob_apply_reply` then narrows each
range, flips a bit when a range shrinks to one bit, and starts new bisections
on every top-level block (of any pass so far) whose parity a flip made odd:
the "cascade" of the protocol's name.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
#: Positions in a frame: u16 (frames up to 2^16 bits) or u32, unsigned (see CascadeLayout).
I32 = npt.NDArray[np.unsignedinteger]
U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]

# indices into Bob's counters array
C_PASS = 0  # current pass (-1 before the first)
C_BIS = 1  # running bisections
C_PENDING = 2  # blocks waiting for a parity check
C_FLIPS = 3  # bits flipped so far
C_ABANDONED = 4  # bisections dropped because their range became even
C_PREV = 5  # bisections Alice was last asked about (whose fates the next request tells)
C_SURV = 6  # of those, how many run on (the first C_SURV entries of bis)
N_COUNTERS = 7


class Passes(NamedTuple):
    """The public layout of every pass (both ends derive it from INIT)."""

    perm: I32  # (passes, frame_bits): shuffled position -> frame position
    perm_last: I32  # (passes, last_bits), the same for the last frame
    inv: I32  # frame position -> shuffled position
    inv_last: I32
    ks: I64  # top-level block size per pass (full frames)
    ks_last: I64  # and in the last frame
    bpf: I64  # blocks per full frame, per pass
    boff: I64  # number of the pass's first block
    frame_bits: int
    last_bits: int
    lazy: U8  # 1: the pass's full-frame rows are built on demand
    masks: U64  # (passes, words per frame): positions of a lazy pass's first block


class Rows(NamedTuple):
    """One end's key and its parity words."""

    bits: U8  # one bit per byte (Bob's is corrected in place)
    words: U64  # (passes, frames, words per frame): frame f in pass-q order
    built: U8  # (passes, frames): 1 once words[q, f] exists (kept current by every flip)
    nat: U64  # (frames, words per frame): every frame in natural order


class BobState(NamedTuple):
    """Bob's bookkeeping: top-level parities, queued blocks, running bisections."""

    alice_top: U8  # Alice's parity of every top-level block (from INIT's reply)
    bob_top: U8  # Bob's, kept current by every flip once its pass started
    active: U8  # 1 while a bisection runs on the block
    pending: I64  # blocks queued for a parity check (a stack)
    pending_flag: U8  # 1 while the block is queued
    bis: I64  # (blocks, 6): pass, frame, start, stop, block, levels asked of each bisection
    bis_a: U8  # Alice's parity of each running bisection's range
    counters: I64  # C_PASS ... C_SURV


class Trail(NamedTuple):
    """What became of the bisections of Bob's last request (the next request tells Alice).

    Apart from :class:`BobState`: the kernels that flip bits and queue blocks get a
    smaller tuple (with these three arrays in it, Bob's step took 208 ms a block
    instead of 105: numba passes a tuple of arrays member by member).
    """

    fate: U8  # per bisection of the last request: 1 if it runs on
    path: I64  # and the halves it took, 1 << levels | bits (bit l: level l went right)
    orig: I64  # scratch: a survivor's place in the last request


class AliceState(NamedTuple):
    """Alice's mirror of Bob's running bisections (rebuilt from his requests)."""

    bis: I64  # (blocks, 6): pass, frame, start, stop, levels, block
    active: U8  # 1 while a bisection runs on the block
    counters: I64  # [0]: running bisections


@numba.njit(cache=True, nogil=True, inline="always")
def _parity64(w: np.uint64) -> np.uint64:  # pragma: no cover
    w ^= w >> np.uint64(32)
    w ^= w >> np.uint64(16)
    w ^= w >> np.uint64(8)
    w ^= w >> np.uint64(4)
    w ^= w >> np.uint64(2)
    w ^= w >> np.uint64(1)
    return w & np.uint64(1)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_parity(words: U64, q: int, f: int, start: int, stop: int) -> int:  # pragma: no cover
    """Parity of bits ``[start, stop)`` of row ``words[q, f]``, indexed in place: a row
    view per call would cost numba a reference count up and down (84 -> 64 ns per
    bisection step without it)."""
    if stop <= start:
        return 0
    ws = start >> 6
    we = (stop - 1) >> 6
    lo = np.uint64(start & 63)
    if ws == we:
        w = words[q, f, ws] >> lo
        length = stop - start
        if length < 64:
            w &= (np.uint64(1) << np.uint64(length)) - np.uint64(1)
        return int(_parity64(w))
    acc = words[q, f, ws] >> lo
    for k in range(ws + 1, we):
        acc ^= words[q, f, k]
    tail = stop - (we << 6)
    last = words[q, f, we]
    if tail < 64:
        last &= (np.uint64(1) << np.uint64(tail)) - np.uint64(1)
    acc ^= last
    return int(_parity64(acc))


@numba.njit(cache=True, nogil=True)
def build_row(rows: Rows, lay: Passes, q: int, f: int) -> None:  # pragma: no cover
    """Fill ``words[q, f]`` with frame ``f`` of the current bits in pass-``q`` order.

    Full words gather four bits per step into four accumulators (independent
    chains), the tail word bit by bit.
    """
    words = rows.words
    nframes = words.shape[1]
    base = f * lay.frame_bits
    size = lay.frame_bits if f < nframes - 1 else lay.last_bits
    p = lay.perm[q] if f < nframes - 1 else lay.perm_last[q]
    row = words[q, f]
    src = rows.bits[base : base + size]
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
    rows.built[q, f] = 1


@numba.njit(cache=True, nogil=True)
def build_rows(rows: Rows, lay: Passes, q: int) -> None:  # pragma: no cover
    """Build every row of pass ``q`` not built yet, except a lazy pass's full frames."""
    nframes = rows.words.shape[1]
    for f in range(nframes):
        if rows.built[q, f] == 0 and (lay.lazy[q] == 0 or f == nframes - 1):
            build_row(rows, lay, q, f)


@numba.njit(cache=True, nogil=True)
def pack_natural(rows: Rows, lay: Passes) -> None:  # pragma: no cover
    """Fill ``nat`` with every frame of the bits in natural order, 64 to a word (LSB first)."""
    nat = rows.nat
    nframes = nat.shape[0]
    for f in range(nframes):
        base = f * lay.frame_bits
        size = lay.frame_bits if f < nframes - 1 else lay.last_bits
        row = nat[f]
        src = rows.bits[base : base + size]
        full = size >> 6
        for w in range(full):
            acc = np.uint64(0)
            y0 = w << 6
            for t in range(64):
                acc |= np.uint64(src[y0 + t]) << np.uint64(t)
            row[w] = acc
        for w in range(full, row.size):
            acc = np.uint64(0)
            y0 = w << 6
            for y in range(y0, min(size, y0 + 64)):
                acc |= np.uint64(src[y]) << np.uint64(y - y0)
            row[w] = acc


@numba.njit(cache=True, nogil=True)
def top_parities(rows: Rows, lay: Passes, q: int, out: U8) -> None:  # pragma: no cover
    """Parity of every top-level block of pass ``q`` into ``out[boff[q] + f * bpf[q] + b]``.

    A lazy pass's full frames from the natural-order words and the pass's
    mask; every other frame from its row (built here if need be).
    """
    words = rows.words
    nframes = words.shape[1]
    off = lay.boff[q]
    bpf = lay.bpf[q]
    for f in range(nframes):
        if lay.lazy[q] != 0 and f < nframes - 1:
            mask = lay.masks[q]
            nat = rows.nat[f]
            first = np.uint64(0)
            whole = np.uint64(0)
            for w in range(nat.size):
                first ^= nat[w] & mask[w]
                whole ^= nat[w]
            p0 = np.uint8(_parity64(first))
            out[off + f * bpf] = p0
            out[off + f * bpf + 1] = p0 ^ np.uint8(_parity64(whole))
            continue
        if rows.built[q, f] == 0:
            build_row(rows, lay, q, f)
        size = lay.frame_bits if f < nframes - 1 else lay.last_bits
        k = lay.ks[q] if f < nframes - 1 else lay.ks_last[q]
        nb = (size + k - 1) // k
        for b in range(nb):
            s = b * k
            out[off + f * bpf + b] = np.uint8(_row_parity(words, q, f, s, min(s + k, size)))


@numba.njit(cache=True, nogil=True)
def alice_init(rows: Rows, lay: Passes, top: U8) -> None:  # pragma: no cover
    """Alice: her natural-order words, the rows built whole, every top-level parity."""
    pack_natural(rows, lay)
    for q in range(lay.ks.size):
        build_rows(rows, lay, q)
        top_parities(rows, lay, q, top)


@numba.njit(cache=True, nogil=True)
def answer_ranges(
    rows: Rows, lay: Passes, qs: U8, fs: I64, ss: I64, es: I64
) -> U8:  # pragma: no cover
    """Alice: parity of each requested range (already validated), building rows on demand."""
    out = np.empty(qs.size, dtype=np.uint8)
    for i in range(qs.size):
        q = qs[i]
        f = fs[i]
        if rows.built[q, f] == 0:
            build_row(rows, lay, q, f)
        out[i] = np.uint8(_row_parity(rows.words, q, f, ss[i], es[i]))
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _queue(st: BobState, blk: int) -> None:  # pragma: no cover
    if st.pending_flag[blk] == 0:
        st.pending_flag[blk] = 1
        st.pending[st.counters[C_PENDING]] = blk
        st.counters[C_PENDING] += 1


@numba.njit(cache=True, nogil=True)
def _flip(x: int, rows: Rows, lay: Passes, st: BobState) -> None:  # pragma: no cover
    """Flip Bob's bit ``x`` in the natural words and every row that exists; queue the
    blocks it touches in the passes started so far."""
    words = rows.words
    nframes = words.shape[1]
    c = st.counters
    rows.bits[x] ^= np.uint8(1)
    f = x // lay.frame_bits
    i = x - f * lay.frame_bits
    rows.nat[f, i >> 6] ^= np.uint64(1) << np.uint64(i & 63)
    for q in range(lay.ks.size):
        started = q <= c[C_PASS]
        built = rows.built[q, f] != 0
        if not (started or built):
            continue
        if f < nframes - 1:
            y = lay.inv[q, i]
            blk = lay.boff[q] + f * lay.bpf[q] + y // lay.ks[q]
        else:
            y = lay.inv_last[q, i]
            blk = lay.boff[q] + f * lay.bpf[q] + y // lay.ks_last[q]
        if built:
            words[q, f, y >> 6] ^= np.uint64(1) << np.uint64(y & 63)
        if not started:
            continue  # built ahead of time: its parities come at its start
        st.bob_top[blk] ^= np.uint8(1)
        _queue(st, blk)
    c[C_FLIPS] += 1


@numba.njit(cache=True, nogil=True)
def _drain_pending(rows: Rows, lay: Passes, st: BobState) -> None:  # pragma: no cover
    """Start a bisection on every queued block whose parity differs from Alice's."""
    nframes = rows.words.shape[1]
    npasses = lay.ks.size
    c = st.counters
    while c[C_PENDING] > 0:
        c[C_PENDING] -= 1
        blk = st.pending[c[C_PENDING]]
        st.pending_flag[blk] = 0
        if st.active[blk] != 0 or st.bob_top[blk] == st.alice_top[blk]:
            continue
        q = 0
        while q + 1 < npasses and lay.boff[q + 1] <= blk:
            q += 1
        rel = blk - lay.boff[q]
        f = min(rel // lay.bpf[q], nframes - 1)  # the last frame may hold more blocks
        b = rel - f * lay.bpf[q]
        size = lay.frame_bits if f < nframes - 1 else lay.last_bits
        k = lay.ks[q] if f < nframes - 1 else lay.ks_last[q]
        s = b * k
        e = min(s + k, size)
        if e - s == 1:
            # a one-bit block: its parity is Alice's bit, so the error is located
            x = lay.perm[q, s] if f < nframes - 1 else lay.perm_last[q, s]
            _flip(f * lay.frame_bits + x, rows, lay, st)
            continue
        if rows.built[q, f] == 0:
            build_row(rows, lay, q, f)
        j = c[C_BIS]
        st.bis[j, 0] = q
        st.bis[j, 1] = f
        st.bis[j, 2] = s
        st.bis[j, 3] = e
        st.bis[j, 4] = blk
        st.bis_a[j] = st.alice_top[blk]
        st.active[blk] = 1
        c[C_BIS] += 1


@numba.njit(cache=True, nogil=True)
def bob_start_pass(q: int, rows: Rows, lay: Passes, st: BobState) -> None:  # pragma: no cover
    """Compare pass ``q``'s block parities with Alice's, start bisections."""
    build_rows(rows, lay, q)
    top_parities(rows, lay, q, st.bob_top)
    st.counters[C_PASS] = q
    end = lay.boff[q + 1] if q + 1 < lay.ks.size else st.pending.size  # a slot per block
    for rel in range(end - lay.boff[q] - 1, -1, -1):
        blk = lay.boff[q] + rel
        if st.bob_top[blk] != st.alice_top[blk]:
            _queue(st, blk)
    _drain_pending(rows, lay, st)


@numba.njit(cache=True, nogil=True)
def bob_build_ahead(rows: Rows, lay: Passes) -> None:  # pragma: no cover
    """Build every row that is built whole (see the module docstring) from Bob's bits."""
    for q in range(lay.ks.size):
        build_rows(rows, lay, q)


@numba.njit(cache=True, nogil=True, inline="always")
def _levels(length: int, tail: bool, tail_levels: int) -> int:  # pragma: no cover
    """Levels a bisection of ``length`` bits descends this round (see :func:`bob_levels`)."""
    d = 1
    if tail:
        while d < tail_levels and (length >> (d + 1)) > 0:
            d += 1  # every node down to depth d keeps at least two bits
    return d


@numba.njit(cache=True, nogil=True)
def bob_levels(
    bis: I64, count: int, tail_running: int, tail_levels: int, column: int = 5
) -> int:  # pragma: no cover
    """Levels of each running bisection this round into ``bis[j, column]``; the parities
    asked.

    Each running bisection asks the left half of its range (one level). In the
    tail, while at most ``tail_running`` bisections run, each asks ``d`` levels at
    once (``d = min(tail_levels, floor(log2(length)))``): the left half of every
    node of the complete binary tree of depth ``d`` under its range, in heap
    order (node ``i``'s halves are nodes ``2i + 1`` and ``2i + 2``), so that it
    descends ``d`` levels in one round for ``2^d - 1`` disclosed parities instead
    of ``d``. Alice derives the same (:func:`alice_step`, her levels in column 4).
    """
    tail = count <= tail_running
    total = 0
    for j in range(count):
        d = _levels(bis[j, 3] - bis[j, 2], tail, tail_levels)
        bis[j, column] = d
        total += (1 << d) - 1
    return total


@numba.njit(cache=True, nogil=True)
def bob_step_parts(
    st: BobState, tr: Trail, prev: int, surv: int, count: int
) -> tuple[U8, U8, int, U32]:  # pragma: no cover
    """A request's body: which of the ``prev`` bisections last asked run on (a bit each),
    the halves the survivors took (their levels' bits, in order), and the blocks of the
    bisections started since (``bis[surv:count, 4]``)."""
    fate = np.zeros((prev + 7) >> 3, dtype=np.uint8)
    npath = 0
    for j in range(prev):
        if tr.fate[j]:
            fate[j >> 3] |= np.uint8(1 << (j & 7))
            p = tr.path[j]
            while p > 1:
                npath += 1
                p >>= 1
    path = np.zeros((npath + 7) >> 3, dtype=np.uint8)
    k = 0
    for j in range(prev):
        if tr.fate[j]:
            p = tr.path[j]
            while p > 1:
                if p & 1:
                    path[k >> 3] |= np.uint8(1 << (k & 7))
                k += 1
                p >>= 1
    new = np.empty(count - surv, dtype=np.uint32)
    for j in range(surv, count):
        new[j - surv] = st.bis[j, 4]
    return fate, path, npath, new


#: alice_step's refusals
STEP_OK = 0
STEP_BAD_PATH = 1  # more or fewer halves than the survivors' levels
STEP_LOCATED = 2  # a survivor (or a new block) of fewer than two bits
STEP_BAD_BLOCK = 3  # a block number out of range or already running


@numba.njit(cache=True, nogil=True)
def alice_step(
    rows: Rows, lay: Passes, ast: AliceState, fate: U8, path: U8, npath: int, new: U32,
    tail_running: int, tail_levels: int,
) -> tuple[int, U8]:  # pragma: no cover
    """Alice: apply Bob's request to her mirror of his bisections, then answer every
    range he now asks (:func:`bob_levels`), building rows on demand.

    Returns (``STEP_OK``, parities) or a refusal code (and no parity): the
    mirror is then inconsistent and the block must end.
    """
    nframes = rows.words.shape[1]
    npasses = lay.ks.size
    bis = ast.bis
    count = ast.counters[0]
    keep = 0
    k = 0
    empty = np.zeros(0, dtype=np.uint8)
    for j in range(count):
        blk = bis[j, 5]
        if (fate[j >> 3] >> (j & 7)) & 1 == 0:
            ast.active[blk] = 0
            continue
        s = bis[j, 2]
        e = bis[j, 3]
        for _level in range(bis[j, 4]):
            if k >= npath:
                return STEP_BAD_PATH, empty
            mid = (s + e) // 2
            if (path[k >> 3] >> (k & 7)) & 1:
                s = mid
            else:
                e = mid
            k += 1
        if e - s < 2:
            return STEP_LOCATED, empty
        bis[keep, 0] = bis[j, 0]
        bis[keep, 1] = bis[j, 1]
        bis[keep, 2] = s
        bis[keep, 3] = e
        bis[keep, 5] = blk
        keep += 1
    if k != npath:
        return STEP_BAD_PATH, empty
    total_blocks = ast.active.size
    for i in range(new.size):
        blk = np.int64(new[i])
        if blk >= total_blocks or ast.active[blk] != 0:
            return STEP_BAD_BLOCK, empty
        q = 0
        while q + 1 < npasses and lay.boff[q + 1] <= blk:
            q += 1
        rel = blk - lay.boff[q]
        f = min(rel // lay.bpf[q], nframes - 1)
        b = rel - f * lay.bpf[q]
        size = lay.frame_bits if f < nframes - 1 else lay.last_bits
        kq = lay.ks[q] if f < nframes - 1 else lay.ks_last[q]
        s = b * kq
        e = min(s + kq, size)
        if s >= size or e - s < 2:
            return STEP_LOCATED, empty
        ast.active[blk] = 1
        bis[keep, 0] = q
        bis[keep, 1] = f
        bis[keep, 2] = s
        bis[keep, 3] = e
        bis[keep, 5] = blk
        keep += 1
    ast.counters[0] = keep
    total = bob_levels(bis, keep, tail_running, tail_levels, 4)
    out = np.empty(total, dtype=np.uint8)
    lo = np.empty(1 << tail_levels, dtype=np.int64)
    hi = np.empty(1 << tail_levels, dtype=np.int64)
    o = 0
    for j in range(keep):
        q = bis[j, 0]
        f = bis[j, 1]
        if rows.built[q, f] == 0:
            build_row(rows, lay, q, f)
        lo[0] = bis[j, 2]
        hi[0] = bis[j, 3]
        width = 1  # the tree's ranges at this level, left to right
        for _level in range(bis[j, 4]):
            for r in range(width):
                out[o] = np.uint8(_row_parity(rows.words, q, f, lo[r], (lo[r] + hi[r]) // 2))
                o += 1
            for r in range(width - 1, -1, -1):  # split in place, from the right
                mid = (lo[r] + hi[r]) // 2
                lo[2 * r + 1] = mid
                hi[2 * r + 1] = hi[r]
                hi[2 * r] = mid
                lo[2 * r] = lo[r]
            width *= 2
    return STEP_OK, out


@numba.njit(cache=True, nogil=True)
def bob_apply_reply(
    reply: U8, rows: Rows, lay: Passes, st: BobState, tr: Trail
) -> None:  # pragma: no cover
    """Narrow every running bisection with Alice's parities ``reply`` (as asked by
    :func:`bob_levels`: ``bis[j, 5]`` levels each)."""
    words = rows.words
    nframes = words.shape[1]
    bis = st.bis
    bis_a = st.bis_a
    c = st.counters
    count = c[C_BIS]
    keep = 0
    k = 0  # the first parity of bisection j in the reply
    for j in range(count):
        q = bis[j, 0]
        f = bis[j, 1]
        s = bis[j, 2]
        e = bis[j, 3]
        blk = bis[j, 4]
        d = bis[j, 5]
        a = bis_a[j]
        base = k
        k += (1 << d) - 1
        tr.fate[j] = 0
        if _row_parity(words, q, f, s, e) == a:
            # a flip elsewhere made this range even: drop it, recheck its block
            st.active[blk] = 0
            c[C_ABANDONED] += 1
            _queue(st, blk)
            continue
        node = 0
        taken = np.int64(1) << d
        for level in range(d):
            mid = (s + e) // 2
            a_left = reply[base + node]
            if _row_parity(words, q, f, s, mid) != a_left:
                e = mid
                a = a_left
                node = 2 * node + 1
            else:
                s = mid
                a = a ^ a_left
                node = 2 * node + 2
                taken |= np.int64(1) << level
            if e - s == 1:
                break
        if e - s == 1:
            st.active[blk] = 0
            y = s
            if ((words[q, f, y >> 6] >> np.uint64(y & 63)) & np.uint64(1)) != a:
                x = lay.perm[q, y] if f < nframes - 1 else lay.perm_last[q, y]
                _flip(f * lay.frame_bits + x, rows, lay, st)
            _queue(st, blk)
            continue
        bis[keep, 0] = q
        bis[keep, 1] = f
        bis[keep, 2] = s
        bis[keep, 3] = e
        bis[keep, 4] = blk
        bis_a[keep] = a
        tr.fate[j] = 1
        tr.path[j] = taken
        tr.orig[keep] = j
        keep += 1
    # drop bisections that flips of this round made even before asking about them
    count = keep
    keep = 0
    for j in range(count):
        if _row_parity(words, bis[j, 0], bis[j, 1], bis[j, 2], bis[j, 3]) == bis_a[j]:
            blk = bis[j, 4]
            tr.fate[tr.orig[j]] = 0
            st.active[blk] = 0
            c[C_ABANDONED] += 1
            _queue(st, blk)
            continue
        if keep != j:
            bis[keep] = bis[j]
            bis_a[keep] = bis_a[j]
        keep += 1
    c[C_BIS] = keep
    c[C_SURV] = keep
    _drain_pending(rows, lay, st)


@numba.njit(cache=True, nogil=True, inline="always")
def _splitmix64(x: np.uint64) -> tuple[np.uint64, np.uint64]:  # pragma: no cover
    """SplitMix64 (Steele, Lea and Flood 2014): the next state and its output."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    z = x
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x, z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def shuffles(seed: np.uint64, perm: I32, inv: I32) -> np.uint64:  # pragma: no cover
    """Fill each row of ``perm`` with a uniform random permutation (Fisher-Yates, the
    index drawn without bias by Lemire's multiply-and-reject) and ``inv`` with its
    inverse; returns the generator's state after them (to continue another set)."""
    x = seed
    size = perm.shape[1]
    for q in range(perm.shape[0]):
        p = perm[q]
        for i in range(size):
            p[i] = i
        for i in range(size - 1, 0, -1):
            n = np.uint64(i + 1)
            x, r = _splitmix64(x)
            m = (r >> np.uint64(32)) * n
            low = m & np.uint64(0xFFFFFFFF)
            if low < n:
                floor = (np.uint64(1 << 32) - n) % n
                while low < floor:
                    x, r = _splitmix64(x)
                    m = (r >> np.uint64(32)) * n
                    low = m & np.uint64(0xFFFFFFFF)
            j = m >> np.uint64(32)
            t = p[i]
            p[i] = p[j]
            p[j] = t
        row = inv[q]
        for i in range(size):
            row[p[i]] = i
    return x
