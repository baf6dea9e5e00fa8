"""One end of the link per process, over TCP: :class:`TransmitterNode` (the source
and Alice, listening) and :class:`ReceiverNode` (Bob, connecting), as ``qkdmeet qkd
transmitter|receiver`` and a KME's ``[qkd]`` table run them (:func:`make_node`).
Each is started with ``start()`` and stopped with ``stop()``, which cancels and
awaits every task it owns; ``stats()`` returns the end's live figures
(:func:`qkdmeet.qkd.figures.end_stats`).

Authentication keys persist across restarts (:func:`load_auth_keys`).

Known limit: Bob hands a block to his sink when he sends VERDICT, Alice when
she receives it. If a networked end is killed or the connection drops in
between, one end holds one block more than the other (the next blocks are
again identical, under their own block ids).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from qkdmeet.qkd.channel import (
    BobChunk,
    ChannelError,
    QuantumChannel,
    decode_bob_chunk,
    encode_bob_chunk,
)
from qkdmeet.qkd.classical import (
    AuthenticatedChannel,
    AuthKeys,
    ClassicalChannelError,
    StreamTransport,
)
from qkdmeet.qkd.eve import Eavesdropper, parse_eve
from qkdmeet.qkd.figures import attack_summary, end_stats, json_ready, model_figures
from qkdmeet.qkd.link import link_params
from qkdmeet.qkd.params import DEFAULT_BLOCK_BITS, DEFAULT_PIPELINE_DEPTH, LinkParams
from qkdmeet.qkd.protocol import (
    ProtocolConfig,
    Receiver,
    Transmitter,
    _End,
)
from qkdmeet.qkd.sink import KeySink
from qkdmeet.qkd.source import DEFAULT_CHUNK_PULSES, PulseSource
from qkdmeet.qkd.tasks import cancel_and_wait, log_task_end

log = logging.getLogger(__name__)


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
    task.add_done_callback(log_task_end)
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
        self._model = model_figures(params)

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
            await cancel_and_wait(source)
            await transport.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await cancel_and_wait(self._session)
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
        self._model = model_figures(params)

    async def start(self) -> None:
        self._started = time.perf_counter()
        self._warm = _start_warm_up(self.params, self.config)
        self._task = asyncio.create_task(self._run(), name="qkd-receiver")
        self._task.add_done_callback(log_task_end)

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
            await cancel_and_wait(feed)
            await transport.close()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
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
