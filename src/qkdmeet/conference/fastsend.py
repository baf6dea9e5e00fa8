"""The forwarding senders' RTP loop: a frame per system call instead of a packet.

aiortc's ``RTCRtpSender._run_rtp`` sends each RTP packet through four awaited
layers (DTLS transport -> ICE transport -> ICE connection -> STUN protocol ->
asyncio transport) and reads the NTP clock twice per packet. The server sends
every forwarded frame to every subscriber, so that per-packet path is most of
its CPU (py-spy at a panel of 8: the sender loop 30 % of the server's samples,
``sendto`` 14 %). :func:`install_fast_rtp` replaces the loop of a *forwarding*
sender (one whose encoder only packetises, :class:`~qkdmeet.conference.
forwarding.PackOnlyEncoder`) with :func:`_forward_rtp`, which keeps aiortc's
packets, header extensions, SRTP and bookkeeping (RTP history for NACK/RTX,
the counters of its RTCP sender reports) but

- reads the clock once per frame (all packets of a frame carry one
  ``abs-send-time``, as they leave together), and
- protects the frame's packets and sends them with one ``sendmsg`` per run of
  equal sizes (UDP GSO, :mod:`qkdmeet.udpgso`: a VP8 frame is cut into equal
  packets but for the last) straight on the nominated ICE pair's socket.

Where that is not possible (a TURN-relayed pair, a kernel without GSO, a
socket with writes queued in asyncio) it sends through the ICE pair's own
``send_data``, packet by packet, as aiortc does. The browser and the bots keep
aiortc's loop.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import traceback
from typing import Any

from aioice.ice import StunProtocol
from aiortc import RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket
from aiortc.utils import random32, uint16_add, uint32_add

from qkdmeet.udpgso import gso_runs, segment_cmsg

logger = logging.getLogger(__name__)

_S = "_RTCRtpSender__"
_D = "_RTCDtlsTransport__"
#: The private attributes of aiortc's sender this loop reads and updates.
_SENDER_ATTRS = ("rtp_started", "rtp_exited", "rtp_history", "rtp_header_extensions_map",
                 "mid", "track", "encoder", "ntp_timestamp", "rtp_timestamp", "octet_count",
                 "packet_count")


class _Gso:
    """Whether GSO works on this host (switched off at the first refusal)."""

    enabled = True
    sends = 0
    packets = 0


def install_fast_rtp(sender: RTCRtpSender) -> bool:
    """Run ``sender``'s RTP with :func:`_forward_rtp` (before ``send()`` starts it).

    False (and aiortc's loop stays) when this aiortc lacks what the loop uses.
    """
    if not all(hasattr(sender, _S + name) for name in _SENDER_ATTRS):
        return False
    sender._run_rtp = functools.partial(_forward_rtp, sender)  # type: ignore[method-assign]
    return True


def stats() -> dict[str, Any]:
    return {"gso": _Gso.enabled, "gso_sends": _Gso.sends, "gso_packets": _Gso.packets}


async def _forward_rtp(s: RTCRtpSender, codec: Any) -> None:
    """aiortc's ``_run_rtp`` for pre-encoded frames: same packets, one send per frame."""
    getattr(s, _S + "rtp_started").set()
    history: dict[int, RtpPacket] = getattr(s, _S + "rtp_history")
    ext_map = getattr(s, _S + "rtp_header_extensions_map")
    sequence_number = random_sequence_number()
    timestamp_origin = random32()
    try:
        while True:
            if not getattr(s, _S + "track"):
                await asyncio.sleep(0.02)
                continue
            enc_frame = await s._next_encoded_frame(codec)
            if enc_frame is None:
                continue
            timestamp = uint32_add(timestamp_origin, enc_frame.timestamp)
            abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
            mid = getattr(s, _S + "mid")
            last = len(enc_frame.payloads) - 1
            wire = []
            octets = 0
            for i, payload in enumerate(enc_frame.payloads):
                packet = RtpPacket(payload_type=codec.payloadType,
                                   sequence_number=sequence_number, timestamp=timestamp)
                packet.ssrc = s._ssrc
                packet.payload = payload
                packet.marker = 1 if i == last else 0
                packet.extensions.abs_send_time = abs_send_time
                packet.extensions.mid = mid
                if enc_frame.audio_level is not None:
                    packet.extensions.audio_level = (False, -enc_frame.audio_level)
                history[sequence_number % RTP_HISTORY_SIZE] = packet
                wire.append(packet.serialize(ext_map))
                octets += len(payload)
                sequence_number = uint16_add(sequence_number, 1)
            await _send_frame(s.transport, wire)
            setattr(s, _S + "ntp_timestamp", clock.current_ntp_time())
            setattr(s, _S + "rtp_timestamp", timestamp)
            setattr(s, _S + "octet_count", getattr(s, _S + "octet_count") + octets)
            setattr(s, _S + "packet_count", getattr(s, _S + "packet_count") + len(wire))
    except (asyncio.CancelledError, ConnectionError, MediaStreamError):
        pass
    except Exception:
        # as aiortc: rtp_exited must be set or RTCRtpSender.stop() hangs
        logger.warning("forwarding sender: %s", traceback.format_exc())
    track = getattr(s, _S + "track")
    if track:
        track.stop()
        setattr(s, _S + "track", None)
    setattr(s, _S + "encoder", None)
    getattr(s, _S + "rtp_exited").set()


async def _send_frame(dtls: Any, packets: list[bytes]) -> None:
    """SRTP-protect ``packets`` and send them on the nominated pair, GSO where it can."""
    if dtls._state != DtlsState.CONNECTED:
        raise ConnectionError("Cannot send encrypted RTP, not connected")
    protect = dtls._tx_srtp.protect
    protected = [protect(p) for p in packets]
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("Cannot send data, not connected")
    addr = pair.remote_addr
    protocol = pair.protocol
    udp: Any = getattr(protocol, "transport", None) if type(protocol) is StunProtocol else None
    # the selector transport's own socket: get_extra_info("socket") is a wrapper
    # without sendmsg
    sock = getattr(udp, "_sock", None)
    if not isinstance(sock, socket.socket):
        sock = None
    if (udp is None or sock is None or not _Gso.enabled or len(protected) < 2
            or udp.get_write_buffer_size() > 0):
        for data in protected:
            await protocol.send_data(data, addr)
    else:
        for start, end in gso_runs(protected):
            run = protected[start:end]
            if len(run) == 1:
                udp.sendto(run[0], addr)
                continue
            try:
                sock.sendmsg([b"".join(run)], segment_cmsg(len(run[0])), 0, addr)
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT):
                    _Gso.enabled = False  # no segmentation on this path: as aiortc from now
                for data in run:  # (EAGAIN: asyncio queues them, in order)
                    udp.sendto(data, addr)
                continue
            _Gso.sends += 1
            _Gso.packets += len(run)
    setattr(dtls, _D + "tx_bytes", getattr(dtls, _D + "tx_bytes") + sum(map(len, protected)))
    setattr(dtls, _D + "tx_packets", getattr(dtls, _D + "tx_packets") + len(protected))
