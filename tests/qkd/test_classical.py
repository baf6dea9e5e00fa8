"""The authenticated classical channel: framing, Wegman-Carter tags, replay, key accounting."""

from __future__ import annotations

import asyncio
import os

import pytest

from qkdmeet.crypto.wegman_carter import HASH_KEY_BYTES, MASK_BYTES
from qkdmeet.qkd.classical import (
    AuthenticatedChannel,
    AuthenticationError,
    AuthKeyExhausted,
    AuthKeys,
    ReplayError,
    StreamTransport,
    memory_pair,
)

SECRET = bytes(range(256)) * 9  # hash key + 35 masks per direction


def _pair(secret: bytes = SECRET) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    ta, tb = memory_pair()
    return (
        AuthenticatedChannel(ta, AuthKeys.from_secret(secret, transmitter=True)),
        AuthenticatedChannel(tb, AuthKeys.from_secret(secret, transmitter=False)),
    )


async def test_messages_pass_both_ways_and_spend_one_mask_each() -> None:
    a, b = _pair()
    await a.send(b"hello")
    await b.send(b"world")
    assert await b.recv() == b"hello"
    assert await a.recv() == b"world"
    # each end: the hash key plus one mask per message in either direction
    assert a.keys.spent_bits == b.keys.spent_bits == (HASH_KEY_BYTES + 2 * MASK_BYTES) * 8


async def test_modified_message_is_rejected_then_channel_goes_on() -> None:
    a, b = _pair()
    ta = a.transport
    ta.tamper = lambda f: [f[:13] + bytes([f[13] ^ 1]) + f[14:]]  # type: ignore[attr-defined]
    await a.send(b"pay 100 to Bob")
    with pytest.raises(AuthenticationError, match="failed authentication"):
        await b.recv()
    ta.tamper = None  # type: ignore[attr-defined]
    await a.send(b"next")
    assert await b.recv() == b"next"
    assert b.rejected == 1


async def test_replayed_message_is_rejected() -> None:
    a, b = _pair()
    sent: list[bytes] = []

    def record(f: bytes) -> list[bytes]:
        sent.append(f)
        return [f]

    a.transport.tamper = record  # type: ignore[attr-defined]
    await a.send(b"one")
    assert await b.recv() == b"one"
    a.transport.tamper = lambda f: [sent[0], f]  # type: ignore[attr-defined]
    await a.send(b"two")
    with pytest.raises(ReplayError):
        await b.recv()
    assert await b.recv() == b"two"
    assert b.replayed == 1


async def test_a_lost_message_costs_its_mask_and_does_not_desynchronise() -> None:
    a, b = _pair()
    a.transport.tamper = lambda f: []  # type: ignore[attr-defined]
    await a.send(b"lost")
    a.transport.tamper = None  # type: ignore[attr-defined]
    await a.send(b"kept")
    assert await b.recv() == b"kept"


async def test_key_exhaustion_and_refill() -> None:
    secret = os.urandom(HASH_KEY_BYTES + 2 * 8 * MASK_BYTES)
    a, b = _pair(secret)
    for i in range(8):
        await a.send(bytes([i]))
        assert await b.recv() == bytes([i])
    with pytest.raises(AuthKeyExhausted):
        await a.send(b"one too many")
    new_key = os.urandom(40 * MASK_BYTES)
    took_a = a.keys.refill(new_key, a.next_send, a.next_recv, transmitter=True)
    took_b = b.keys.refill(new_key, b.next_send, b.next_recv, transmitter=False)
    # only the transmitter's direction was used: 8 masks bring it back to the target of 8
    assert took_a == took_b == 8 * MASK_BYTES
    assert a.keys.refilled_bits == took_a * 8
    await a.send(b"after refill")
    assert await b.recv() == b"after refill"


def test_secret_too_short() -> None:
    with pytest.raises(ValueError, match="too short"):
        AuthKeys.from_secret(b"x" * 100, transmitter=True)


async def test_tcp_rejects_modified_and_replayed_frames() -> None:
    accepted: asyncio.Queue[StreamTransport] = asyncio.Queue()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        t = StreamTransport(r, w)
        t.start()
        await accepted.put(t)

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    client = StreamTransport(r, w)
    client.start()
    srv = await accepted.get()
    try:
        a = AuthenticatedChannel(client, AuthKeys.from_secret(SECRET, transmitter=True))
        b = AuthenticatedChannel(srv, AuthKeys.from_secret(SECRET, transmitter=False))
        frames: list[bytes] = []
        orig = client.send

        async def spy(*parts: bytes) -> None:
            frames.append(b"".join(parts))
            await orig(*parts)

        client.send = spy  # type: ignore[method-assign]
        await a.send(b"genuine")
        assert await b.recv() == b"genuine"
        await orig(frames[0])  # replay over the wire
        with pytest.raises(ReplayError):
            await b.recv()
        await a.send(b"second")
        bad = frames[1][:-1] + bytes([frames[1][-1] ^ 0x80])
        await orig(bad)  # an attacker's modified copy arrives first
        assert await b.recv() == b"second"
        with pytest.raises(ReplayError):
            await b.recv()  # the modified copy reuses the seq: refused

        async def intercept(*parts: bytes) -> None:
            frames.append(b"".join(parts))  # a man in the middle holds the genuine frame back

        client.send = intercept  # type: ignore[method-assign]
        await a.send(b"third")
        frame = frames[2]
        await orig(frame[:12] + b"X" + frame[13:])
        with pytest.raises(AuthenticationError):
            await b.recv()
        # quantum frames travel beside the classical ones
        await client.send_quantum(b"photons")
        assert await srv.quantum.get() == b"photons"
    finally:
        await client.close()
        await srv.close()
        server.close()
        await server.wait_closed()


def test_state_round_trip_burns_outgoing_masks_on_restart(tmp_path: object) -> None:
    keys = AuthKeys.from_secret(SECRET, transmitter=True)
    keys.outgoing.take(3)
    again = AuthKeys.from_bytes(keys.to_bytes())
    assert again.to_bytes() == keys.to_bytes()
    skipped = AuthKeys.from_bytes(keys.to_bytes(), skip_outgoing=5)
    assert skipped.outgoing.base == keys.outgoing.base + 5
    assert skipped.incoming.base == keys.incoming.base
    with pytest.raises(ValueError):
        AuthKeys.from_bytes(b"junk" * 20)


async def test_concurrent_tagged_sends_each_return_their_own_tag() -> None:
    """Checkpoints of blocks in flight are sent concurrently over a transport whose
    send yields: each caller gets the seq and tag of its own frame, in seq order."""
    import asyncio

    from qkdmeet.qkd.classical import AuthenticatedChannel, AuthKeys

    class SlowTransport:
        def __init__(self) -> None:
            self.frames: list[bytes] = []

        async def send(self, *parts: bytes) -> None:
            await asyncio.sleep(0.01)
            self.frames.append(b"".join(parts))

        async def recv(self) -> bytes:  # pragma: no cover - not used
            raise NotImplementedError

        async def close(self) -> None:
            pass

    t = SlowTransport()
    ch = AuthenticatedChannel(t, AuthKeys.from_secret(SECRET, transmitter=True))  # type: ignore[arg-type]
    results = await asyncio.gather(*(ch.send_tagged(bytes([i]) * 100, ch.transcript_mac())
                                     for i in range(5)))  # fmt: skip
    by_seq = {int.from_bytes(f[:8], "little"): f[-32:] for f in t.frames}
    for seq, tag in results:
        assert by_seq[seq] == tag
    assert [int.from_bytes(f[:8], "little") for f in t.frames] == sorted(by_seq)
