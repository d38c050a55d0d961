"""resolve_weights under faults: sha256 pins, retries with backoff, and what reaches the cache.

A local server (weights_server.py) truncates, corrupts, resets, stalls or fails once on demand;
the backoff sleep is replaced by a recorder, so no test waits for it.
"""

import hashlib
import logging
from pathlib import Path

import pytest
from weights_server import CORRUPTED, PAYLOAD, TRUNCATED_BYTES

from maft_plus import weights
from maft_plus.weights import ChecksumMismatch, file_sha256, resolve_weights

PIN = hashlib.sha256(PAYLOAD).hexdigest()
CORRUPTED_SHA256 = hashlib.sha256(CORRUPTED).hexdigest()


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> list[float]:
    """The backoff waits asked for, in order (nothing actually waits); also captures the log."""
    caplog.set_level(logging.INFO, logger=weights.__name__)
    asked: list[float] = []
    monkeypatch.setattr(weights, "_sleep", asked.append)
    return asked


def retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The retry warnings logged so far."""
    return [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]


def cache_listing(cache: Path) -> list[str]:
    """Every file in the cache folder, temporary ``.*.part`` files included."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# --- pins -----------------------------------------------------------------------------------


def test_pinned_download_is_cached_and_reused_without_network(server, sleeps, tmp_path):
    url = f"{server.url}/good/model.pth"
    path = resolve_weights(url, cache_dir=tmp_path, sha256=PIN)
    assert path.read_bytes() == PAYLOAD and cache_listing(tmp_path) == [path.name]
    server.stop()
    assert resolve_weights(url, cache_dir=tmp_path, sha256=PIN.upper()) == path  # checked again
    assert server.requests == ["/good/model.pth"] and sleeps == []


def test_pin_suffix_is_not_sent_and_shares_the_cache_entry(server, tmp_path):
    url = f"{server.url}/good/model.pth"
    pinned = resolve_weights(f"{url}#sha256={PIN}", cache_dir=tmp_path)
    assert "sha256" not in pinned.name and pinned.name.endswith("-model.pth")
    assert resolve_weights(url, cache_dir=tmp_path) == pinned
    assert resolve_weights(f"{url}#SHA256={PIN}", cache_dir=tmp_path, sha256=PIN.upper()) == pinned
    assert server.requests == ["/good/model.pth"]  # one download; the fragment is never sent
    assert cache_listing(tmp_path) == [pinned.name]


def test_corrupted_download_is_never_cached(server, sleeps, tmp_path):
    url = f"{server.url}/corrupt/model.pth"
    with pytest.raises(ChecksumMismatch) as error:
        resolve_weights(f"{url}#sha256={PIN}", cache_dir=tmp_path)
    message = str(error.value)
    assert url in message and PIN in message and CORRUPTED_SHA256 in message
    assert "after 2 attempts" in message and "same bytes" in message and "local path" in message
    assert server.requests == ["/corrupt/model.pth"] * 2  # a mismatch is retried once, no more
    assert sleeps == [1.0] and cache_listing(tmp_path) == []


def test_corruption_in_flight_is_cured_by_one_retry(server, sleeps, tmp_path, caplog):
    path = resolve_weights(f"{server.url}/corrupt-once/model.pth", cache_dir=tmp_path, sha256=PIN)
    assert path.read_bytes() == PAYLOAD and cache_listing(tmp_path) == [path.name]
    [logged] = retries(caplog)
    assert "attempt 1 of 3" in logged and "sha256 mismatch" in logged and CORRUPTED_SHA256 in logged
    assert len(server.requests) == 2 and sleeps == [1.0]


def test_truncation_without_content_length_is_caught_by_the_pin(server, tmp_path):
    with pytest.raises(ChecksumMismatch, match=f"received [0-9a-f]{{64}} \\({TRUNCATED_BYTES} "):
        resolve_weights(f"{server.url}/unsized-short/model.pth", cache_dir=tmp_path, sha256=PIN)
    assert cache_listing(tmp_path) == []


def test_cached_file_that_no_longer_matches_its_pin_is_replaced(server, tmp_path, caplog):
    url = f"{server.url}/good/model.pth"
    cached = resolve_weights(url, cache_dir=tmp_path)  # unpinned
    cached.write_bytes(CORRUPTED)  # bit rot, or an older file at the same URL
    assert resolve_weights(url, cache_dir=tmp_path) == cached  # unpinned: no check, as before
    assert resolve_weights(url, cache_dir=tmp_path, sha256=PIN) == cached
    assert cached.read_bytes() == PAYLOAD and cache_listing(tmp_path) == [cached.name]
    assert server.requests == ["/good/model.pth"] * 2  # downloaded again, once
    assert any(
        CORRUPTED_SHA256 in r.getMessage() and "removing" in r.getMessage() for r in caplog.records
    )


def test_mismatched_cached_file_is_not_used_offline(server, tmp_path, monkeypatch):
    url = f"{server.url}/good/model.pth"
    resolve_weights(url, cache_dir=tmp_path).write_bytes(CORRUPTED)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE") as error:
        resolve_weights(url, cache_dir=tmp_path, sha256=PIN)
    assert "was removed" in str(error.value) and CORRUPTED_SHA256 in str(error.value)
    assert cache_listing(tmp_path) == [] and server.requests == ["/good/model.pth"]


def test_local_path_with_pin(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(PAYLOAD)
    assert resolve_weights(str(path), sha256=PIN) == path
    assert file_sha256(path) == PIN
    path.write_bytes(CORRUPTED)
    with pytest.raises(ChecksumMismatch) as error:
        resolve_weights(str(path), sha256=PIN.upper())
    message = str(error.value)
    assert str(path) in message and PIN in message and CORRUPTED_SHA256 in message
    assert path.read_bytes() == CORRUPTED  # the user's own file is never deleted


def test_hub_file_with_pin(tmp_path, monkeypatch):
    import huggingface_hub

    hub_copy = tmp_path / "blob.pth"
    hub_copy.write_bytes(PAYLOAD)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kwargs: str(hub_copy))
    spec = "hf://org/repo/weights/model.pth"
    assert resolve_weights(spec, sha256=PIN) == hub_copy
    assert resolve_weights(f"{spec}#sha256={PIN}") == hub_copy
    hub_copy.write_bytes(CORRUPTED)
    with pytest.raises(ChecksumMismatch) as error:
        resolve_weights(f"{spec}#sha256={PIN}")
    message = str(error.value)
    assert spec in message and str(hub_copy) in message and CORRUPTED_SHA256 in message


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, PIN + "0", PIN[:-1], f"sha256:{PIN}", 7])
def test_malformed_pins_are_rejected_before_any_download(server, tmp_path, bad):
    url = f"{server.url}/good/model.pth"
    with pytest.raises(ValueError, match="the sha256 argument must be .* 64 hex digits"):
        resolve_weights(url, cache_dir=tmp_path, sha256=bad)
    with pytest.raises(ValueError, match="#sha256= suffix of .*model.pth must be .* 64 hex"):
        resolve_weights(f"{url}#sha256={bad}", cache_dir=tmp_path)
    assert server.requests == [] and cache_listing(tmp_path) == []


def test_other_fragments_and_conflicting_pins_are_rejected(server, tmp_path):
    url = f"{server.url}/good/model.pth"
    with pytest.raises(ValueError, match="only fragment .* #md5=0123"):
        resolve_weights(f"{url}#md5=0123", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="two different sha256 pins") as error:
        resolve_weights(f"{url}#sha256={PIN}", cache_dir=tmp_path, sha256=CORRUPTED_SHA256)
    assert PIN in str(error.value) and CORRUPTED_SHA256 in str(error.value)
    assert server.requests == []


# --- retries ----------------------------------------------------------------------------------


def test_truncated_download_is_retried_with_backoff_then_given_up(server, sleeps, tmp_path):
    url = f"{server.url}/truncate/model.pth"
    with pytest.raises(RuntimeError, match="could not be fetched") as error:
        resolve_weights(url, cache_dir=tmp_path)
    message = str(error.value)
    assert url in message and "after 3 attempts" in message and "local path" in message
    assert f"cut short ({TRUNCATED_BYTES} of {len(PAYLOAD)} bytes" in message
    assert server.requests == ["/truncate/model.pth"] * 3 and sleeps == [1.0, 2.0]
    assert cache_listing(tmp_path) == []  # neither the target nor a .part file
    with pytest.raises(RuntimeError, match="cut short"):
        resolve_weights(url, cache_dir=tmp_path)  # tried again, not taken from a cache
    assert len(server.requests) == 6


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("truncate-once", "cut short"),
        ("fail-once", "HTTP Error 503"),
        ("reset-once", "Connection"),  # ConnectionResetError, or RemoteDisconnected
        ("stall-once", "timed out"),
    ],
)
def test_transient_failure_once_succeeds_on_the_second_attempt(
    server, sleeps, tmp_path, caplog, monkeypatch, mode, reason
):
    monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT_S", 0.3)  # the stall outlasts it
    url = f"{server.url}/{mode}/model.pth"
    path = resolve_weights(url, cache_dir=tmp_path, sha256=PIN)
    assert path.read_bytes() == PAYLOAD and cache_listing(tmp_path) == [path.name]
    [logged] = retries(caplog)
    assert url in logged and "attempt 1 of 3" in logged and reason in logged
    assert server.requests == [f"/{mode}/model.pth"] * 2 and sleeps == [1.0]


def test_persistent_server_error_is_given_up_after_three_attempts(server, sleeps, tmp_path):
    url = f"{server.url}/busy/model.pth"
    with pytest.raises(RuntimeError, match="after 3 attempts: HTTPError: HTTP Error 503"):
        resolve_weights(url, cache_dir=tmp_path)
    assert len(server.requests) == 3 and sleeps == [1.0, 2.0] and cache_listing(tmp_path) == []


@pytest.mark.parametrize(("mode", "code"), [("missing", 404), ("forbidden", 403)])
def test_permanent_http_errors_are_not_retried(server, sleeps, tmp_path, caplog, mode, code):
    url = f"{server.url}/{mode}/model.pth"
    with pytest.raises(RuntimeError, match=f"after 1 attempt: HTTPError: HTTP Error {code}"):
        resolve_weights(url, cache_dir=tmp_path, sha256=PIN)
    assert server.requests == [f"/{mode}/model.pth"] and sleeps == [] and retries(caplog) == []
    assert cache_listing(tmp_path) == []


def test_unreachable_server_is_retried_then_a_clear_error(server, sleeps, tmp_path, caplog):
    server.stop()
    url = f"{server.url}/good/model.pth"
    with pytest.raises(RuntimeError, match="could not be fetched") as error:
        resolve_weights(url, cache_dir=tmp_path)
    message = str(error.value)
    assert url in message and "after 3 attempts" in message and "refused" in message
    assert sleeps == [1.0, 2.0] and len(retries(caplog)) == 2 and cache_listing(tmp_path) == []
