"""The demo's two sites as configuration: PKI, KME config files, key sizing.

Pure planning plus file writing, no processes: :func:`plan` turns the
command line into a :class:`DemoPlan` and :func:`write_sites` writes what the
processes read. Site A (the research institute, ToMMo) runs KME A and the
QKD transmitter in ``<prefix>gwa``, the conference server in ``<prefix>lana``;
site B (the hospital, TUH) runs KME B and the receiver in ``<prefix>gwb``.
The KMEs peer, and the QKD link's channels run, over the "fiber" veth
between the gateway namespaces (:meth:`~qkdmeet.testbed.topology.Topology.fiber_up`),
never over the VPN's WAN.

Key supply (``qkdmeet demo --link``): with ``qkd`` (the default) the configs
carry a ``[qkd]`` table (the real-time QKD link: transmitter at A, receiver
at B, classical channel over the fiber); with ``model`` a ``[link]`` table (a
seeded simulated link, :class:`qkdmeet.kme.simfeed.SeededLink`) delivers key
at the rate the finite-key model gives for the fiber length. The choice
changes only the KME configs written here (:func:`write_sites`); the rest of
the demo is the same. The gateways' configs are the testbed's
(:meth:`qkdmeet.testbed.topology.Topology.gateway_config`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from qkdmeet.errors import DemoError
from qkdmeet.kme import config as kconfig
from qkdmeet.kme import pki
from qkdmeet.qkd.classical import DEFAULT_SECRET_BYTES

#: SAE IDs of the gateways: the names in the PKI's SAE certificates.
SAE = {"a": pki.sae_id("a"), "b": pki.sae_id("b")}
KME_PORT = 8443
QKD_PORT = 7700
#: Pre-shared secret that authenticates the QKD link's classical channel until
#: its first block (same file at both sites).
QKD_PSK_FILE = "qkd-psk.bin"
#: The link's default secret, 4,096 masks per direction (with 1,023 one block of
#: a cut fibre's dark counts emptied the reserve for good).
QKD_PSK_BYTES = DEFAULT_SECRET_BYTES
CONFERENCE_PORT = 8443
ROOM = "expert-panel"
#: Bounds of the gateways' ETSI 014 key size (bytes): power of two in between.
MIN_KEY_BYTES = 4096
MAX_KEY_BYTES = 65536
#: Seconds of link production a gateway keeps prefetched (at least two keys).
PREFETCH_SECONDS = 2.0
#: Block size of the simulated link's deliveries to each KME store.
LINK_BLOCK_BYTES = 16384


class PlanError(DemoError, ValueError):
    """A demo option out of range."""


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """Everything the demo's processes are configured from."""

    prefix: str
    distance_km: float
    preset: str
    link_rate_bps: float
    key_size_bits: int
    prefetch_bytes: int
    model_qber: float = math.nan
    fiber_a: str = "172.30.9.1"
    fiber_b: str = "172.30.9.2"
    room: str = ROOM

    @property
    def key_bytes(self) -> int:
        return self.key_size_bits // 8


def model_link(distance_km: float, preset: str = "toshiba") -> tuple[float, float]:
    """Secure key rate (bit/s, net of the authentication key per block) and QBER of the
    modelled device at ``distance_km`` (the finite-key model's expected block)."""
    from qkdmeet.qkd import finite_key
    from qkdmeet.qkd.params import get_preset

    params = get_preset(preset).with_distance_km(distance_km)
    block = finite_key.model_block(params)
    net = finite_key.net_key_rate(params, finite_key.AUTH_BITS_PER_BLOCK)
    return max(net.net_bps, 0.0), float(block.qber_x)


def key_sizing(link_rate_bps: float) -> tuple[int, int]:
    """Gateway key size (bits) and prefetch (bytes) for a link producing ``link_rate_bps``.

    A key is about 1/16 s of production (a power of two within
    [MIN_KEY_BYTES, MAX_KEY_BYTES]): small keys at a slow link, so that a
    gateway is not starved waiting for one large key while the other
    direction holds the rest; prefetch is PREFETCH_SECONDS of production, at
    least two keys.
    """
    if not link_rate_bps > 0 or math.isinf(link_rate_bps):
        raise PlanError(f"link rate must be a positive number, got {link_rate_bps!r}")
    per_s = link_rate_bps / 8
    target = max(MIN_KEY_BYTES, min(MAX_KEY_BYTES, per_s / 16))
    key_bytes = MIN_KEY_BYTES
    while key_bytes * 2 <= target:
        key_bytes *= 2
    prefetch = max(2 * key_bytes, int(per_s * PREFETCH_SECONDS) // key_bytes * key_bytes)
    return 8 * key_bytes, prefetch


def plan(prefix: str = "qkd-", distance_km: float = 7.0, preset: str = "toshiba") -> DemoPlan:
    """Validate the options and size the key supply."""
    if not math.isfinite(distance_km) or not 0 <= distance_km <= 200:
        raise PlanError(f"--distance-km must be between 0 and 200, got {distance_km}")
    rate, qber = model_link(distance_km, preset)
    if rate <= 0:
        raise PlanError(
            f"the {preset} link produces no key at {distance_km} km (finite-key model); "
            "choose a shorter fiber"
        )
    bits, prefetch = key_sizing(rate)
    return DemoPlan(prefix, distance_km, preset, rate, bits, prefetch, model_qber=qber)


def qkd_link_supported() -> bool:
    """True when ``kme serve`` runs the real-time QKD link from a ``[qkd]`` table."""
    return any(f.name == "qkd" for f in dataclasses.fields(kconfig.KmeConfig))


@dataclass(frozen=True, slots=True)
class SiteFiles:
    """Paths the processes are started with."""

    directory: Path
    kme_configs: dict[str, Path]
    ca: Path
    sae_cert: dict[str, Path]
    sae_key: dict[str, Path]
    link_kind: str  # "qkd" (real-time link) or "seeded" (simulated feed)

    def kme_url(self, side: str, plan: DemoPlan) -> str:
        """URL of a site's KME from inside its own gateway namespace."""
        return f"https://127.0.0.1:{KME_PORT}"

    def etsi(self, side: str, plan: DemoPlan) -> dict[str, str]:
        """The ``etsi`` argument of :meth:`Topology.gateway_config` for ``side``."""
        other = "b" if side == "a" else "a"
        return {
            "kme_url": self.kme_url(side, plan),
            "cert_file": str(self.sae_cert[side]),
            "key_file": str(self.sae_key[side]),
            "ca_file": str(self.ca),
            "sae_id": SAE[side],
            "peer_sae_id": SAE[other],
        }


def seeded_link(plan: DemoPlan, *, seed: bytes, epoch: float) -> kconfig.SimulatedLink:
    """The simulated link both KMEs share, at the rate the model gives the fiber."""
    return kconfig.SimulatedLink(seed, plan.link_rate_bps, LINK_BLOCK_BYTES, epoch)


def qkd_feed(plan: DemoPlan, side: str, psk: bytes) -> kconfig.QkdFeed:
    """A site's end of the real-time QKD link over the fiber (transmitter at A)."""
    return kconfig.QkdFeed(
        role="transmitter" if side == "a" else "receiver",
        address=f"{plan.fiber_a}:{QKD_PORT}",
        psk=psk,
        psk_file=Path(QKD_PSK_FILE),
        preset=plan.preset,
        distance_km=plan.distance_km,
    )


def kme_config(plan: DemoPlan, side: str, *, link: kconfig.SimulatedLink | None = None,
               qkd: kconfig.QkdFeed | None = None) -> kconfig.KmeConfig:
    """KME config of ``side``: ETSI 014 on all addresses of its gateway namespace
    (the gateway reaches it on loopback, the peer KME over the fiber); files
    relative to the sites' folder."""
    other = "b" if side == "a" else "a"
    peer_ip = plan.fiber_b if side == "a" else plan.fiber_a
    return kconfig.KmeConfig(
        kme_id=pki.kme_id(side),
        host="0.0.0.0",
        port=KME_PORT,
        db=Path(f"kme-{side}.db"),
        cert=Path(f"kme-{side}.pem"),
        key=Path(f"kme-{side}.key"),
        ca=Path("ca.pem"),
        local_saes=(SAE[side],),
        remote_saes=(SAE[other],),
        peer_kme_id=pki.kme_id(other),
        peer_url=f"https://{peer_ip}:{KME_PORT}",
        authority=side == "a",
        key_size=plan.key_size_bits,
        min_key_size=64,
        max_key_size=max(plan.key_size_bits, 1024),
        max_key_per_request=128,
        max_key_count=1_000_000,
        link=link,
        qkd=qkd,
    )


def write_sites(plan: DemoPlan, directory: Path, *, use_qkd: bool | None = None) -> SiteFiles:
    """PKI (KME certificates naming their fiber addresses) and both KME configs."""
    if use_qkd is None:
        use_qkd = qkd_link_supported()
    directory.mkdir(parents=True, exist_ok=True)
    pki.init(directory, hosts={"a": [plan.fiber_a], "b": [plan.fiber_b]})
    psk = b""
    if use_qkd:
        # the bootstrap secret both ends share before the link's first block
        # (in a real deployment it is installed at both sites out of band)
        psk = os.urandom(QKD_PSK_BYTES)
        path = directory / QKD_PSK_FILE
        path.write_bytes(psk)
        path.chmod(0o600)
    link = seeded_link(plan, seed=os.urandom(32), epoch=time.time())
    configs: dict[str, Path] = {}
    for side in ("a", "b"):
        cfg = (kme_config(plan, side, qkd=qkd_feed(plan, side, psk)) if use_qkd
               else kme_config(plan, side, link=link))
        configs[side] = kconfig.write(cfg, directory / f"kme-{side}.toml")
    return SiteFiles(
        directory=directory,
        kme_configs=configs,
        ca=directory / "ca.pem",
        sae_cert={s: directory / f"sae-{s}.pem" for s in ("a", "b")},
        sae_key={s: directory / f"sae-{s}.key" for s in ("a", "b")},
        link_kind="qkd" if use_qkd else "seeded",
    )
