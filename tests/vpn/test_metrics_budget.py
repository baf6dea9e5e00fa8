from aiohttp.test_utils import TestClient, TestServer

from qkdmeet.vpn.budget import make_app
from qkdmeet.vpn.gateway import Gateway, GatewayKeys
from qkdmeet.vpn.memkeys import MemoryKeyPair
from qkdmeet.vpn.metrics import GatewayMetrics, RateMeter
from qkdmeet.vpn.transport import FakeBindPair
from qkdmeet.vpn.tun import FakeTun


def test_rate_meter() -> None:
    r = RateMeter(window=10)
    assert r.rate() == 0.0
    r.sample(0, now=0.0)
    r.sample(500, now=1.0)
    r.sample(1000, now=2.0)
    assert r.rate() == 500.0
    r.sample(1000, now=30.0)  # old samples leave the window
    assert r.rate() < 500.0


def test_prometheus_text() -> None:
    m = GatewayMetrics("g")
    m.outbound.payload_bytes = 10
    m.inbound.drop("bad_tag", 3)
    text = m.prometheus()
    assert 'qkdmeet_vpn_payload_bytes_total{gateway="g",direction="outbound"} 10' in text
    assert 'qkdmeet_vpn_drops_total{gateway="g",direction="inbound",reason="bad_tag"} 3' in text
    assert "# TYPE qkdmeet_vpn_key_buffered_bytes gauge" in text


async def test_budget_endpoint() -> None:
    pair = MemoryKeyPair("A", "B")
    gw = Gateway(tun=FakeTun(), bind=FakeBindPair().a,
                 keys=GatewayKeys(pair.supplier("A"), "A", "B", 8 * 4096, 16384), name="A")
    await gw.start()
    try:
        async with TestClient(TestServer(make_app(gw))) as client:
            budget = await (await client.get("/budget")).json()
            assert budget["gateway"] == "A"
            assert budget["key_buffered_bytes"] == gw.sender.buffered
            assert {"key_arrival_bytes_per_s", "key_consumption_bytes_per_s",
                    "sustainable_payload_bps"} <= budget.keys()
            text = await (await client.get("/metrics")).text()
            assert "qkdmeet_vpn_key_arrived_bytes_total" in text
            js = await (await client.get("/metrics.json")).json()
            assert js["outbound"]["key_arrived_bytes"] > 0
    finally:
        await gw.stop()


async def test_budget_reports_kme_stock() -> None:
    import asyncio

    pair = MemoryKeyPair("A", "B", budget_bytes=10 * 65536)
    gw = Gateway(tun=FakeTun(), bind=FakeBindPair().a,
                 keys=GatewayKeys(pair.supplier("A"), "A", "B", 8 * 4096, 16384), name="A")
    await gw.start()
    try:
        for _ in range(300):
            if gw.sender.kme_stock_bytes is not None:
                break
            await asyncio.sleep(0.01)
        budget = gw.budget()
        # the KME stock left after our prefetch, in whole 64 KiB keys
        assert budget["kme_stock_bytes"] == (10 * 65536 - 16384) // 65536 * 65536
        assert budget["key_fetch_bytes_per_s"] >= 0
    finally:
        await gw.stop()
