"""The QKD-VPN gateway: TUN <-> one-time pad + Wegman-Carter <-> UDP.

Outbound pipeline (LAN -> WAN; this gateway is ETSI 014 master), in the
order the functions below stand:

1. the TUN device delivers a batch of inner IP packets (``_on_tun``);
2. key reservation: ``(sequence, key ID, offset)`` from the sender key
   stream; no key -> drop ``no_key`` (fail closed: never plaintext);
3. header written, inner packet XORed with the pad (one-time pad);
4. tag over header || ciphertext with the key's hash keys and a fresh mask;
5. the datagram is sent to the peer; the used key bytes are zeroed.

Inbound pipeline (WAN -> LAN; slave), ``_on_udp`` then ``_inbound``:

1. source check against the configured peer (``bad_source``);
2. parse: version, type, length (``truncated``, ``bad_length``, ...);
3. replay window pre-check (``replayed``, ``too_old``), cheap rejection;
4. key lookup by the in-band key ID; unknown -> held (bounded) while the
   slave fetches it with ``dec_keys`` (``pending_full``, ``key_unavailable``,
   ``retired_key``);
5. bounds of offset/length in that key (``bad_offset``), offset not used
   before (``reused_offset``);
6. tag verification (``bad_tag``);
7. replay window update; only now does the packet count as received;
8. ANNOUNCE: prefetch the listed keys; REKEY: discard our outbound keys;
   DATA: XOR with the pad, inner IP sanity (``bad_inner``), write to TUN.

Lost keys (a restarted slave): ETSI 014 delivers a key to the slave once, so
a restarted gateway cannot fetch the peer's keys that its previous run had
fetched. A gateway that finds state of a previous run sends REKEY with its
first announcement (authenticated with its own outbound key), and again when
a key fetch fails within :data:`REKEY_WINDOW_SECONDS` of start (at most
:data:`REKEY_MAX` times, one per :data:`REKEY_INTERVAL_SECONDS`: a forged
packet can make a fetch fail, and must not make the peer waste key). The
peer then discards its current and buffered keys (counted as discarded) and
moves to fresh ones, which it announces.

Batched path: when the TUN and the bind are file descriptors (the daemon's
TunDevice and UdpBind; ``data_path = "batched"``, the default), the readers
call :meth:`Gateway._pump_out` and :meth:`Gateway._pump_in` instead, which run
both pipelines for runs of packets inside one numba kernel each
(:mod:`qkdmeet.vpn.pump`) with the key in use; whatever the kernel hands back
(the packet that needs the next key, any datagram that is not a plain DATA
packet of the key in use or fails a check) goes through the functions below,
so every drop is decided and counted here.

Every failed check drops the packet silently and counts the reason in
:class:`~qkdmeet.vpn.metrics.GatewayMetrics`. Control work (key prefetch,
key fetch, budget endpoint) runs in tasks owned by this object and stopped
by :meth:`Gateway.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qkdmeet.kme.types import KeySupplier
from qkdmeet.vpn import pump
from qkdmeet.vpn.constants import (
    DEFAULT_KEY_SIZE_BITS,
    DEFAULT_PREFETCH_BYTES,
    KEY_HASH_BYTES,
    KEY_MASK_BYTES,
    MAX_BODY_BYTES,
    MAX_KEYS_PER_REQUEST,
    PENDING_PER_KEY,
    READ_BATCH,
    REFERENCE_PACKET_BYTES,
    REKEY_INTERVAL_SECONDS,
    REKEY_MAX,
    REKEY_WINDOW_SECONDS,
    TYPE_ANNOUNCE,
    TYPE_DATA,
    TYPE_GROUP,
    TYPE_REKEY,
)
from qkdmeet.vpn.fastpath import open_body, seal, verify
from qkdmeet.vpn.keygroups import GroupingSupplier, group_body, parse_group
from qkdmeet.vpn.keystream import Ledger, OpenKey, ReceiverKeyStream, SenderKeyStream
from qkdmeet.vpn.metrics import GatewayMetrics, RateMeter
from qkdmeet.vpn.replay import ReplayWindow
from qkdmeet.vpn.transport import Address, DatagramBind, RawDatagramBind
from qkdmeet.vpn.tun import PacketDevice, RawPacketDevice
from qkdmeet.vpn.wire import (
    BODY_AT,
    announce_body,
    header,
    key_bytes_used,
    parse,
    parse_announce,
)

log = logging.getLogger(__name__)

_MAX_PENDING_KEYS = 4 * MAX_KEYS_PER_REQUEST
#: Kernel calls per wake-up of a reader on the batched path (READ_BATCH packets each).
_PUMP_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class GatewayKeys:
    """Who this gateway is to key management."""

    supplier: KeySupplier
    sae_id: str
    peer_sae_id: str
    key_size_bits: int = DEFAULT_KEY_SIZE_BITS
    prefetch_bytes: int = DEFAULT_PREFETCH_BYTES


def payload_per_key_byte(packet_bytes: int, key_bytes: int) -> float:
    """Payload carried per key byte with keys of ``key_bytes`` (hash keys and tails counted)."""
    per_packet = packet_bytes + KEY_MASK_BYTES
    packets = (key_bytes - KEY_HASH_BYTES) // per_packet
    return packets * packet_bytes / key_bytes if key_bytes else 0.0


class Gateway:
    """One site's QKD-VPN gateway over a packet device and a datagram bind."""

    def __init__(
        self,
        *,
        tun: PacketDevice,
        bind: DatagramBind,
        keys: GatewayKeys,
        name: str = "gateway",
        state_dir: Path | None = None,
        ledger: Ledger | None = None,
        check_inner: bool = True,
        batched: bool = True,
    ) -> None:
        self.name = name
        self.tun = tun
        self.bind = bind
        self.keys = keys
        self.metrics = GatewayMetrics(name)
        self.check_inner = check_inner
        self.sender = SenderKeyStream(
            keys.supplier,
            keys.peer_sae_id,
            self.metrics.outbound,
            key_size_bits=keys.key_size_bits,
            prefetch_bytes=keys.prefetch_bytes,
            state_dir=state_dir,
            ledger=ledger,
            on_new_keys=self._announce,
        )
        self.receiver = ReceiverKeyStream(
            keys.supplier, keys.peer_sae_id, self.metrics.inbound, self._on_key_ready
        )
        self.window = ReplayWindow()
        self._pending: OrderedDict[bytes, list[bytes]] = OrderedDict()
        self._inbound_rate = RateMeter()
        #: the supplier that groups a KME's small keys, if any (ETSI: the daemon's)
        self.groups = keys.supplier if isinstance(keys.supplier, GroupingSupplier) else None
        #: the batched data path (:mod:`.pump`) when both ends are file descriptors
        self.batched = (batched and isinstance(tun, RawPacketDevice)
                        and isinstance(bind, RawDatagramBind))
        # typed views of the two ends for the batched path (isinstance on a
        # Protocol costs microseconds: checked once, here)
        self._raw_tun: RawPacketDevice = tun  # type: ignore[assignment]
        self._raw_bind: RawDatagramBind = bind  # type: ignore[assignment]
        self._out_buf, self._out_st = pump.buffer(), pump.counters()
        self._in_buf, self._in_st = pump.buffer(), pump.counters()
        self._seq = np.zeros(1, np.uint64)
        self._no_ledger = np.zeros(0, np.int64)
        self._ledger_buf = np.zeros(2 * READ_BATCH, np.int64)
        #: the key of the last DATA packet accepted: the one the inbound kernel opens
        self._fast_key: OpenKey | None = None
        self._running = False
        self._last_rekey = float("-inf")
        self._started_at = 0.0
        self.rekeys_sent = 0
        self.rekeys_received = 0

    @property
    def max_packet(self) -> int:
        """The largest inner packet one key can carry (a packet never spans keys);
        a key is as large as the KME's limits allow (negotiated by the sender)."""
        return min(MAX_BODY_BYTES, self.sender.key_bytes - KEY_HASH_BYTES - KEY_MASK_BYTES)

    # --- lifecycle (control) --------------------------------------------------
    async def start(self, *, first_key_timeout: float = 0.0) -> None:
        """Open the WAN side and start fetching key; open the TUN side once the
        first outbound key is buffered or ``first_key_timeout`` seconds have
        passed (packets the kernel queues meanwhile wait in the TUN instead of
        being dropped for lack of key; without key they are dropped, as ever)."""
        if self.batched:
            pump.warm_up()
            self._raw_bind.watch(self._pump_in)
        else:
            self.bind.open(self._on_udp)
        self._started_at = time.monotonic()
        self.sender.start()
        self._running = True
        poll = 0.05  # the key stream has no event for its first key: poll it
        for _ in range(math.ceil(first_key_timeout / poll)):
            if self.sender.buffered:
                break
            await asyncio.sleep(poll)
        if self.batched:
            self._raw_tun.watch(self._pump_out)
        else:
            self.tun.open(self._on_tun)

    async def stop(self) -> None:
        self._running = False
        self.tun.close()
        self.bind.close()
        await self.sender.stop()
        await self.receiver.stop()
        dropped = sum(len(v) for v in self._pending.values())
        if dropped:
            self.metrics.inbound.drop("key_unavailable", dropped)
        self._pending.clear()

    # --- outbound: TUN -> key -> OTP -> tag -> UDP ---------------------------------
    def _on_tun(self, packets: list[bytes]) -> None:
        m = self.metrics.outbound
        reserve = self.sender.reserve
        out: list[bytes] = []
        send = out.append
        limit = self.max_packet
        for packet in packets:
            n = len(packet)
            if n == 0 or n > limit:
                m.drop("bad_size")
                continue
            slot = reserve(n)
            if slot is None:
                m.drop("no_key")
                continue
            key, off = slot.key, slot.offset
            head = header(TYPE_DATA, n, slot.sequence, key.raw_id, off)
            send(seal(head, packet, key.view, off, key.r))  # pad, tag; key bytes zeroed
            m.packets += 1
            m.payload_bytes += n
        if out:
            self.bind.send_many(out)

    def _pump_out(self) -> None:
        """The TUN is readable (batched path): the kernel seals runs of packets with
        the open key; the packet that needs the next key, and every packet while
        no key is open, takes :meth:`_on_tun`."""
        tun, bind = self._raw_tun, self._raw_bind
        m, st, buf = self.metrics.outbound, self._out_st, self._out_buf
        ledger = self._ledger_buf if self.sender.has_ledger else self._no_ledger
        for _ in range(_PUMP_ROUNDS):
            run = self.sender.run()
            if run is None:
                packet = tun.read_one()
                if packet is None:
                    return
                self._on_tun([packet])
                continue
            key, off, seq, seq_end = run
            self._seq[0] = seq
            pump.seal_run(tun.fileno(), bind.fileno(), buf, key.view, off, key.r, key.id_array,
                          self._seq, np.uint64(seq_end), self.max_packet, READ_BATCH, ledger, st)
            packets, payload = int(st[pump.PACKETS]), int(st[pump.PAYLOAD])
            self.sender.commit_run(key, int(st[pump.OFFSET]), int(self._seq[0]), packets,
                                   payload, ledger)
            m.packets += packets
            m.payload_bytes += payload
            if st[pump.BAD_SIZE]:
                m.drop("bad_size", int(st[pump.BAD_SIZE]))
            bind.send_errors += int(st[pump.IO_ERRORS])
            stop = st[pump.STOP]
            if stop == pump.STOP_KEY:
                self._on_tun([bytes(buf[BODY_AT : BODY_AT + st[pump.HELD]])])
            elif stop != pump.STOP_SEQUENCE:
                return  # empty, or a batch done: the reader fires again while readable

    def _announce(self, key_ids: list[uuid.UUID]) -> None:
        """Tell the slave which keys come next, so it fetches them ahead of need."""
        if self.sender.restarted and self.rekeys_sent == 0:
            self._request_rekey()
        plain: list[uuid.UUID] = []
        for kid in key_ids:
            members = self.groups.members(kid) if self.groups is not None else None
            if members is None:
                plain.append(kid)
            else:  # a key group: its member IDs, so the slave can fetch them
                self._send_control(TYPE_GROUP, group_body(kid, members))
        if plain:
            self._send_control(TYPE_ANNOUNCE, announce_body(plain))

    def _send_control(self, ptype: int, body: bytes) -> None:
        """An authenticated ANNOUNCE or GROUP packet (body in clear, tag masked)."""
        slot = self.sender.reserve(0)
        if slot is None:
            return
        key, off = slot.key, slot.offset
        mask = bytes(key.data[off : off + KEY_MASK_BYTES])
        key.data[off : off + KEY_MASK_BYTES] = bytes(KEY_MASK_BYTES)
        msg = header(ptype, len(body), slot.sequence, key.raw_id, off) + body
        self.bind.send(msg + key.mac.tag(msg, mask))
        self.metrics.outbound.announces += 1

    def _request_rekey(self) -> None:
        """Ask the peer to drop the keys we could not fetch (rate-limited)."""
        now = time.monotonic()
        if now - self._last_rekey < REKEY_INTERVAL_SECONDS or self.rekeys_sent >= REKEY_MAX:
            return
        slot = self.sender.reserve(0)
        if slot is None:
            return
        self._last_rekey = now
        key, off = slot.key, slot.offset
        mask = bytes(key.data[off : off + KEY_MASK_BYTES])
        key.data[off : off + KEY_MASK_BYTES] = bytes(KEY_MASK_BYTES)
        msg = header(TYPE_REKEY, 0, slot.sequence, key.raw_id, off)
        self.bind.send(msg + key.mac.tag(msg, mask))
        self.rekeys_sent += 1

    # --- inbound: UDP -> checks -> key -> tag -> window -> OTP -> TUN --------------
    def _on_udp(self, batch: list[tuple[bytes, Address]]) -> None:
        accepts = self.bind.accepts
        for datagram, source in batch:
            if not accepts(source):
                self.metrics.inbound.drop("bad_source")
                continue
            self._inbound(datagram)

    def _pump_in(self) -> None:
        """The WAN socket is readable (batched path): the kernel opens the DATA packets
        of the key in use; every other datagram takes :meth:`_inbound`, which
        also picks the key the kernel uses next."""
        tun, bind = self._raw_tun, self._raw_bind
        m, st, buf = self.metrics.inbound, self._in_st, self._in_buf
        w = self.window
        for _ in range(_PUMP_ROUNDS):
            key = self._fast_key
            if key is None or key.closed:
                datagram = bind.recv_one()  # connected: only the peer's datagrams arrive
                if datagram is None:
                    return
                self._inbound(datagram)
                continue
            pump.open_run(bind.fileno(), tun.fileno(), buf, key.view, key.r, key.id_array,
                          key.seen, w.ring, w.state, self.check_inner, READ_BATCH, st)
            if st[pump.ACCEPTED]:
                self.receiver.used_run(key, int(st[pump.KEY_USED]), int(st[pump.ACCEPTED]))
                m.packets += int(st[pump.PACKETS])
                m.payload_bytes += int(st[pump.PAYLOAD])
                if st[pump.BAD_INNER]:
                    m.drop("bad_inner", int(st[pump.BAD_INNER]))
                tun.write_errors += int(st[pump.IO_ERRORS])
            if st[pump.STOP] != pump.STOP_SLOW:
                return
            self._inbound(bytes(buf[: st[pump.HELD]]))

    def _inbound(self, datagram: bytes) -> None:
        m = self.metrics.inbound
        parsed, reason = parse(datagram)
        if parsed is None:
            m.drop(reason)
            return
        reason = self.window.check(parsed.sequence)
        if reason:
            m.drop(reason)
            return
        group = None
        if parsed.ptype == TYPE_GROUP:
            group = parse_group(parsed.body) if self.groups is not None else None
            if group is None:
                m.drop("bad_group")
                return
            if group[0].bytes == parsed.key_id:
                # a group announced with its own key (the first one): its ID binds
                # the members, so they may be fetched before the tag can be checked
                self.groups.learn(*group)  # type: ignore[union-attr]
        key = self.receiver.get(parsed.key_id)
        if key is None:
            self._hold(parsed.key_id, datagram)
            return
        is_data = parsed.ptype == TYPE_DATA
        need = key_bytes_used(parsed.ptype, parsed.length)
        off = parsed.offset
        if off < KEY_HASH_BYTES or off + need > len(key.data):
            m.drop("bad_offset")
            return
        if key.offset_seen(off):
            m.drop("reused_offset")
            return
        if not verify(datagram, parsed.length, key.view, off, key.r):
            m.drop("bad_tag")
            return
        reason = self.window.accept(parsed.sequence)
        if reason:
            m.drop(reason)
            return
        key.mark_seen(off)
        self.receiver.used(key, need)
        if parsed.ptype == TYPE_REKEY:
            self.rekeys_received += 1
            lost = self.sender.rotate()
            log.warning("peer lost our keys: %d key bytes discarded, fresh keys next", lost)
            return
        if group is not None:
            assert self.groups is not None
            self.groups.learn(*group)
            m.announces += 1
            self.receiver.want([group[0].bytes])
            return
        if not is_data:
            ids = parse_announce(parsed.body)
            if ids is None:
                m.drop("bad_announce")
                return
            m.announces += 1
            self.receiver.want([k.bytes for k in ids])
            return
        self._deliver(key, off, datagram, parsed.length)

    def _deliver(self, key: OpenKey, off: int, datagram: bytes, length: int) -> None:
        m = self.metrics.inbound
        plain = open_body(datagram, length, key.view, off)  # key bytes zeroed
        self._fast_key = key
        if self.check_inner and not pump.inner_ok(np.frombuffer(plain, np.uint8), 0, len(plain)):
            m.drop("bad_inner")
            return
        self.tun.write(plain)
        m.packets += 1
        m.payload_bytes += len(plain)

    def _hold(self, raw_id: bytes, datagram: bytes) -> None:
        m = self.metrics.inbound
        if self.receiver.is_retired(raw_id):
            m.drop("retired_key")
            return
        queue = self._pending.get(raw_id)
        if queue is None:
            if len(self._pending) >= _MAX_PENDING_KEYS:
                m.drop("pending_full")
                return
            queue = self._pending[raw_id] = []
            self.receiver.want([raw_id], urgent=True)  # bounded by _MAX_PENDING_KEYS
        if len(queue) >= PENDING_PER_KEY:
            m.drop("pending_full")
            return
        queue.append(datagram)

    def _on_key_ready(self, raw_id: bytes, ok: bool) -> None:
        if not ok and self._running and (
            time.monotonic() - self._started_at < REKEY_WINDOW_SECONDS
        ):
            self._request_rekey()
        queue = self._pending.pop(raw_id, None)
        if not queue:
            return
        if not ok or not self._running:
            self.metrics.inbound.drop("key_unavailable", len(queue))
            return
        for datagram in queue:
            self._inbound(datagram)

    # --- budget (back-pressure signal) ---------------------------------------------
    def budget(self) -> dict[str, Any]:
        """Key budget of the outbound direction, for applications to adapt their rate."""
        out = self.metrics.outbound
        self._inbound_rate.sample(self.metrics.inbound.key_arrived_bytes)
        # KME production rate when its stock is known, else the rate we fetch at
        known = self.sender.kme_stock_bytes is not None
        arrival = self.sender.production.rate() if known else self.sender.arrival.rate()
        consumption = self.sender.consumption.rate()
        eff = payload_per_key_byte(REFERENCE_PACKET_BYTES, self.sender.key_bytes)  # negotiated
        return {
            "gateway": self.name,
            "key_buffered_bytes": self.sender.buffered,
            "key_arrival_bytes_per_s": arrival,
            "key_fetch_bytes_per_s": self.sender.arrival.rate(),
            "kme_stock_bytes": self.sender.kme_stock_bytes,
            "key_consumption_bytes_per_s": consumption,
            "payload_per_key_byte": eff,
            "sustainable_payload_bps": arrival * eff * 8,
            "seconds_of_key_at_consumption": (
                self.sender.buffered / consumption if consumption > 0 else None
            ),
            # the gateway's buffer is bounded by its prefetch; what is left in
            # all is that plus the KME's stock (when the KME reports it)
            "seconds_of_stock_at_consumption": (
                (self.sender.buffered + (self.sender.kme_stock_bytes or 0)) / consumption
                if consumption > 0 else None
            ),
            "kme_errors": self.sender.kme_errors + self.receiver.kme_errors,
            "rekeys_sent": self.rekeys_sent,
            "rekeys_received": self.rekeys_received,
            "drops_no_key": out.drops.get("no_key", 0),
            "inbound_key_buffered_bytes": self.metrics.inbound.key_buffered_bytes,
        }
