"""The link with both ends in one process: :class:`QkdLink` (the CLI's ``simulate``,
the benchmark, ``qkdmeet kme pair --link qkd``), over an in-memory authenticated
channel, started with ``start()`` and stopped with ``stop()`` (which cancels and
awaits every task it owns); :func:`link_params` (a preset at a loss, intensities
optimised for the block size) and :func:`bootstrap_secret`.

The parts it is made of: the source (:mod:`qkdmeet.qkd.source`), the ends
(:mod:`qkdmeet.qkd.protocol`), the figures (:mod:`qkdmeet.qkd.figures`); one end
per process over TCP is :mod:`qkdmeet.qkd.nodes`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import Any

import numpy as np

from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd.channel import (
    BobChunk,
    QuantumChannel,
)
from qkdmeet.qkd.classical import (
    DEFAULT_SECRET_BYTES,
    AuthenticatedChannel,
    AuthKeys,
    memory_pair,
)
from qkdmeet.qkd.eve import Eavesdropper, parse_eve
from qkdmeet.qkd.figures import attack_summary, end_stats, json_ready, model_figures
from qkdmeet.qkd.params import DEFAULT_BLOCK_BITS, LinkParams, get_preset
from qkdmeet.qkd.protocol import (
    ProtocolConfig,
    Receiver,
    Transmitter,
)
from qkdmeet.qkd.sink import KeySink, ListSink
from qkdmeet.qkd.source import DEFAULT_CHUNK_PULSES, PulseSource
from qkdmeet.qkd.tasks import cancel_and_wait, log_task_end


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
        self._model = model_figures(params)

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
            task.add_done_callback(log_task_end)
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in reversed(self._tasks):
            await cancel_and_wait(task)
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
