"""resolve_weights: local paths, cached http downloads from a local server, and hf:// offline."""

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from maft_plus.weights import cache_file_name, default_cache_dir, resolve_weights

PAYLOAD = b"not really a checkpoint, but bytes all the same" * 1000


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /good/<name>; /short/<name> promises more bytes than it sends."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        type(self).requests.append(self.path)
        if self.path.startswith("/good/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path.startswith("/short/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:100])
            self.close_connection = True  # the server goes away mid-file
        else:
            self.send_error(404)

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, http.server.HTTPServer]]:
    """A local http server on 127.0.0.1 in a thread; yields its base URL and the server."""
    for name in ("no_proxy", "NO_PROXY"):  # never route 127.0.0.1 through a proxy
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    Handler.requests = []
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def stop(httpd: http.server.HTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


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
    base, httpd = server
    url = f"{base}/good/maftp_tiny.pth"
    path = resolve_weights(url, cache_dir=tmp_path / "cache")
    assert path.parent == tmp_path / "cache" and path.name.endswith("-maftp_tiny.pth")
    assert path.read_bytes() == PAYLOAD
    assert Handler.requests == ["/good/maftp_tiny.pth"]
    stop(httpd)  # no network from here on
    assert resolve_weights(url, cache_dir=tmp_path / "cache") == path
    assert Handler.requests == ["/good/maftp_tiny.pth"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [path.name]


def test_same_file_name_from_two_urls_does_not_clash(server, tmp_path):
    base, _ = server
    first = resolve_weights(f"{base}/good/a/model.pth", cache_dir=tmp_path)
    second = resolve_weights(f"{base}/good/b/model.pth", cache_dir=tmp_path)
    assert first != second and first.name.endswith("model.pth")
    assert cache_file_name("https://x.org/a%20b/m?.pth") != cache_file_name("https://y.org/m.pth")


def test_interrupted_download_leaves_no_cached_file(server, tmp_path):
    base, _ = server
    url = f"{base}/short/model.pth"
    with pytest.raises(RuntimeError, match="could not be fetched") as error:
        resolve_weights(url, cache_dir=tmp_path)
    message = str(error.value)
    assert url in message and "cut short" in message and "local path" in message
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file
    with pytest.raises(RuntimeError, match="could not be fetched"):
        resolve_weights(url, cache_dir=tmp_path)  # retried, not taken from a cache
    assert Handler.requests == ["/short/model.pth"] * 2


def test_http_errors_and_unreachable_servers(server, tmp_path):
    base, httpd = server
    with pytest.raises(RuntimeError, match="404"):
        resolve_weights(f"{base}/missing/model.pth", cache_dir=tmp_path)
    stop(httpd)
    url = f"{base}/good/model.pth"
    with pytest.raises(RuntimeError, match="could not be fetched") as error:
        resolve_weights(url, cache_dir=tmp_path)
    assert url in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_offline_mode_uses_only_the_cache(server, tmp_path, monkeypatch):
    base, _ = server
    cached_url = f"{base}/good/cached.pth"
    cached = resolve_weights(cached_url, cache_dir=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights(cached_url, cache_dir=tmp_path) == cached
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        resolve_weights(f"{base}/good/other.pth", cache_dir=tmp_path)
    assert Handler.requests == ["/good/cached.pth"]


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
