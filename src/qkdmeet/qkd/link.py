"""The real-time link: the device's pulse train in wall-clock time, distilled block by block.

:class:`QkdLink` runs both ends in this process (the CLI's ``simulate``, the
benchmark, ``qkdmeet kme pair --link qkd``); :class:`TransmitterNode` and
:class:`ReceiverNode` run one end each, talking over TCP (``qkdmeet qkd
transmitter|receiver``, a KME's ``[qkd]`` table). Each is started with
``start()`` and stopped with ``stop()``, which cancels and awaits every task
it owns.

The source (:class:`PulseSource`) samples chunks of pulses as the device's
clock produces them: pulse ``k`` is due ``k / clock_hz`` seconds after the
start. When the post-processing cannot keep up (the transmitter holds more
than ``backlog_blocks`` blocks' worth of unannounced detections) the source
waits, and the pulses the device sent meanwhile are skipped, never sampled
(``pulses_skipped``): the rates reported are per wall-clock second, honestly
below the device's when the CPU falls behind. With ``realtime=False`` the
source runs as fast as the CPU allows (the benchmark's throughput mode).

Live figures: :meth:`QkdLink.stats` (and the nodes' ``stats()``) return a
JSON-ready dict; see :func:`end_stats` for the fields.

Known limit: Bob hands a block to his sink when he sends VERDICT, Alice when
she receives it. If a networked end is killed or the connection drops in
between, one end holds one block more than the other (the next blocks are
again identical, under their own block ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from qkdmeet.crypto.wegman_carter import HASH_KEY_BYTES, MASK_BYTES
from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd import optics
from qkdmeet.qkd.channel import (
    BobChunk,
    ChannelError,
    QuantumChannel,
    decode_bob_chunk,
    encode_bob_chunk,
)
from qkdmeet.qkd.classical import (
    DEFAULT_SECRET_BYTES,
    AuthenticatedChannel,
    AuthKeys,
    ChannelClosed,
    ClassicalChannelError,
    StreamTransport,
    memory_pair,
)
from qkdmeet.qkd.eve import Eavesdropper, parse_eve
from qkdmeet.qkd.events import AliceEvents, detection_probability
from qkdmeet.qkd.params import DEFAULT_BLOCK_BITS, DEFAULT_PIPELINE_DEPTH, LinkParams, get_preset
from qkdmeet.qkd.protocol import (
    ProtocolConfig,
    Receiver,
    Transmitter,
    _End,
)
from qkdmeet.qkd.sink import KeySink, ListSink

log = logging.getLogger(__name__)

#: Pulses sampled per chunk when blocks are small (10 ms of a 1 GHz clock).
DEFAULT_CHUNK_PULSES = 10_000_000
#: X-basis detections a block-sized chunk holds beyond the block's need (1 %: the count's
#: spread is ~0.03 % for 10^7-bit blocks, so a chunk almost never falls short).
CHUNK_MARGIN = 1.01


def block_chunk_pulses(params: LinkParams, block_bits: int) -> int:
    """Pulses in which Bob expects a block's X detections, with :data:`CHUNK_MARGIN`.

    The source samples one such chunk per block: each block is then one chunk
    at both ends, handed on without the copies that cutting and joining
    smaller chunks cost (~0.2 s per 10^7-bit block at each end, measured),
    and Bob's block holds the chunk's ~1 % more X bits than the target.
    """
    per_pulse = detection_probability(params) * params.q_x**2
    if per_pulse <= 0.0:
        return DEFAULT_CHUNK_PULSES
    return int(min(max(math.ceil(CHUNK_MARGIN * block_bits / per_pulse), 1_000_000), 4_000_000_000))


def link_params(
    preset: str = "toshiba",
    *,
    loss_db: float | None = None,
    distance_km: float | None = None,
    block_bits: int = DEFAULT_BLOCK_BITS,
    optimise: bool = True,
) -> LinkParams:
    """A preset at a channel loss, with intensities optimised for blocks of ``block_bits``."""
    p = get_preset(preset)
    if loss_db is not None and distance_km is not None:
        raise ValueError("give the channel as a loss in dB or a distance in km, not both")
    if loss_db is not None:
        p = p.with_loss_db(loss_db)
    elif distance_km is not None:
        p = p.with_distance_km(distance_km)
    p = dataclasses.replace(p, n_x=max(int(block_bits), 100), eps_sec_per_bit=None)
    return fk.optimise_intensities(p, auth_bits_per_block=fk.AUTH_BITS_PER_BLOCK) if optimise else p


def bootstrap_secret(nbytes: int = DEFAULT_SECRET_BYTES) -> bytes:
    """A fresh pre-shared secret (hash key and 4096 masks per direction by default)."""
    return os.urandom(nbytes)


def json_ready(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


def _model_figures(params: LinkParams) -> dict[str, float]:
    net = fk.net_key_rate(params, fk.AUTH_BITS_PER_BLOCK)
    return {
        # net of the authentication key per block: what the link can deliver
        "model_net_key_rate_bps": net.net_bps,
        "model_auth_share": net.auth_share,
        "model_secure_key_rate_bps": fk.model_secure_key_rate_bps(params),
        "asymptotic_key_rate_bps": fk.asymptotic_key_rate_bps(params),
        "model_qber": optics.average_qber(params),
        "model_sifted_rate_bps": optics.sifted_x_rate_hz(params),
    }


def end_stats(end: _End, elapsed: float) -> dict[str, Any]:
    """One end's live figures.

    ``blocks`` / ``aborted_blocks``; ``secure_bits`` delivered to the sink and
    ``secure_key_rate_bps`` (per wall-clock second since the start);
    ``sifted_bits``/``sifted_rate_bps``; ``qber``, ``phase_error_bound``,
    ``ec_efficiency`` (of the last block with key; qber falls back to the Z
    estimate); ``auth_key_spent_bits`` (masks and hash key used),
    ``auth_key_refilled_bits`` (distilled key kept back for authentication);
    ``stage_seconds`` (busy time per post-processing stage) and
    ``abort_reasons``.
    """
    s = end.stats
    good = [r for r in s.reports if r.ok and r.secure_bits + r.auth_bits > 0]
    last_ok = good[-1] if good else None
    last = s.last
    effs = [r.ec_efficiency for r in good if math.isfinite(r.ec_efficiency)]
    qber = math.nan
    if last_ok is not None and math.isfinite(last_ok.qber_x):
        qber = last_ok.qber_x
    elif last is not None:
        qber = last.qber_z
    keys = end.channel.keys
    done = [r for r in s.reports if r.ok]
    return {
        "ec_round_trips_per_block": _mean([r.ec_rounds for r in done]),
        "messages_per_block": _mean([r.messages for r in done]),
        # masks spent (both directions, HELLOs included) per completed block
        "auth_masks_per_block": (keys.spent_bits - HASH_KEY_BYTES * 8) / (MASK_BYTES * 8)
        / s.blocks if s.blocks else math.nan,
        "auth_key_per_block_bits": _mean([r.auth_bits for r in done]),
        "blocks": s.blocks,
        "aborted_blocks": s.aborted_blocks,
        "secure_bits": s.secure_bits,
        "secure_key_rate_bps": s.secure_bits / elapsed if elapsed > 0 else 0.0,
        "sifted_bits": s.sifted_bits,
        "sifted_rate_bps": s.sifted_bits / elapsed if elapsed > 0 else 0.0,
        "qber": qber,
        "phase_error_bound": last.phase_error_bound if last is not None else math.nan,
        "ec_efficiency": sum(effs) / len(effs) if effs else math.nan,
        "ec_leaked_bits": s.leaked_bits,
        "auth_key_spent_bits": keys.spent_bits,
        "auth_key_refilled_bits": keys.refilled_bits,
        "auth_masks_left": keys.outgoing.unused(end.channel.next_send)
        + keys.incoming.unused(end.channel.next_recv),
        "stale_messages": s.stale_messages,
        "rejected_messages": end.channel.rejected,
        "abort_reasons": dict(s.abort_reasons),
        "stage_seconds": dict(s.stage_seconds),
        "last_block": last.as_dict() if last is not None else None,
        # what the latest block measured, whether or not it gave key (an operator's
        # view: an attack shows here first, while ``qber`` keeps the last good block's)
        "last_block_qber": _measured_qber(last),
        "last_block_ok": last.ok if last is not None else None,
    }


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else math.nan


def _measured_qber(report: Any) -> float:
    if report is None:
        return math.nan
    if math.isfinite(report.qber_x):
        return float(report.qber_x)
    return float(report.qber_z)


def attack_summary(reports: list[Any], ranges: list[tuple[int, int]]) -> dict[str, int]:
    """How the blocks that hold attacked pulses ended (the simulation's ground truth).

    ``ranges``: pulse ranges sampled while an eavesdropper was on the fibre
    (:attr:`QuantumChannel.attacked_ranges`); a block is attacked when its pulse
    range overlaps one. ``attacked_blocks_with_key`` must be 0: key from a block
    that Eve touched would be key she may know.
    """
    attacked = with_key = 0
    for r in reports:
        if r.first_pulse < 0 or not ranges:
            continue
        first, end = r.first_pulse, r.first_pulse + r.pulses
        if any(a < end and first < b for a, b in ranges):
            attacked += 1
            if r.secure_bits + r.auth_bits > 0:
                with_key += 1
    return {
        "attacked_pulses": sum(b - a for a, b in ranges),
        "attacked_blocks": attacked,
        "attacked_blocks_with_key": with_key,
    }


class PulseSource:
    """Samples the quantum channel in (at most) real time; see the module docstring."""

    def __init__(
        self,
        channel: QuantumChannel,
        transmitter: Transmitter,
        deliver: Callable[[BobChunk], Awaitable[None]],
        *,
        block_bits: int,
        realtime: bool = True,
        backlog_blocks: float = 2.0,
        chunk_pulses: int | None = None,
    ) -> None:
        self.channel = channel
        self.transmitter = transmitter
        self.deliver = deliver
        self.realtime = realtime
        p = channel.params
        if chunk_pulses is None:
            chunk_pulses = block_chunk_pulses(p, block_bits)
        self.chunk_pulses = chunk_pulses
        det_per_x = 1.0 / max(p.q_x**2, 1e-9)
        chunk_detections = int(chunk_pulses * detection_probability(p, channel.eve)) + 1
        # never below one block and a chunk: Bob announces only once a whole block has
        # arrived, so a smaller threshold would stop the source before he can
        blocks = max(backlog_blocks, 1.0)
        self.backlog_detections = int(blocks * block_bits * det_per_x) + chunk_detections
        self.pulses_skipped = 0
        self.sampling_seconds = 0.0
        self.started = 0.0

    @property
    def pulses_sent(self) -> int:
        return self.channel.next_pulse

    async def run(self) -> None:
        clock = self.channel.params.clock_hz
        self.started = time.perf_counter()
        max_lag = self.chunk_pulses * 4
        while True:
            if self.transmitter.buffered_detections > self.backlog_detections:
                await asyncio.sleep(0.005)
                continue
            n = self.chunk_pulses
            if self.realtime:
                due = (time.perf_counter() - self.started) * clock
                ahead = self.channel.next_pulse + n - due
                if ahead > 0:
                    await asyncio.sleep(min(ahead / clock, 0.05))
                    continue
                lag = int(-ahead)
                if lag > max_lag:
                    self.channel.skip(lag)
                    self.pulses_skipped += lag
            alice, bob, cpu = await asyncio.to_thread(self._emit, n)
            self.sampling_seconds += cpu
            self.transmitter.feed(alice)
            await self.deliver(bob)

    def _emit(self, n: int) -> tuple[AliceEvents, BobChunk, float]:
        t0 = time.thread_time()
        alice, bob = self.channel.emit(n)
        return alice, bob, time.thread_time() - t0

    def stats(self) -> dict[str, Any]:
        p = self.channel.params
        return {
            "pulses_sent": self.pulses_sent,
            "pulses_skipped": self.pulses_skipped,
            "device_seconds": self.pulses_sent / p.clock_hz,
            "sampled_device_seconds": (self.pulses_sent - self.pulses_skipped) / p.clock_hz,
            "sampling_seconds": self.sampling_seconds,
            "eve": str(self.channel.eve) if self.channel.eve is not None else None,
            "cut": self.channel.cut,
        }


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (cancelling again if it swallowed one)."""
    if task is None or task is asyncio.current_task():
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


def _log_task_end(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ChannelClosed):
        log.error("QKD link task %s stopped: %s", task.get_name(), exc, exc_info=exc)


class QkdLink:
    """Both ends of the link in this process, with an in-memory authenticated channel.

    ``sinks``: (Alice's, Bob's) key sinks (default: two :class:`ListSink`).
    ``seed`` makes the run reproducible (source, seeds, Cascade); None draws
    from the OS. ``secret``: the pre-shared bootstrap secret (default: fresh).
    """

    def __init__(
        self,
        params: LinkParams,
        *,
        config: ProtocolConfig | None = None,
        sinks: tuple[KeySink, KeySink] | None = None,
        secret: bytes | None = None,
        seed: int | None = None,
        eve: Eavesdropper | str | None = None,
        realtime: bool = True,
        backlog_blocks: float = 2.0,
        chunk_pulses: int | None = None,
        first_block: int = 0,
        auth_target_masks: int | None = None,
    ) -> None:
        self.params = params
        self.config = config or ProtocolConfig(block_bits=DEFAULT_BLOCK_BITS)
        self.sinks: tuple[KeySink, KeySink] = sinks or (ListSink(), ListSink())
        seeds = np.random.SeedSequence(seed).spawn(3)
        secret = secret if secret is not None else bootstrap_secret()
        ta, tb = memory_pair()
        self.transports = (ta, tb)
        self.alice = Transmitter(
            params,
            AuthenticatedChannel(
                ta, AuthKeys.from_secret(secret, transmitter=True, target_masks=auth_target_masks)
            ),
            self.sinks[0],
            self.config,
            first_block=first_block,
            rng=np.random.default_rng(seeds[0]),
        )
        self.bob = Receiver(
            params,
            AuthenticatedChannel(
                tb, AuthKeys.from_secret(secret, transmitter=False, target_masks=auth_target_masks)
            ),
            self.sinks[1],
            self.config,
            first_block=first_block,
            seed=int(seeds[1].generate_state(1)[0]),
        )
        self.channel = QuantumChannel(
            params,
            np.random.default_rng(seeds[2]),
            parse_eve(eve) if isinstance(eve, str) else eve,
            chunk_pulses=chunk_pulses or DEFAULT_CHUNK_PULSES,
        )

        async def to_bob(chunk: BobChunk) -> None:
            self.bob.feed(chunk)

        self.source = PulseSource(
            self.channel,
            self.alice,
            to_bob,
            block_bits=self.config.block_bits,
            realtime=realtime,
            backlog_blocks=backlog_blocks,
            chunk_pulses=chunk_pulses,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = 0.0
        self._model = _model_figures(params)

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("QKD link already started")
        from qkdmeet.qkd.memory import keep_freed_memory

        keep_freed_memory()
        self._started = time.perf_counter()
        for name, coro in (
            ("qkd-alice", self.alice.run()),
            ("qkd-bob", self.bob.run()),
            ("qkd-source", self.source.run()),
        ):
            task = asyncio.create_task(coro, name=name)
            task.add_done_callback(_log_task_end)
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in reversed(self._tasks):
            await _cancel(task)
        self._tasks = []
        for t in self.transports:
            await t.close()

    async def __aenter__(self) -> QkdLink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def failed(self) -> BaseException | None:
        """The exception that stopped one of the link's tasks, if any."""
        for t in self._tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                return t.exception()
        return None

    def set_eve(self, eve: Eavesdropper | str | None) -> None:
        self.channel.set_eve(eve)

    def set_cut(self, cut: bool) -> None:
        self.channel.set_cut(cut)

    def elapsed(self) -> float:
        return time.perf_counter() - self._started if self._started else 0.0

    async def wait_blocks(self, count: int, *, include_aborted: bool = True) -> None:
        """Wait until Bob has finished ``count`` blocks (raises if a task failed)."""
        while True:
            s = self.bob.stats
            done = s.blocks + (s.aborted_blocks if include_aborted else 0)
            a = self.alice.stats
            if done >= count and a.blocks + a.aborted_blocks >= done:
                return
            if self.failed is not None:
                raise RuntimeError(f"QKD link stopped: {self.failed}") from self.failed
            await asyncio.sleep(0.01)

    def stats(self) -> dict[str, Any]:
        """Receiver-side figures (Bob's), the source's, the model's, both ends' stage times."""
        elapsed = self.elapsed()
        out = end_stats(self.bob, elapsed)
        out["elapsed_s"] = elapsed
        out.update(self.source.stats())
        out.update(self._model)
        out["stage_seconds"] = {
            "sampling": self.source.sampling_seconds,
            "alice": dict(self.alice.stats.stage_seconds),
            "bob": dict(self.bob.stats.stage_seconds),
        }
        out["alice_secure_bits"] = self.alice.stats.secure_bits
        out.update(attack_summary(self.alice.stats.reports, self.channel.attacked_ranges))
        out["block_bits"] = self.config.block_bits
        out["loss_db"] = self.params.loss_db
        return json_ready(out)  # type: ignore[no-any-return]


# -- networked ends ---------------------------------------------------------------------


#: Masks of its own direction a restarted end burns (the blocks in flight may have used
#: masks after the state was last saved: one checkpoint each, plus HELLO; far more than
#: enough, kept from when every message took one).
RESTART_SKIP_MASKS = 1024


def load_auth_keys(
    secret: bytes, *, transmitter: bool, state: str | Path | None = None
) -> AuthKeys:
    """The pre-shared secret's keys, or the saved state of an earlier run (``state``).

    With ``state`` the keys are saved at once and after every block, and a
    restart continues from the file, burning :data:`RESTART_SKIP_MASKS`
    outgoing masks, so that no mask ever tags two messages.
    """
    path = Path(state) if state is not None else None
    if path is not None and path.exists():
        keys = AuthKeys.from_bytes(path.read_bytes(), skip_outgoing=RESTART_SKIP_MASKS)
    else:
        keys = AuthKeys.from_secret(secret, transmitter=transmitter)
    if path is not None:
        keys.save(path)
    return keys


def _persist(end: _End, path: str | Path | None) -> None:
    if path is not None:
        keys = end.channel.keys
        end.on_block = lambda _report: keys.save(path)


def _start_warm_up(params: LinkParams, config: ProtocolConfig) -> asyncio.Task[dict[str, float]]:
    """Load the kernels in a worker thread while the first block's pulses arrive (and
    have malloc keep a block's freed arrays for the next: :mod:`qkdmeet.qkd.memory`)."""
    from qkdmeet.qkd.memory import keep_freed_memory
    from qkdmeet.qkd.warmup import warm_up

    keep_freed_memory()

    task = asyncio.create_task(asyncio.to_thread(warm_up, params, config.pa_family),
                               name="qkd-warm-up")  # fmt: skip
    task.add_done_callback(_log_task_end)
    return task


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too); ValueError naming the problem otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class TransmitterNode:
    """Alice's site: the source and the transmitter, listening for the receiver on TCP.

    One receiver connection at a time; when it drops, the transmitter waits
    for the next and goes on with the same authentication key state and
    block numbering.
    """

    def __init__(
        self,
        params: LinkParams,
        listen: str,
        sink: KeySink,
        secret: bytes,
        *,
        config: ProtocolConfig | None = None,
        seed: int | None = None,
        eve: Eavesdropper | str | None = None,
        first_block: int = 0,
        realtime: bool = True,
        chunk_pulses: int | None = None,
        auth_state: str | Path | None = None,
    ) -> None:
        self.params = params
        self.host, self.port = parse_address(listen)
        self.sink = sink
        self.config = config or ProtocolConfig(block_bits=DEFAULT_BLOCK_BITS)
        seeds = np.random.SeedSequence(seed).spawn(2)
        self.auth_state = auth_state
        self.keys = load_auth_keys(secret, transmitter=True, state=auth_state)
        self._rng = np.random.default_rng(seeds[0])
        self.channel = QuantumChannel(
            params,
            np.random.default_rng(seeds[1]),
            parse_eve(eve) if isinstance(eve, str) else eve,
            chunk_pulses=chunk_pulses or DEFAULT_CHUNK_PULSES,
        )
        self.next_block = first_block
        self.realtime = realtime
        self.chunk_pulses = chunk_pulses
        self.actor: Transmitter | None = None
        self.source: PulseSource | None = None
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._session: asyncio.Task[None] | None = None
        self._started = 0.0
        self._model = _model_figures(params)

    async def start(self) -> None:
        self._started = time.perf_counter()
        self._warm = _start_warm_up(self.params, self.config)
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        if self.port == 0:
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._session is not None and not self._session.done():
            writer.close()  # one receiver at a time
            return
        self._session = asyncio.current_task()  # type: ignore[assignment]
        self.connections += 1
        transport = StreamTransport(reader, writer)
        transport.start()
        actor = Transmitter(
            self.params,
            AuthenticatedChannel(transport, self.keys),
            self.sink,
            self.config,
            first_block=self.next_block,
            rng=self._rng,
        )
        if self.actor is not None:
            actor.stats = self.actor.stats
        self.actor = actor
        _persist(actor, self.auth_state)

        async def send(chunk: BobChunk) -> None:
            await transport.send_quantum(*encode_bob_chunk(chunk))

        self.source = PulseSource(
            self.channel, actor, send, block_bits=self.config.block_bits,
            realtime=self.realtime, chunk_pulses=self.chunk_pulses,
        )  # fmt: skip
        source = asyncio.create_task(self.source.run(), name="qkd-source")
        try:
            await actor.run()
        except (ClassicalChannelError, ConnectionError) as exc:
            log.warning("QKD transmitter: receiver connection ended: %s", exc)
        finally:
            self.next_block = actor.next_block
            await _cancel(source)
            await transport.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await _cancel(self._session)
        self._session = None
        if self.auth_state is not None:
            self.keys.save(self.auth_state)

    def set_eve(self, eve: Eavesdropper | str | None) -> None:
        self.channel.set_eve(eve)

    def set_cut(self, cut: bool) -> None:
        self.channel.set_cut(cut)

    def stats(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self._started if self._started else 0.0
        out: dict[str, Any] = {"role": "transmitter", "elapsed_s": elapsed,
                               "connections": self.connections,
                               "cpu_seconds": time.process_time()}  # fmt: skip
        if self.actor is not None:
            out.update(end_stats(self.actor, elapsed))
            out.update(attack_summary(self.actor.stats.reports, self.channel.attacked_ranges))
        if self.source is not None:
            out.update(self.source.stats())
            out["stage_seconds"] = {
                "sampling": self.source.sampling_seconds,
                **out.get("stage_seconds", {}),
            }
        out["eve"] = str(self.channel.eve) if self.channel.eve is not None else None
        out["cut"] = self.channel.cut
        out.update(self._model)
        return json_ready(out)  # type: ignore[no-any-return]


class ReceiverNode:
    """Bob's site: connects to the transmitter (retrying) and runs the receiver."""

    def __init__(
        self,
        params: LinkParams,
        connect: str,
        sink: KeySink,
        secret: bytes,
        *,
        config: ProtocolConfig | None = None,
        seed: int | None = None,
        first_block: int = 0,
        retry_seconds: float = 1.0,
        pipeline_depth: int = DEFAULT_PIPELINE_DEPTH,
        auth_state: str | Path | None = None,
    ) -> None:
        self.params = params
        self.host, self.port = parse_address(connect)
        self.sink = sink
        self.config = config or ProtocolConfig(block_bits=DEFAULT_BLOCK_BITS)
        self.auth_state = auth_state
        self.keys = load_auth_keys(secret, transmitter=False, state=auth_state)
        self._seed = seed
        self.next_block = first_block
        self.retry_seconds = retry_seconds
        self.pipeline_depth = pipeline_depth
        self.actor: Receiver | None = None
        self.connections = 0
        self.bad_frames = 0
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._model = _model_figures(params)

    async def start(self) -> None:
        self._started = time.perf_counter()
        self._warm = _start_warm_up(self.params, self.config)
        self._task = asyncio.create_task(self._run(), name="qkd-receiver")
        self._task.add_done_callback(_log_task_end)

    async def _run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                log.info("QKD receiver: cannot reach %s:%d (%s)", self.host, self.port, exc)
                await asyncio.sleep(self.retry_seconds)
                continue
            await self._session(reader, writer)
            await asyncio.sleep(self.retry_seconds)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        transport = StreamTransport(reader, writer)
        transport.start()
        actor = Receiver(
            self.params,
            AuthenticatedChannel(transport, self.keys),
            self.sink,
            self.config,
            first_block=self.next_block,
            seed=self._seed,
            pipeline_depth=self.pipeline_depth,
        )
        if self.actor is not None:
            actor.stats = self.actor.stats
        self.actor = actor
        _persist(actor, self.auth_state)

        async def fibre() -> None:
            while (frame := await transport.quantum.get()) is not None:
                try:
                    actor.feed(decode_bob_chunk(frame))
                except ChannelError as exc:
                    self.bad_frames += 1
                    log.debug("dropping quantum-channel frame: %s", exc)

        feed = asyncio.create_task(fibre(), name="qkd-fibre")
        try:
            await actor.run()
        except (ClassicalChannelError, ConnectionError) as exc:
            log.warning("QKD receiver: transmitter connection ended: %s", exc)
        finally:
            self.next_block = actor.next_block
            await _cancel(feed)
            await transport.close()

    async def stop(self) -> None:
        await _cancel(self._task)
        self._task = None
        if self.auth_state is not None:
            self.keys.save(self.auth_state)

    def stats(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self._started if self._started else 0.0
        out: dict[str, Any] = {"role": "receiver", "elapsed_s": elapsed,
                               "connections": self.connections,
                               "cpu_seconds": time.process_time()}  # fmt: skip
        if self.actor is not None:
            out.update(end_stats(self.actor, elapsed))
            out["detections"] = self.actor.detections_received
        out["bad_quantum_frames"] = self.bad_frames
        out.update(self._model)
        return json_ready(out)  # type: ignore[no-any-return]


def make_node(
    role: str,
    address: str,
    sink: KeySink,
    secret: bytes,
    *,
    preset: str = "toshiba",
    loss_db: float | None = None,
    distance_km: float | None = None,
    block_bits: int = DEFAULT_BLOCK_BITS,
    eve: str | None = None,
    seed: int | None = None,
    first_block: int = 0,
    auth_state: str | Path | None = None,
) -> TransmitterNode | ReceiverNode:
    """One end of the networked link from plain settings (a KME's ``[qkd]`` table)."""
    params = link_params(preset, loss_db=loss_db, distance_km=distance_km, block_bits=block_bits)
    config = ProtocolConfig(block_bits=block_bits)
    if role == "transmitter":
        return TransmitterNode(params, address, sink, secret, config=config, seed=seed, eve=eve,
                               first_block=first_block, auth_state=auth_state)  # fmt: skip
    if role == "receiver":
        if eve is not None:
            raise ValueError("the eavesdropper sits on the fibre: set it at the transmitter")
        return ReceiverNode(params, address, sink, secret, config=config, seed=seed,
                            first_block=first_block, auth_state=auth_state)  # fmt: skip
    raise ValueError(f"QKD role must be transmitter or receiver, got {role!r}")
