"""The DATA packet kernels against the reference construction (WegmanCarterMac + xor)."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from qkdmeet.crypto.wegman_carter import WegmanCarterMac
from qkdmeet.vpn.constants import TYPE_DATA
from qkdmeet.vpn.fastpath import open_body, seal, verify
from qkdmeet.vpn.otp import xor
from qkdmeet.vpn.wire import header


def _key(nbytes: int = 4096) -> tuple[bytearray, np.ndarray, np.ndarray]:
    data = bytearray(os.urandom(nbytes))
    return data, np.frombuffer(data, np.uint8), np.frombuffer(bytes(data[:32]), np.uint8)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 100, 1200, 1408])
def test_seal_is_the_reference_construction_and_zeroes_its_key(n: int) -> None:
    data, view, r = _key()
    off = 32 + 7 * n % 500
    before = bytes(data)
    packet = os.urandom(n)
    head = header(TYPE_DATA, n, 42, uuid.uuid4().bytes, off)
    body = xor(packet, before[off + 32 : off + 32 + n])
    msg = head + body
    want = msg + WegmanCarterMac(before[:32]).tag(msg, before[off : off + 32])
    assert seal(head, packet, view, off, r) == want
    assert data[off : off + 32 + n] == bytes(32 + n)  # pad and mask zeroed
    assert data[:off] == before[:off] and data[off + 32 + n :] == before[off + 32 + n :]


def test_verify_and_open_round_trip_and_reject_tampering() -> None:
    tx, tx_view, r = _key()
    rx = bytearray(tx)  # the slave's copy of the same key
    rx_view = np.frombuffer(rx, np.uint8)
    off, packet = 100, os.urandom(1200)
    head = header(TYPE_DATA, len(packet), 7, uuid.uuid4().bytes, off)
    datagram = seal(head, packet, tx_view, off, r)
    for i in (0, 20, 40, 32 + 1199, len(datagram) - 1):  # header, body and tag bytes
        bad = bytearray(datagram)
        bad[i] ^= 0x01
        assert not verify(bytes(bad), len(packet), rx_view, off, r)
    assert rx[off : off + 32] != bytes(32)  # a failed check spends no key
    assert verify(datagram, len(packet), rx_view, off, r)
    assert open_body(datagram, len(packet), rx_view, off) == packet
    assert rx[off : off + 32 + len(packet)] == bytes(32 + len(packet))
