"""resolve_weights: local paths, cached http downloads from a local server, and hf:// offline.

Faults (retries, truncation, sha256 pins) are in test_weights_download.py.
"""

from pathlib import Path

import pytest
from weights_server import PAYLOAD

from maft_plus.weights import cache_file_name, default_cache_dir, resolve_weights


def test_local_path(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"x")
    assert resolve_weights(str(path)) == path
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        resolve_weights(str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError, match="folder"):
        resolve_weights(str(tmp_path))
    with pytest.raises(ValueError, match="weights must be"):
        resolve_weights("  ")


def test_url_downloads_once_then_uses_the_cache(server, tmp_path):
    url = f"{server.url}/good/maftp_tiny.pth"
    path = resolve_weights(url, cache_dir=tmp_path / "cache")
    assert path.parent == tmp_path / "cache" and path.name.endswith("-maftp_tiny.pth")
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["/good/maftp_tiny.pth"]
    server.stop()  # no network from here on
    assert resolve_weights(url, cache_dir=tmp_path / "cache") == path
    assert server.requests == ["/good/maftp_tiny.pth"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [path.name]


def test_same_file_name_from_two_urls_does_not_clash(server, tmp_path):
    first = resolve_weights(f"{server.url}/good/a/model.pth", cache_dir=tmp_path)
    second = resolve_weights(f"{server.url}/good/b/model.pth", cache_dir=tmp_path)
    assert first != second and first.name.endswith("model.pth")
    assert cache_file_name("https://x.org/a%20b/m?.pth") != cache_file_name("https://y.org/m.pth")


def test_offline_mode_uses_only_the_cache(server, tmp_path, monkeypatch):
    cached_url = f"{server.url}/good/cached.pth"
    cached = resolve_weights(cached_url, cache_dir=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights(cached_url, cache_dir=tmp_path) == cached
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        resolve_weights(f"{server.url}/good/other.pth", cache_dir=tmp_path)
    assert server.requests == ["/good/cached.pth"]


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MAFT_PLUS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MAFT_PLUS_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "maft_plus"


def test_hub_id_offline_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = "hf://maft-plus/maftp-test/weights/maftp_tiny.pth"
    with pytest.raises(RuntimeError, match="could not be fetched") as error:
        resolve_weights(spec, cache_dir=tmp_path)
    message = str(error.value)
    assert spec in message and "HF_HUB_OFFLINE" in message and "local path" in message


def test_malformed_hub_id(tmp_path):
    with pytest.raises(ValueError, match="hf://org/repo/path"):
        resolve_weights("hf://only-org/file.pth", cache_dir=tmp_path)
