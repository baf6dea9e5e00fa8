"""The two ends of the link, actors that share nothing: :class:`Transmitter`, :class:`Receiver`.

Each holds only its own half of the quantum channel's output (Alice: her
source's records; Bob: his detections, :class:`~qkdmeet.qkd.channel.BobChunk`)
and talks to the other only through an
:class:`~qkdmeet.qkd.classical.AuthenticatedChannel`.

One block (messages in :mod:`qkdmeet.qkd.messages`):

1. Bob collects detections until about ``block_bits`` sifted X bits are
   expected, and ANNOUNCEs the block: its pulse range, his detections' pulse
   indices and bases.
2. Alice answers (SIFT_REPLY) with her basis and intensity for every
   announced detection and her Z-basis bits; both now hold the sifted X and
   Z sets (:mod:`qkdmeet.qkd.kernels.sifting`).
3. Bob sends his Z bits (ESTIMATE). Both count the Z errors per intensity and
   compute the decoy-state bounds of Lim et al. 2014
   (:func:`qkdmeet.qkd.finite_key.estimate`) from the block's own counts;
   the block is aborted when the phase-error bound reaches the tolerance or
   the single-photon bound collapses. Otherwise ESTIMATE also carries
   Cascade's INIT request.
4. Cascade (EC_REQUEST / EC_REPLY ... EC_DONE); both count the disclosed
   parity bits, lambda_EC.
5. Alice computes l = secret_key_length(estimate, lambda_EC) and sends
   VERIFY: l, a verification seed and her tag, and the privacy-amplification
   seed. Bob checks l, compares tags and answers VERDICT.
6. Both hash to l bits (rounded down to bytes), top up the authentication
   key pools from the result (:meth:`qkdmeet.qkd.classical.AuthKeys.refill`)
   and hand the rest to their :class:`~qkdmeet.qkd.sink.KeySink` as block
   ``block_id``, in block order.

Authentication is per block, not per message: every message of a block
travels open and goes into the block's transcript hash (a Wegman-Carter
Poly1305 stream, :class:`~qkdmeet.crypto.wegman_carter.MacStream`); VERIFY is
tagged over the whole transcript (both directions, in order: a block's
messages strictly alternate), VERDICT over VERIFY's tag. Bob checks VERIFY
before he uses anything of the block, Alice checks VERDICT before she does:
one 256-bit mask per direction per block (was one per message, ~19 % of a
4e6-bit block's key), and a changed, injected or dropped message costs only
its block. Every bit either end discloses about the sifted key is charged to
lambda_EC: Alice's parities and Bob's 64-bit count of corrected bits in EC_DONE.

Blocks are pipelined: Bob keeps :data:`DEFAULT_PIPELINE_DEPTH` blocks in
flight, each a task of its own at both ends, and a dispatcher routes frames
by block id, so one block's sifting or hashing runs while another waits for
a Cascade round trip. Blocks finish in block order at both ends (refill and
delivery), so both pools and both key streams stay alike.

A block that fails anywhere (bounds, verification, an unauthentic or
unexpected message, a peer's ABORT) gives no key at either end and is
reported; the link goes on with the next block. Only a closed channel or an
exhausted authentication key stops an actor.

Numeric work runs in worker threads (the kernels release the GIL); the two
ends run in processes of their own in the demo and ``qkdmeet qkd simulate``.

Known limit: Bob delivers a block when he sends VERDICT, Alice when she has
checked it. A VERDICT lost or forged on the way leaves that block at Bob only,
and the next refills of the two ends' authentication pools differ, so later
checkpoints fail until the link is re-keyed from a fresh pre-shared secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from qkdmeet.crypto.wegman_carter import MacStream
from qkdmeet.errors import BlockError, QkdError
from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd import messages as m
from qkdmeet.qkd.channel import BobChunk
from qkdmeet.qkd.classical import (
    AuthenticatedChannel,
    AuthenticationError,
    ChannelClosed,
    ClassicalChannelError,
    Received,
)
from qkdmeet.qkd.events import AliceEvents, BobEvents
from qkdmeet.qkd.kernels import (
    PackedBits,
    ReconcilerAlice,
    ReconcilerBob,
    SiftResult,
    alice_sift,
    amplification_seed_bits,
    amplify,
    bob_sift,
    pack_bits,
    verification_seed_bits,
    verification_tag,
    verification_tag_bits,
    z_errors_per_intensity,
)
from qkdmeet.qkd.kernels.codes import CodeError, pack_codes, unpack_codes
from qkdmeet.qkd.params import DEFAULT_PIPELINE_DEPTH, LinkParams
from qkdmeet.qkd.sink import KeyBlock, KeySink

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Floor and ceiling of the QBER estimate that sizes Cascade's first blocks.
_QBER_FLOOR, _QBER_CEIL = 0.005, 0.25
class InternalBlockError(QkdError):
    """A defect met inside one block's protocol: the block is aborted and reported with
    this reason (its key is never output), the link and the other blocks go on."""




@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    """What both ends must agree on (checked in HELLO through :meth:`fingerprint`).

    ``block_bits``: target sifted X bits per block; ``pa_family``: the
    privacy-amplification hash family; ``link_id``: names the link in key blocks.
    """

    block_bits: int = 1_000_000
    pa_family: str = "multiply-add-shift"
    link_id: str = "link-ab"
    phase_error_tolerance: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 < self.phase_error_tolerance <= fk.PHASE_ERROR_TOLERANCE:
            raise ValueError("phase_error_tolerance must be in (0, 0.5]")
        if not isinstance(self.block_bits, int) or self.block_bits < 1000:
            raise ValueError(f"block_bits must be an integer >= 1000, got {self.block_bits!r}")
        if self.pa_family not in ("toeplitz", "multiply-add-shift"):
            raise ValueError(f"unknown privacy amplification family {self.pa_family!r}")

    def fingerprint(self, params: LinkParams) -> bytes:
        public = (
            params.mu, params.p_mu, params.q_x, params.eps_sec, params.eps_cor,
            self.block_bits, self.pa_family, self.link_id, self.phase_error_tolerance,
            m.PROTOCOL_VERSION,
        )  # fmt: skip
        return hashlib.sha256(repr(public).encode()).digest()[:16]


@dataclass
class BlockReport:
    """What one block gave (the same at both ends for the shared fields)."""

    block_id: int
    ok: bool
    reason: str = ""
    pulses: int = 0
    first_pulse: int = -1  # index of the block's first pulse (-1: not known)
    detections: int = 0
    n_x: int = 0
    n_z: int = 0
    counts: fk.DecoyCounts | None = None
    qber_z: float = math.nan
    qber_x: float = math.nan
    phase_error_bound: float = math.nan
    s_x1: float = math.nan
    leaked_bits: int = 0
    key_length: int = 0  # l from eq. 1 (bits)
    auth_bits: int = 0  # kept back for authentication
    secure_bits: int = 0  # delivered to the sink
    ec_efficiency: float = math.nan
    ec_rounds: int = 0
    messages: int = 0  # classical messages of the block, both directions
    finished_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "counts"}
        if self.counts is not None:
            out["counts"] = {"n_x": self.counts.n_x, "n_z": self.counts.n_z, "m_z": self.counts.m_z}
        return out


@dataclass
class EndStats:
    """Counters of one end."""

    blocks: int = 0
    aborted_blocks: int = 0
    secure_bits: int = 0
    auth_bits: int = 0
    sifted_bits: int = 0
    leaked_bits: int = 0
    stale_messages: int = 0
    refused_announcements: int = 0
    abort_reasons: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    last: BlockReport | None = None
    reports: list[BlockReport] = field(default_factory=list)


class PeerAbort(QkdError):
    """The other end aborted the block."""


#: Disclosed with EC_DONE: Bob's count of corrected bits, a u64, charged to lambda_EC.
EC_DONE_DISCLOSED_BITS = 64
#: Cascade requests one block may make before it is aborted (a block at 3 % QBER needs
#: about 350; one of a cut fibre's dark counts never stops).
MAX_EC_REQUESTS = 2048
#: Block ids past the last verified one that an ANNOUNCE may start at the transmitter
#: (2^20: ~6 days of blocks aborted in a row at the back-off's 2 s).
ANNOUNCE_WINDOW = 1 << 20
#: Blocks the transmitter runs at once (announcements beyond are refused and counted).
MAX_BLOCKS_IN_FLIGHT = 16


#: Direction bytes of the messages in a block's transcript.
_FROM_ALICE, _FROM_BOB = b"\x00", b"\x01"


def transcript_piece(from_alice: bool, payload: bytes) -> bytes:
    """What a block's transcript hash takes in before a message: its direction and length.

    A block's messages strictly alternate (Bob, Alice, Bob, ...), so both ends
    see them in the same order; with the direction and length of each the
    hashed string determines the transcript (no two transcripts hash the same
    bytes), and the checkpoint's own payload and header come last.
    """
    return (_FROM_ALICE if from_alice else _FROM_BOB) + m.u32(len(payload))


def _decision(
    counts: fk.DecoyCounts, params: LinkParams, tolerance: float
) -> tuple[fk.DecoyEstimate, str]:
    """The estimate and the abort reason ('' to go on): the same function at both ends.

    Aborts when the single-photon bound collapses, when the phase-error bound
    reaches ``tolerance``, or when no key could remain even if error
    correction disclosed only the Shannon limit n_X h(QBER_Z).
    """
    est = fk.estimate(counts, params)
    if counts.total_x == 0 or counts.total_z == 0:
        return est, "no sifted detections"
    if not est.s_x1 > 0.0:
        return est, "single-photon bound collapsed (s_X1 = 0)"
    if est.aborted or not est.phi_x < tolerance:
        return est, f"phase-error bound {est.phi_x:.3g} at or above tolerance {tolerance:g}"
    shannon = counts.total_x * fk.binary_entropy(counts.qber_z)
    if fk.key_length_bound(est, shannon, params) < 8:
        return est, "finite-key length would be zero (too few single-photon detections)"
    return est, ""


@dataclass(eq=False)
class _Block:
    """One block in flight: its inbox, its transcript, its place in the delivery order."""

    bid: int
    report: BlockReport
    inbox: asyncio.Queue[tuple[Received, m.Message] | BaseException] = field(
        default_factory=asyncio.Queue
    )
    mac: MacStream | None = None
    sent: int = 0
    received: int = 0
    #: The tag of VERIFY: the VERDICT's tag covers it (and so the whole transcript).
    verify_tag: bytes = b""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set once the block's checkpoints are through: it is delivered even at a stop.
    delivering: bool = False
    task: asyncio.Task[None] | None = None


class _End:
    """What both actors share: per-block messaging and authentication, ordering, reporting.

    Blocks overlap: each runs in a task of its own, a dispatcher routes the
    channel's frames to them by block id, and blocks are finished (privacy
    amplification aside, which runs as soon as the block is through) in block
    order, so both ends refill their authentication pools and deliver key in
    the same order.

    Authentication is per block: every message inside a block travels open
    and is appended to the block's transcript; Alice's VERIFY and Bob's
    VERDICT are tagged over the whole transcript of both directions (what the
    sender sent and received), and each end checks the other's checkpoint
    before any of the block's key is output or used. A changed, injected,
    dropped or replayed message makes a checkpoint fail: the block gives no
    key, and only that block is lost.
    """

    transmitter: bool

    def __init__(
        self,
        params: LinkParams,
        channel: AuthenticatedChannel,
        sink: KeySink,
        config: ProtocolConfig,
        *,
        first_block: int = 0,
    ) -> None:
        self.params = params
        self.channel = channel
        self.sink = sink
        self.config = config
        self.next_block = first_block
        self.stats = EndStats()
        self._keep_reports = 1000
        self.on_block: Callable[[BlockReport], None] | None = None
        #: Seconds to wait for the peer's next message inside a block before aborting it.
        self.recv_timeout = 20.0
        self._blocks: dict[int, _Block] = {}

    async def _timed(self, stage: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread; its CPU time (not wall time) counts to ``stage``."""

        def work() -> tuple[T, float]:
            t0 = time.thread_time()
            out = fn(*args)
            return out, time.thread_time() - t0

        out, cpu = await asyncio.to_thread(work)
        d = self.stats.stage_seconds
        d[stage] = d.get(stage, 0.0) + cpu
        return out

    def _inline(self, stage: str, t0: float) -> None:
        """Count the event-loop thread's CPU time since ``t0`` (``time.thread_time()``)."""
        d = self.stats.stage_seconds
        d[stage] = d.get(stage, 0.0) + time.thread_time() - t0

    # -- blocks and their messages --------------------------------------------------

    def _open_block(self, bid: int) -> _Block:
        blk = _Block(bid, BlockReport(bid, ok=False))
        self._blocks[bid] = blk
        return blk

    def _hash(self, blk: _Block, payload: bytes, *, from_alice: bool) -> None:
        if blk.mac is None:
            blk.mac = self.channel.transcript_mac()
        blk.mac.update(transcript_piece(from_alice, payload))
        blk.mac.update(payload)

    def _checkpoint_mac(self, blk: _Block, kind: int) -> MacStream:
        """VERIFY closes the block's transcript; VERDICT covers VERIFY's tag (which covers it)."""
        if kind == m.VERIFY:
            mac = blk.mac if blk.mac is not None else self.channel.transcript_mac()
            blk.mac = None
            return mac
        mac = self.channel.transcript_mac()
        mac.update(blk.verify_tag)
        return mac

    async def _send(self, blk: _Block, kind: int, *parts: bytes) -> None:
        payload = m.encode(kind, blk.bid, *parts)
        self._hash(blk, payload, from_alice=self.transmitter)
        blk.sent += 1
        await self.channel.send_open(payload)

    async def _checkpoint(self, blk: _Block, kind: int, *parts: bytes) -> int:
        """Send the block's checkpoint, tagged over its transcript; the mask's seq."""
        payload = m.encode(kind, blk.bid, *parts)
        mac = self._checkpoint_mac(blk, kind)
        seq, tag = await self.channel.send_tagged(payload, mac)
        if kind == m.VERIFY:
            blk.verify_tag = tag
        blk.sent += 1
        return seq

    async def _recv(self, blk: _Block, *kinds: int) -> tuple[m.Message, int]:
        """The block's next message and, for a checkpoint, its seq (checked), else -1."""
        try:
            async with asyncio.timeout(self.recv_timeout):
                item = await blk.inbox.get()
        except TimeoutError:
            raise m.ProtocolError(
                f"no answer in {self.recv_timeout:g} s (block {blk.bid})"
            ) from None
        if isinstance(item, BaseException):
            raise item
        frame, msg = item
        if msg.kind == m.ABORT:
            raise PeerAbort(bytes(msg.body).decode("utf-8", "replace")[:200])
        if msg.kind not in kinds:
            raise m.ProtocolError(
                f"expected {'/'.join(m.NAMES[k] for k in kinds)} for block {blk.bid}, "
                f"got {msg.name}"
            )
        checkpoint = msg.kind in (m.VERIFY, m.VERDICT)
        if checkpoint != frame.tagged:
            raise AuthenticationError(
                f"{msg.name} for block {blk.bid} {'untagged' if checkpoint else 'tagged'}"
            )
        seq = -1
        if frame.seq is not None:
            await self.channel.check(frame, self._checkpoint_mac(blk, msg.kind))
            if msg.kind == m.VERIFY:
                blk.verify_tag = frame.tag
            seq = frame.seq
        else:
            self._hash(blk, frame.payload, from_alice=not self.transmitter)
        blk.received += 1
        return msg, seq

    def _new_block(self, frame: Received, msg: m.Message) -> bool:
        """A message for no block in flight: start one (Alice's ANNOUNCE) or False (stale)."""
        return False

    async def _dispatch(self) -> None:
        """Route every frame to its block until the channel closes."""
        try:
            while True:
                try:
                    frame = await self.channel.recv_frame()
                    msg = m.decode(frame.payload)
                except (AuthenticationError, m.ProtocolError) as exc:
                    # a frame lost in transit: one of the blocks in flight will never
                    # complete, so none of them can; abort them now rather than at a timeout
                    for blk in list(self._blocks.values()):
                        blk.inbox.put_nowait(AuthenticationError(f"a frame was lost: {exc}"))
                    continue
                blk = self._blocks.get(msg.block_id)
                if blk is not None:
                    blk.inbox.put_nowait((frame, msg))
                elif not self._new_block(frame, msg):
                    self.stats.stale_messages += 1
        except BaseException as exc:
            for blk in list(self._blocks.values()):
                blk.inbox.put_nowait(exc if isinstance(exc, Exception) else ChannelClosed())
            raise

    async def _hello(self, first: bool) -> None:
        """Agree on the link, its parameters and the next block id (the larger of the two)."""
        body = (
            m.u8(m.PROTOCOL_VERSION)
            + m.blob(self.config.link_id.encode())
            + m.u64(self.next_block)
            + m.blob(self.config.fingerprint(self.params))
        )
        if first:
            await self.channel.send(m.encode(m.HELLO, 0, body))
        msg = m.decode(await self.channel.recv())
        if msg.kind != m.HELLO:
            raise m.ProtocolError(f"expected HELLO, got {msg.name}")
        r = m.Reader(msg.body)
        version, link_id, their_next, fp = r.u8(), r.blob(), r.u64(), r.blob()
        r.end()
        if version != m.PROTOCOL_VERSION or link_id != self.config.link_id.encode():
            raise m.ProtocolError(f"peer speaks version {version} for link {bytes(link_id)!r}")
        if fp != self.config.fingerprint(self.params):
            raise m.ProtocolError("peer uses other link parameters (preset, block size, eps)")
        if not first:
            await self.channel.send(m.encode(m.HELLO, 0, body))
        self.next_block = max(self.next_block, their_next)

    # -- the end of a block -------------------------------------------------------------

    async def _run_guarded(self, blk: _Block, body: Callable[[], Awaitable[None]]) -> None:
        """Run a block's protocol, failing it on any block error, then close it in order."""
        try:
            await body()
        except PeerAbort as exc:
            await self._fail(blk, exc, tell_peer=False)
        except BlockError as exc:
            await self._fail(blk, exc, tell_peer=True)
        except ChannelClosed:
            pass  # the link stops: the block is neither done nor aborted
        except Exception as exc:  # a defect: this block yields nothing, the link goes on
            log.exception("block %d: internal error", blk.bid)
            await self._fail(blk, InternalBlockError(f"internal error: {exc!r}"), tell_peer=True)
        finally:
            if not blk.done.is_set():  # cancelled: keep the order for the blocks after it
                blk.done.set()
            self._blocks.pop(blk.bid, None)

    async def _in_order(self, blk: _Block) -> None:
        """Wait until every block in flight with a smaller id is done (block-id order)."""
        while True:
            earlier = [b for b in self._blocks.values() if b.bid < blk.bid and not b.done.is_set()]
            if not earlier:
                return
            await min(earlier, key=lambda b: b.bid).done.wait()

    def _record(self, report: BlockReport) -> None:
        self._finished_block(report.block_id)
        s = self.stats
        report.finished_at = time.time()
        if report.ok:
            s.blocks += 1
            s.secure_bits += report.secure_bits
            s.auth_bits += report.auth_bits
            s.leaked_bits += report.leaked_bits
        else:
            s.aborted_blocks += 1
            # one key per kind of reason: the figures in it vary from block to block
            key = re.sub(r"\d[\d.e+-]*", "#", report.reason.split(" (")[0])[:60]
            s.abort_reasons[key] = s.abort_reasons.get(key, 0) + 1
        s.sifted_bits += report.n_x
        s.last = report
        s.reports.append(report)
        del s.reports[: -self._keep_reports]
        if self.on_block is not None:
            self.on_block(report)
        log.info(
            "%s block %d: %s%s", "Alice" if self.transmitter else "Bob", report.block_id,
            f"{report.secure_bits} secure bits" if report.ok else "aborted: ", report.reason,
        )  # fmt: skip

    async def _fail(self, blk: _Block, exc: BaseException, tell_peer: bool) -> None:
        report = blk.report
        report.ok = False
        report.reason = str(exc) or type(exc).__name__
        if tell_peer:
            with contextlib.suppress(ClassicalChannelError, ConnectionError):
                await self._send(blk, m.ABORT, report.reason.encode()[:200])
        await self._end_without_key(blk)

    async def _end_without_key(self, blk: _Block) -> None:
        """Close a block that gives no key (its report says why), in block order."""
        self._close_report(blk)
        await self._in_order(blk)
        self._record(blk.report)
        blk.done.set()

    def _close_report(self, blk: _Block) -> None:
        blk.report.messages = blk.sent + blk.received

    async def _finish(
        self,
        blk: _Block,
        bits: npt.NDArray[np.uint8],
        seed: PackedBits,
        out_bits: int,
        est: fk.DecoyEstimate,
        seqs: tuple[int, int],
    ) -> None:
        """Privacy amplification now, then key refill and delivery in block order.

        ``seqs``: the masks of the block's two checkpoints (this end's outgoing
        and incoming one), the same at both ends, so both refill alike.
        """
        blk.delivering = True
        report = blk.report
        self._close_report(blk)
        key = (
            await self._timed("privacy_amplification", amplify, bits, seed, out_bits,
                              self.config.pa_family)
            if out_bits
            else np.zeros(0, np.uint8)
        )  # fmt: skip
        await self._in_order(blk)
        if key.size == 0:
            report.reason = "finite-key length is zero after error correction"
        else:
            report.ok = True
            self._verified(blk.bid)
            packed = pack_bits(key)
            taken = self.channel.keys.refill(
                packed, seqs[0] + 1, seqs[1] + 1, transmitter=self.transmitter
            )
            rest = packed[taken:]
            report.auth_bits = taken * 8
            report.secure_bits = len(rest) * 8
            if rest:
                await self.sink.put(
                    KeyBlock(
                        self.config.link_id,
                        report.block_id,
                        rest,
                        qber=report.qber_x,
                        phase_error_bound=est.phi_x,
                        created_at=time.time(),
                    )
                )
        self._record(report)
        blk.done.set()

    def _finished_block(self, bid: int) -> None:
        """Block ``bid`` is over (key or not): the next HELLO offers a later id."""
        self.next_block = max(self.next_block, bid + 1)

    def _verified(self, bid: int) -> None:
        """Block ``bid`` passed both checkpoints (the transmitter moves its window)."""

    async def _drain(self) -> None:
        """At a stop: finish the blocks past their checkpoints, cancel the others."""
        blocks = [b for b in self._blocks.values() if b.task is not None]
        for blk in blocks:
            if not blk.delivering and blk.task is not None:
                blk.task.cancel()
        tasks = [b.task for b in blocks if b.task is not None]
        if tasks:
            await asyncio.wait(tasks)

    def _fill_estimate(self, report: BlockReport, counts: fk.DecoyCounts) -> None:
        report.counts = counts
        report.n_x, report.n_z = counts.total_x, counts.total_z
        report.qber_z = counts.qber_z


async def _stop_tasks(*tasks: asyncio.Task[Any]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _pack_codes(sift: SiftResult) -> bytes:
    return m.blob(pack_codes(sift.reply_basis, sift.reply_intensity))


def _unpack_codes(raw: bytes, n: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    try:
        return unpack_codes(raw, n)
    except CodeError as exc:
        raise m.ProtocolError(str(exc)) from None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("key delivery failed: %s", task.exception(), exc_info=task.exception())


def _ec_figures(report: BlockReport, errors: int, n: int, leaked: int) -> None:
    """QBER of the X key (errors Cascade corrected) and the efficiency f = leaked / (n h)."""
    report.qber_x = errors / n if n else math.nan
    h = fk.binary_entropy(report.qber_x) if n else 0.0
    report.ec_efficiency = leaked / (n * h) if h > 0 else math.nan


def _cascade_qber(counts: fk.DecoyCounts) -> float:
    q = counts.qber_z if counts.total_z else _QBER_FLOOR
    return min(max(q, _QBER_FLOOR), _QBER_CEIL)


class Transmitter(_End):
    """Alice: answers Bob's announcements from her source's records and runs her half."""

    transmitter = True

    def __init__(
        self,
        params: LinkParams,
        channel: AuthenticatedChannel,
        sink: KeySink,
        config: ProtocolConfig,
        *,
        first_block: int = 0,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(params, channel, sink, config, first_block=first_block)
        self._rng = rng if rng is not None else np.random.default_rng()
        #: Lowest block id an ANNOUNCE may start (past every block whose checkpoints verified).
        self._accepted_from = first_block
        self._records: list[AliceEvents] = []
        self._buffered = 0

    @property
    def buffered_detections(self) -> int:
        """Records held for pulses Bob has not announced yet (flow control of the source)."""
        return self._buffered

    def feed(self, records: AliceEvents) -> None:
        """Her source's records of the next chunk of pulses."""
        if len(records):
            self._records.append(records)
            self._buffered += len(records)

    def _take_records(self, first: int, end: int) -> AliceEvents:
        keep: list[AliceEvents] = []
        parts: list[AliceEvents] = []
        for r in self._records:
            lo, hi = int(r.pulse_index[0]), int(r.pulse_index[-1])
            if hi < first:
                continue  # pulses Bob skipped (never announced)
            if lo >= end:
                keep.append(r)
                continue
            a, b = np.searchsorted(r.pulse_index, [first, end])
            parts.append(
                AliceEvents(r.pulse_index[a:b], r.bit[a:b], r.basis[a:b], r.intensity[a:b])
            )
            if b < len(r):
                keep.append(AliceEvents(r.pulse_index[b:], r.bit[b:], r.basis[b:], r.intensity[b:]))
        self._records = keep
        self._buffered = sum(len(r) for r in keep)
        if not parts:
            empty8 = np.zeros(0, np.uint8)
            return AliceEvents(np.zeros(0, np.int64), empty8, empty8, empty8)
        if len(parts) == 1:
            return parts[0]
        return AliceEvents(
            np.concatenate([p.pulse_index for p in parts]),
            np.concatenate([p.bit for p in parts]),
            np.concatenate([p.basis for p in parts]),
            np.concatenate([p.intensity for p in parts]),
        )

    async def run(self) -> None:
        """HELLO, then a block per ANNOUNCE (several in flight) until the channel closes."""
        try:
            await self._hello(first=False)
            self._accepted_from = max(self._accepted_from, self.next_block)
            await self._dispatch()
        finally:
            await self._drain()

    def _new_block(self, frame: Received, msg: m.Message) -> bool:
        """An open ANNOUNCE starts a block when no block of its id is in flight and
        the id lies within :data:`ANNOUNCE_WINDOW` past the last block whose
        checkpoints verified.

        ANNOUNCE is not authenticated on its own (its block's checkpoints
        are), so an injected one must not move what Alice accepts next: only
        a verified block does. A forged id far ahead is ignored (it would have
        made every real block stale, for good); one within the window only
        wastes its own work and fails (at VERIFY at the latest); blocks finish
        in block-id order, so a forged later id never holds up a real block.
        """
        bid = msg.block_id
        if msg.kind != m.ANNOUNCE or frame.tagged:
            return False
        if not self._accepted_from <= bid < self._accepted_from + ANNOUNCE_WINDOW:
            return False
        if len(self._blocks) >= MAX_BLOCKS_IN_FLIGHT:
            self.stats.refused_announcements += 1
            abort = m.encode(m.ABORT, bid, b"transmitter busy: too many blocks in flight")
            task = asyncio.create_task(self.channel.send_open(abort))
            task.add_done_callback(_log_failure)
            return True  # counted, not stale
        blk = self._open_block(bid)
        self._hash(blk, frame.payload, from_alice=False)
        blk.received += 1
        # the records are taken now, in announcement order (the task may start later)
        try:
            work = self._prepare(msg, blk.report)
        except m.ProtocolError as exc:
            err = exc

            async def failed() -> None:
                raise err

            blk.task = asyncio.create_task(self._run_guarded(blk, failed))
            return True

        async def body() -> None:
            await self._run_block(blk, *work)

        blk.task = asyncio.create_task(self._run_guarded(blk, body), name=f"qkd-a-{blk.bid}")
        return True

    def _verified(self, bid: int) -> None:
        # only an authentic block moves the window: an aborted one may be a forgery's
        self._accepted_from = max(self._accepted_from, bid + 1)

    def _prepare(
        self, announce: m.Message, report: BlockReport
    ) -> tuple[AliceEvents, npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
        r = m.Reader(announce.body)
        first, end = r.u64(), r.u64()
        index = m.decode_indices(r, first, end)
        bob_basis = r.bits()
        r.end()
        if bob_basis.size != index.size:
            raise m.ProtocolError("announced bases and pulse indices differ in number")
        report.pulses, report.detections = end - first, int(index.size)
        report.first_pulse = first
        return self._take_records(first, end), index, bob_basis

    async def _run_block(
        self,
        blk: _Block,
        records: AliceEvents,
        index: npt.NDArray[np.int64],
        bob_basis: npt.NDArray[np.uint8],
    ) -> None:
        report = blk.report
        sift = await self._timed("sifting", alice_sift, records, index, bob_basis)
        await self._send(blk, m.SIFT_REPLY, _pack_codes(sift), m.bits(sift.z_bits))

        msg, _ = await self._recv(blk, m.ESTIMATE)
        t0 = time.thread_time()
        r = m.Reader(msg.body)
        bob_abort, bob_z, init = r.u8(), r.bits(), r.blob()
        r.end()
        if bob_z.size != sift.z_bits.size:
            raise m.ProtocolError("Bob's Z bits do not match the sifted Z set")
        m_z = z_errors_per_intensity(sift.z_bits, bob_z, sift.z_intensity)
        counts = fk.DecoyCounts.from_arrays(sift.n_x, sift.n_z, m_z)
        self._fill_estimate(report, counts)
        est, reason = _decision(counts, self.params, self.config.phase_error_tolerance)
        report.phase_error_bound, report.s_x1 = est.phi_x, est.s_x1
        self._inline("estimation", t0)
        if bool(reason) != bool(bob_abort):
            raise m.ProtocolError("the ends disagree on aborting the block")
        if reason:
            # nothing of this block is used: it ends here, without a checkpoint
            report.reason = reason
            await self._end_without_key(blk)
            return

        alice = ReconcilerAlice(sift.x_bits)
        reply = await self._timed("error_correction", alice.answer, init)
        await self._send(blk, m.EC_REPLY, reply)
        while True:
            msg, _ = await self._recv(blk, m.EC_REQUEST, m.EC_DONE)
            if msg.kind == m.EC_DONE:
                r = m.Reader(msg.body)
                flipped = r.u64()
                r.end()
                break
            t0 = time.thread_time()
            reply = alice.answer(msg.body)
            self._inline("error_correction", t0)
            await self._send(blk, m.EC_REPLY, reply)
        leaked = alice.leaked_bits + EC_DONE_DISCLOSED_BITS
        report.leaked_bits, report.ec_rounds = leaked, alice.rounds
        _ec_figures(report, flipped, sift.x_bits.size, leaked)

        length = fk.secret_key_length(est, leaked, self.params)
        report.key_length = length
        out_bits = length // 8 * 8
        n = sift.x_bits.size
        t = verification_tag_bits(self.params.eps_cor)
        t0 = time.thread_time()
        # the seeds stay packed from the generator to both ends' kernels
        v_len = verification_seed_bits(n, t)
        v_seed = PackedBits.from_bytes(self._rng.bytes((v_len + 7) // 8), v_len)
        pa_len = amplification_seed_bits(self.config.pa_family, n, out_bits) if out_bits else 0
        pa_seed = PackedBits.from_bytes(self._rng.bytes((pa_len + 7) // 8), pa_len)
        self._inline("verification", t0)
        tag = await self._timed("verification", verification_tag, sift.x_bits, v_seed, t)
        verify_seq = await self._checkpoint(
            blk, m.VERIFY, m.u64(length), m.u32(t), m.bits(v_seed), m.blob(tag), m.bits(pa_seed)
        )
        msg, verdict_seq = await self._recv(blk, m.VERDICT)
        r = m.Reader(msg.body)
        ok = r.u8()
        r.end()
        if not ok:
            raise PeerAbort("error verification failed")
        await self._finish(blk, sift.x_bits, pa_seed, out_bits, est, (verify_seq, verdict_seq))


@dataclass
class _Pending:
    first: int
    end: int
    events: BobEvents


#: Pause before the next block after the first aborted one (s); it doubles with each
#: further abort in a row, up to ABORT_BACKOFF_MAX_S.
ABORT_BACKOFF_S = 0.25
ABORT_BACKOFF_MAX_S = 2.0


def abort_backoff(consecutive_aborts: int) -> float:
    """Seconds the receiver waits before announcing a block after aborted ones.

    An aborted block spends no authentication key (its messages are open and it
    never reaches a checkpoint), but each costs both ends' CPU: while an
    attacker is on the fibre the link tries at most 0.5 blocks a second, and is
    back within a few seconds of the attacker leaving (the wait plus the
    blocks of pulses sent while Eve was still there, each aborted in turn).
    """
    if consecutive_aborts <= 0:
        return 0.0
    return min(ABORT_BACKOFF_MAX_S, ABORT_BACKOFF_S * 2.0 ** (consecutive_aborts - 1))


class Receiver(_End):
    """Bob: collects his detections into blocks and drives the protocol, several in flight."""

    transmitter = False

    def __init__(
        self,
        params: LinkParams,
        channel: AuthenticatedChannel,
        sink: KeySink,
        config: ProtocolConfig,
        *,
        first_block: int = 0,
        seed: int | None = None,
        pipeline_depth: int = DEFAULT_PIPELINE_DEPTH,
    ) -> None:
        super().__init__(params, channel, sink, config, first_block=first_block)
        if pipeline_depth < 1:
            raise ValueError(f"pipeline_depth must be >= 1, got {pipeline_depth}")
        self.pipeline_depth = pipeline_depth
        self._chunks: list[tuple[BobChunk, int]] = []  # with its X detections
        self._x_count = 0
        self._wake = asyncio.Event()
        self._cascade_rng = np.random.default_rng(seed)
        #: Blocks aborted in a row (reset by a block that completes).
        self.consecutive_aborts = 0
        self.detections_received = 0
        self.pulses_received = 0

    @property
    def x_needed(self) -> int:
        """Bob's X-basis detections that give ``block_bits`` sifted X bits on average."""
        return math.ceil(self.config.block_bits / self.params.q_x)

    @property
    def buffered_detections(self) -> int:
        return sum(len(c) for c, _ in self._chunks)

    def feed(self, chunk: BobChunk) -> None:
        """What the fibre delivered for the next chunk of pulses."""
        self.detections_received += len(chunk)
        self.pulses_received += chunk.n_pulses
        x = int(np.count_nonzero(chunk.events.basis == 0))
        self._chunks.append((chunk, x))
        self._x_count += x
        self._wake.set()

    async def _next_block_events(self) -> _Pending:
        """Whole chunks, from the oldest, until they hold ``x_needed`` X detections.

        A block is never cut inside a chunk: the source samples block-sized
        chunks (:func:`qkdmeet.qkd.source.block_chunk_pulses`), so a block is
        usually one chunk, passed on without a copy; its sifted size varies
        with the chunk's counts (the bounds use the block's own counts).
        """
        while self._x_count < self.x_needed:
            self._wake.clear()
            await self._wake.wait()
        parts: list[BobChunk] = []
        got = 0
        while got < self.x_needed:
            c, x = self._chunks.pop(0)
            got += x
            self._x_count -= x
            parts.append(c)
        first = parts[0].first_pulse
        end = parts[-1].first_pulse + parts[-1].n_pulses
        if len(parts) == 1:
            return _Pending(first, end, parts[0].events)
        events = BobEvents(
            np.concatenate([np.asarray(p.events.pulse_index) for p in parts]),
            np.concatenate([p.events.basis for p in parts]),
            np.concatenate([p.events.bit for p in parts]),
            np.concatenate([p.events.double_click for p in parts]),
        )
        return _Pending(first, end, events)

    async def run(self) -> None:
        """HELLO, then blocks for as long as detections arrive and the channel is open."""
        try:
            await self._hello(first=True)
            announce = asyncio.create_task(self._announce(), name="qkd-bob-announce")
            dispatch = asyncio.create_task(self._dispatch(), name="qkd-bob-dispatch")
            try:
                done, _ = await asyncio.wait(
                    {announce, dispatch}, return_when=asyncio.FIRST_COMPLETED
                )
                for t in done:
                    t.result()
            finally:
                await _stop_tasks(announce, dispatch)
        finally:
            await self._drain()

    def allowed_in_flight(self) -> int:
        """Blocks the pipeline may hold now: one more per block finished, up to its depth.

        The pipeline fills gradually: the first block runs alone (its key
        reaches the sinks without sharing the cores with two more), the
        second beside one, and so on.
        """
        finished = self.stats.blocks + self.stats.aborted_blocks
        return min(self.pipeline_depth, 1 + finished)

    async def _announce(self) -> None:
        slots = asyncio.Semaphore(self.pipeline_depth)
        changed = asyncio.Event()
        while True:
            if self.consecutive_aborts:
                # An attack (or a broken fibre) aborts every block: back off so that it
                # does not keep both ends' cores busy (the device's pulses meanwhile are
                # skipped, as when the post-processing is busy).
                await asyncio.sleep(abort_backoff(self.consecutive_aborts))
            await slots.acquire()
            while len(self._blocks) >= self.allowed_in_flight():
                changed.clear()
                await changed.wait()
            pending = await self._next_block_events()
            blk = self._open_block(self.next_block)
            self.next_block += 1

            async def body(blk: _Block = blk, pending: _Pending = pending) -> None:
                try:
                    await self._run_block(blk, pending)
                finally:
                    slots.release()

            async def block(blk: _Block = blk, body: Any = body) -> None:
                await self._run_guarded(blk, body)
                self.consecutive_aborts = 0 if blk.report.ok else self.consecutive_aborts + 1
                changed.set()

            blk.task = asyncio.create_task(block(), name=f"qkd-b-{blk.bid}")
            # let the new block send its announcement before the next one is cut
            await asyncio.sleep(0)

    async def _run_block(self, blk: _Block, p: _Pending) -> None:
        report = blk.report
        ev = p.events
        report.pulses, report.detections = p.end - p.first, len(ev)
        report.first_pulse = p.first
        await self._send(
            blk, m.ANNOUNCE, m.u64(p.first), m.u64(p.end),
            m.index_coding(ev.pulse_index, p.first), m.bits(ev.basis),
        )  # fmt: skip
        msg, _ = await self._recv(blk, m.SIFT_REPLY)
        r = m.Reader(msg.body)
        a_basis, a_int = _unpack_codes(r.blob(), len(ev))
        alice_z = r.bits()
        r.end()
        sift = await self._timed("sifting", bob_sift, ev, a_basis, a_int)
        t0 = time.thread_time()
        if alice_z.size != sift.z_bits.size:
            raise m.ProtocolError("Alice's Z bits do not match the sifted Z set")
        m_z = z_errors_per_intensity(sift.z_bits, alice_z, sift.z_intensity)
        counts = fk.DecoyCounts.from_arrays(sift.n_x, sift.n_z, m_z)
        self._fill_estimate(report, counts)
        est, reason = _decision(counts, self.params, self.config.phase_error_tolerance)
        report.phase_error_bound, report.s_x1 = est.phi_x, est.s_x1
        self._inline("estimation", t0)
        if reason:
            await self._send(blk, m.ESTIMATE, m.u8(1), m.bits(sift.z_bits), m.blob(b""))
            report.reason = reason
            await self._end_without_key(blk)
            return

        bob = ReconcilerBob(
            sift.x_bits, _cascade_qber(counts), seed=int(self._cascade_rng.integers(1 << 62))
        )
        init = bob.next_request()
        assert init is not None
        await self._send(blk, m.ESTIMATE, m.u8(0), m.bits(sift.z_bits), m.blob(init))
        await self._timed("error_correction", bob.precompute)
        msg, _ = await self._recv(blk, m.EC_REPLY)
        t0 = time.thread_time()
        bob.handle_reply(msg.body)
        requests = 0
        while (request := bob.next_request()) is not None:
            self._inline("error_correction", t0)
            requests += 1
            if requests > MAX_EC_REQUESTS:
                # a block that error correction cannot finish (pulses of a cut fibre:
                # dark counts): abort it rather than keep both ends busy
                raise m.ProtocolError(
                    f"error correction needs more than {MAX_EC_REQUESTS} round trips"
                )
            await self._send(blk, m.EC_REQUEST, request)
            msg, _ = await self._recv(blk, m.EC_REPLY)
            t0 = time.thread_time()
            bob.handle_reply(msg.body)
        self._inline("error_correction", t0)
        await self._send(blk, m.EC_DONE, m.u64(bob.flipped_bits))
        leaked = bob.leaked_bits + EC_DONE_DISCLOSED_BITS
        report.leaked_bits, report.ec_rounds = leaked, bob.rounds
        corrected = bob.corrected_bits
        _ec_figures(report, bob.flipped_bits, corrected.size, leaked)

        msg, verify_seq = await self._recv(blk, m.VERIFY)
        r = m.Reader(msg.body)
        length, t, v_seed, tag, pa_seed = r.u64(), r.u32(), r.packed(), r.blob(), r.packed()
        r.end()
        mine = fk.secret_key_length(est, leaked, self.params)
        report.key_length = mine
        if length != mine or t != verification_tag_bits(self.params.eps_cor):
            raise m.ProtocolError(f"Alice's key length {length} differs from Bob's {mine}")
        ok = await self._timed("verification", verification_tag, corrected, v_seed, t) == tag
        out_bits = length // 8 * 8
        if ok and pa_seed.size != (
            amplification_seed_bits(self.config.pa_family, corrected.size, out_bits)
            if out_bits
            else 0
        ):
            raise m.ProtocolError("privacy-amplification seed of the wrong length")
        verdict_seq = await self._checkpoint(blk, m.VERDICT, m.u8(int(ok)))
        if not ok:
            raise PeerAbort("error verification failed")
        await self._finish(blk, corrected, pa_seed, out_bits, est, (verdict_seq, verify_seq))
