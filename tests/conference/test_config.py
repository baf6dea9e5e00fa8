from pathlib import Path

import pytest

from qkdmeet.conference.config import ConfigError, ServerConfig, self_signed


def test_toml_with_flag_overrides(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text(
        'host = "0.0.0.0"\nport = 9000\nstate_dir = "%s"\n[rooms]\nmax_participants = 4\n'
        "[uploads]\nmax_bytes = 1000\n" % (tmp_path / "s")
    )
    cfg = ServerConfig.load(path, port=9443, host=None)
    assert (cfg.host, cfg.port, cfg.max_participants, cfg.max_upload_bytes) == (
        "0.0.0.0",
        9443,
        4,
        1000,
    )
    assert cfg.uploads == tmp_path / "s" / "uploads"


@pytest.mark.parametrize(
    "text",
    ["port = 'x'", "port = 70000", "nonsense = [", "cert = '/a.pem'", "[uploads]\nmax_bytes = 0"],
)
def test_bad_configuration_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        ServerConfig.load(path)


def test_self_signed_certificate_is_created_once(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    first = cert.read_bytes()
    assert self_signed(tmp_path) == (cert, key) and cert.read_bytes() == first
    assert key.stat().st_mode & 0o077 == 0
    assert ServerConfig(state_dir=tmp_path).ssl_context() is not None
    assert ServerConfig(state_dir=tmp_path, tls=False).ssl_context() is None


def test_the_config_writes_what_it_reads(tmp_path: Path) -> None:
    """One model writes and reads the file (issue 16): every field survives the round trip."""
    from qkdmeet.conference.config import RoomSpec

    full = ServerConfig(
        host="10.0.0.1", port=9443, state_dir=tmp_path / "state", cert=tmp_path / "c.pem",
        key=tmp_path / "c.key", tls=True, max_participants=12, upload_dir=tmp_path / "up",
        max_upload_bytes=1234, web_dir=tmp_path / "web", max_documents=7, max_room_bytes=99,
        retention_s=60.0, admin_socket=tmp_path / "a.sock", max_failed_joins=3,
        allowed_origins=["https://x.example"], public_url="https://conf.example:9443",
        rooms=[RoomSpec("ward", expires_in_s=10.0, max_documents=2), RoomSpec("board")],
    )
    for cfg in (full, ServerConfig(state_dir=tmp_path / "s2", tls=False)):
        assert ServerConfig.load(cfg.write(tmp_path / "conference.toml")) == cfg


def test_the_demo_server_config_loads(tmp_path: Path) -> None:
    from qkdmeet.demo import media

    cfg = media.server_config("10.1.0.2", 8443, tmp_path)
    back = ServerConfig.load(cfg.write(tmp_path / "conference.toml"))
    assert back == cfg and back.admin_path == media.admin_socket(tmp_path) and back.tls
