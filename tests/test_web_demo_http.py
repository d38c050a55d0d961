"""demo/web_demo.py over HTTP, fault by fault: 8 concurrent clients, a full queue, uploads beyond
each limit, garbage, paths and URLs instead of uploads; after each, a healthy request is answered.

Most tests talk to the real script (``python demo/web_demo.py --preset tiny``) run in a
subprocess with small limits, so that its memory and listening socket are its own; the full-queue
test serves ``build_app`` in this process with a queue of one.
"""

import base64
import ipaddress
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from script_loader import load_script
from web_demo_client import Answer, DemoClient, file_data, png_bytes

from maft_plus.predictor import Predictor

REPO = Path(__file__).resolve().parents[1]
CLIENTS, REQUESTS = 8, 5  # concurrent clients, requests each
STARTUP_S = 180  # the longest the server may take to import, build the tiny model and listen
ANSWER_S = 120  # the longest any one request may take under load
RSS_GROWTH_BYTES = 64 * 2**20  # the most the server's memory may grow from round 1 to round 5
# The subprocess's limits: small, so that the abuse is cheap to send.
MAX_FILE_MB, MAX_PIXELS, MAX_CLASSES, MAX_CLASS_NAME_LENGTH, MAX_QUEUE = 0.25, 20_000, 4, 24, 16
IMAGE_SIZE = (96, 128)  # 12,288 pixels: under MAX_PIXELS


def sample_png(height: int = IMAGE_SIZE[0], width: int = IMAGE_SIZE[1], seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    rgb[: height // 2] = (90, 150, 230)  # a flat top half
    return png_bytes(rgb)


def png_header_only(width: int, height: int) -> bytes:
    """A small PNG file whose header claims ``width`` x ``height`` pixels: a decompression bomb's
    first bytes (PIL reads the size from the header before any pixel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The addresses of the TCP sockets listening on ``port`` (Linux: /proc/net/tcp and tcp6)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if int(port_hex, 16) != port or state != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(words)))
    return found


@dataclass
class Server:
    """The demo running in a subprocess."""

    process: subprocess.Popen
    port: int
    root: Path  # its $MAFT_PLUS_CACHE and $GRADIO_TEMP_DIR are under here; server.log too

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS line in /proc/PID/status")

    def log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python demo/web_demo.py --preset tiny`` with the small limits, on the default host."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the server's memory and sockets from /proc (Linux)")
    root = tmp_path_factory.mktemp("web_demo_server")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.update(MAFT_PLUS_CACHE=str(root / "maft_plus"), GRADIO_TEMP_DIR=str(root / "gradio"))
    env.pop("MAFT_PLUS_TEXT_CACHE", None)  # the text cache on, as users have it
    port = free_port()
    command = [sys.executable, "demo/web_demo.py", "--preset", "tiny", "--device", "cpu"]
    command += ["--port", str(port), "--max-file-mb", str(MAX_FILE_MB)]
    command += ["--max-pixels", str(MAX_PIXELS), "--max-classes", str(MAX_CLASSES)]
    command += ["--max-class-name-length", str(MAX_CLASS_NAME_LENGTH)]
    command += ["--max-queue", str(MAX_QUEUE)]
    with open(root / "server.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
    server = Server(process, port, root)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited ({process.returncode}):\n{server.log()}")
            try:
                if httpx.get(f"{server.url}/gradio_api/info", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer in {STARTUP_S} s:\n{server.log()}")
            time.sleep(0.5)
        yield server
        assert process.poll() is None, f"the server died:\n{server.log()}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def client(server):
    demo_client = DemoClient(server.url)
    yield demo_client
    demo_client.close()


def assert_healthy(client: DemoClient) -> None:
    """A well-formed request after the fault is answered with its segments."""
    answer = client.segment(client.upload("healthy.png", sample_png()), "zebra; rock; ocean")
    assert answer.kind == "complete", answer
    assert answer.legend.startswith("**semantic**:")
    for name in ("zebra", "rock", "ocean"):
        assert name in answer.legend


def test_serves_on_127_0_0_1_only_by_default(server):
    assert listening_addresses(server.port) == {"127.0.0.1"}


def test_eight_concurrent_clients_are_all_answered_in_bounded_memory(server):
    clients = [DemoClient(server.url) for _ in range(CLIENTS)]

    def request(index: int, round_index: int) -> Answer:
        client = clients[index]
        image = client.upload(f"client{index}.png", sample_png(seed=index))
        return client.segment(image, f"thing{index}r{round_index}, item; sky")

    answers, rss = {}, []
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            for round_index in range(REQUESTS):  # the clients send their requests together
                futures = {i: pool.submit(request, i, round_index) for i in range(CLIENTS)}
                for i, future in futures.items():
                    answers[i, round_index] = future.result(timeout=ANSWER_S)
                rss.append(server.rss_bytes())
    finally:
        for demo_client in clients:
            demo_client.close()
    assert len(answers) == CLIENTS * REQUESTS
    for (i, round_index), answer in answers.items():
        assert answer.kind == "complete", (i, round_index, answer)
        assert f"thing{i}r{round_index}" in answer.legend  # its own answer: in a row or "Not found"
    growth = rss[-1] - rss[0]
    assert growth < RSS_GROWTH_BYTES, f"RSS per round (MiB): {[r >> 20 for r in rss]}"
    # typed classes never reach the disk (only presets use the text-embedding disk cache)
    assert not list((server.root / "maft_plus").rglob("*.pt"))


@pytest.fixture
def small_queue_url(tmp_path, monkeypatch):
    """``build_app`` with a queue of one, served in this process on 127.0.0.1."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    web_demo = load_script("demo/web_demo.py")
    limits = web_demo.Limits(max_queue=1)
    app = web_demo.build_app(Predictor.from_preset("tiny", device="cpu"), limits=limits)
    port = free_port()
    web_demo.serve(app, limits=limits, port=port, block=False)
    yield f"http://127.0.0.1:{port}"
    app.close()


def test_a_full_queue_is_told_clearly_and_nothing_is_lost(small_queue_url):
    start = threading.Barrier(CLIENTS)

    def client_run(index: int) -> list[Answer]:
        client = DemoClient(small_queue_url)
        try:
            image = client.upload(f"client{index}.png", sample_png(seed=index))
            start.wait(timeout=ANSWER_S)
            return [client.segment(image, f"thing{index}r{r}; sky") for r in range(REQUESTS)]
        finally:
            client.close()

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client_run, i) for i in range(CLIENTS)]
        answers = [future.result(timeout=ANSWER_S * REQUESTS) for future in futures]
    kinds = [answer.kind for run in answers for answer in run]
    assert len(kinds) == CLIENTS * REQUESTS
    assert set(kinds) == {"complete", "queue_full"}, kinds
    for index, run in enumerate(answers):
        for r, answer in enumerate(run):
            if answer.kind == "queue_full":
                assert answer.message.startswith("Queue is full. Max size is 1 ")
            else:
                assert f"thing{index}r{r}" in answer.legend
    client = DemoClient(small_queue_url)
    assert_healthy(client)
    client.close()


def test_an_upload_over_the_size_limit_is_refused_while_it_streams_in(client):
    limit = int(MAX_FILE_MB * 2**20)
    response = client.upload_response("big.png", sample_png() + b"\0" * limit)
    assert response.status_code == 413
    assert response.text == f"File size exceeded maximum allowed size of {limit} bytes."
    assert_healthy(client)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("wide.png", sample_png(150, 200), "has 200×150 = 30,000 pixels; the limit is 20,000"),
        ("bomb.png", png_header_only(20_000, 20_000), "has too many pixels (Image size (400000000"),
        ("notes.png", b"not pixels", "is not an image this page reads (PNG, JPEG, WEBP"),
        ("cut.png", sample_png()[:300], "could not be decoded: image file is truncated"),
    ],
    ids=["pixels", "bomb", "garbage", "truncated"],
)
def test_an_image_beyond_the_limits_or_garbage_gets_a_message(client, name, content, message):
    answer = client.segment(client.upload(name, content))
    assert answer.kind == "error"
    assert answer.message.startswith(f"{name!r} {message}"), answer.message
    assert_healthy(client)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ("a; b; c; d; e", "Too many classes: 5; the limit is 4."),
        ("cat; a cat with a very long tail", "Class 2 is 27 characters long; the limit is 24: "),
    ],
    ids=["count", "length"],
)
def test_classes_beyond_the_limits_get_a_message(client, classes, message):
    answer = client.segment(client.upload("ok.png", sample_png()), classes)
    assert answer.kind == "error"
    assert answer.message.startswith(message), answer.message
    assert_healthy(client)


def test_a_path_or_url_from_the_client_is_never_opened(server, client, tmp_path):
    outside = tmp_path / "not_uploaded.png"  # a readable image the client knows the path of
    outside.write_bytes(sample_png())
    inline = "data:image/png;base64," + base64.b64encode(sample_png()).decode()
    cases = [
        ({"path": str(outside)}, f"'{outside}' is not a file uploaded to this page."),
        ({"path": "../../../../etc/hostname"}, "'../../../../etc/hostname' is not a file "),
        (file_data("http://127.0.0.1:9/x.png"), "Images are uploaded, not fetched from a URL"),
        ({"url": inline, "orig_name": "x.png"}, "'x.png' came inline, not as an upload"),
        (file_data(str(outside)), None),  # Gradio refuses it ("not uploaded by a user"), unsaid
    ]
    for image, message in cases:
        answer = client.segment(image)
        assert answer.kind == "error", (image, answer)
        assert message is None or answer.message.startswith(message), answer.message
    # a file name with "..": Gradio keeps its last part, in a folder of its cache
    uploaded = client.upload("../../escape.png", sample_png())
    path = Path(uploaded["path"]).resolve()
    assert path.name == "escape.png" and path.is_relative_to((server.root / "gradio").resolve())
    assert client.segment(uploaded).kind == "complete"
    assert_healthy(client)
