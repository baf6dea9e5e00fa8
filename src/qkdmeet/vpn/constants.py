"""Limits of the QKD-VPN, split as in wireguard-go into the wire format
("specification") and choices of this implementation.

The wire format itself (the header's layout and field offsets, the codec) is
:mod:`qkdmeet.vpn.wire`'s alone; the numbers it is built from (version, packet
types, header and tag sizes, key bytes per packet) are the specification
constants here.
"""

from __future__ import annotations

from typing import Final

from qkdmeet.crypto.wegman_carter import HASH_KEY_BYTES, MASK_BYTES, TAG_BYTES

# --- specification -----------------------------------------------------------
#: Version byte of the outer header.
VERSION: Final = 1
#: Packet types.
TYPE_DATA: Final = 1
TYPE_ANNOUNCE: Final = 2
#: "Your keys are lost to me: drop them and take fresh ones" (empty body).
TYPE_REKEY: Final = 3
#: "These keys of your KME, in this order, are the key group <ID>" (body: the
#: group ID, then its members' key IDs; see :mod:`qkdmeet.vpn.keygroups`).
TYPE_GROUP: Final = 4
#: Bytes of the outer header.
HEADER_BYTES: Final = 32
#: Bytes of the tag that ends every packet.
TAG_LEN: Final = TAG_BYTES
#: Header plus tag: the per-packet overhead inside the UDP payload.
OVERHEAD_BYTES: Final = HEADER_BYTES + TAG_LEN
#: Key bytes per key spent on the hash key pair (r1 || r2), at the start of each key.
KEY_HASH_BYTES: Final = HASH_KEY_BYTES
#: Key bytes per packet spent on the tag mask, besides the pad.
KEY_MASK_BYTES: Final = MASK_BYTES
#: Largest inner packet the format can carry (u16 length).
MAX_BODY_BYTES: Final = 65535
#: Largest sequence number; a sender never wraps.
MAX_SEQUENCE: Final = 2**64 - 1

# --- implementation ----------------------------------------------------------
#: Outer IPv4 + UDP headers in front of our payload on the WAN.
OUTER_IP_UDP_BYTES: Final = 20 + 8
#: Default MTU of the WAN path between the gateways.
WAN_MTU: Final = 1500
#: TUN MTU so that a full inner packet fits one WAN datagram unfragmented:
#: 1500 - 28 - 64 = 1408; WebRTC media packets (<= ~1,370 bytes) cross whole.
TUN_MTU: Final = WAN_MTU - OUTER_IP_UDP_BYTES - OVERHEAD_BYTES
#: Bits of the anti-replay window (as wireguard-go's 2048 minus one block).
REPLAY_WINDOW_BITS: Final = 2048
#: Packets read per wake-up of a reader (TUN or UDP) before yielding.
READ_BATCH: Final = 64
#: Sequence numbers reserved (and persisted) at once by a sender.
SEQUENCE_RESERVATION: Final = 1 << 20
#: Default size of one ETSI 014 key requested by a gateway, in bits.
DEFAULT_KEY_SIZE_BITS: Final = 8 * 65536
#: Default key bytes a master keeps buffered ahead of need.
DEFAULT_PREFETCH_BYTES: Final = 8 * 1024 * 1024
#: Keys requested in one ETSI 014 enc_keys call at most.
MAX_KEYS_PER_REQUEST: Final = 16
#: Inbound packets held per key ID while the slave fetches that key.
PENDING_PER_KEY: Final = 256
#: Key IDs a slave keeps open at once (older ones are retired and zeroed).
OPEN_KEYS: Final = 8
#: Retired key IDs remembered so a late packet never triggers a re-fetch.
RETIRED_KEYS: Final = 4096
#: Least seconds between two REKEY requests.
REKEY_INTERVAL_SECONDS: Final = 1.0
#: REKEY requests after a failed key fetch are sent only this long after start...
REKEY_WINDOW_SECONDS: Final = 30.0
#: ... and at most this many times (an unauthenticated packet with an unknown key
#: ID can trigger a failed fetch, so an attacker must not make the peer waste key).
REKEY_MAX: Final = 3
#: Seconds before the first retry when the KME fails (doubled at each further failure)...
KME_RETRY_SECONDS: Final = 0.5
#: ... up to this many.
KME_RETRY_MAX_SECONDS: Final = 8.0
#: How long a stopping gateway waits for its key requests under way: the KME
#: counts a key delivered when it answers, so a request cancelled after that
#: would lose the key from the gateway's final counters (the accounting
#: identity then fails by one key).
KEY_STOP_DRAIN_SECONDS: Final = 5.0
#: Seconds over which arrival and consumption rates are averaged.
RATE_WINDOW_SECONDS: Final = 10.0
#: Inner packet size at which key efficiency is quoted.
REFERENCE_PACKET_BYTES: Final = 1200
#: How long a starting gateway waits for its first outbound key before it reads
#: its TUN (packets queue in the TUN meanwhile instead of being dropped).
FIRST_KEY_WAIT_SECONDS: Final = 10.0
