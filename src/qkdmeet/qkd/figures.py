"""The link's live figures: :func:`end_stats` per end (JSON-ready, see its fields),
the model's ceiling for the parameters (:func:`model_figures`), what an attack
did to the blocks (:func:`attack_summary`), and :func:`json_ready` for strict JSON.
"""

from __future__ import annotations

import math
from typing import Any

from qkdmeet.crypto.wegman_carter import HASH_KEY_BYTES, MASK_BYTES
from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd import optics
from qkdmeet.qkd.params import LinkParams
from qkdmeet.qkd.protocol import (
    _End,
)


def json_ready(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


def model_figures(params: LinkParams) -> dict[str, float]:
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
        "auth_masks_per_block": (keys.spent_bits - HASH_KEY_BYTES * 8) / (MASK_BYTES * 8) / s.blocks
        if s.blocks
        else math.nan,
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
