"""A plain-HTTP client of demo/web_demo.py's Gradio API, for tests: upload a file, call the
``segment`` endpoint and read its answer, or what the server said instead.

The protocol (Gradio 6): ``POST /gradio_api/upload`` (multipart ``files``) returns the server's
paths of the files; ``POST /gradio_api/call/segment`` with ``{"data": [inputs]}`` returns an
``event_id`` (or HTTP 503 when the queue is full); ``GET /gradio_api/call/segment/<event_id>``
streams server-sent events and ends with ``complete`` (data: the outputs) or ``error`` (data:
``{"error": message}``, the message None when Gradio hides an unexpected exception).
"""

import io
import json
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from PIL import Image

API = "/gradio_api"
TIMEOUT_S = 60.0  # the longest wait for any one HTTP exchange: no request may hang


@dataclass(frozen=True)
class Answer:
    """What one ``segment`` request got.

    Attributes:
        kind: "complete", "error" or "queue_full".
        outputs: complete: [overlay file data, legend markdown].
        message: error: the client's message (None: Gradio hid it); queue_full: Gradio's reason.
    """

    kind: str
    outputs: list[Any] | None = None
    message: str | None = None

    @property
    def legend(self) -> str:
        if self.kind != "complete" or self.outputs is None:
            raise AssertionError(f"no legend: the request ended with {self}")
        return self.outputs[1]


def png_bytes(rgb: np.ndarray) -> bytes:
    """The PNG file of an (H, W, 3) uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def file_data(path: str, orig_name: str | None = None) -> dict[str, Any]:
    """An image input as the browser sends it: a server path marked as a Gradio file."""
    data: dict[str, Any] = {"path": path, "meta": {"_type": "gradio.FileData"}}
    if orig_name is not None:
        data["orig_name"] = orig_name
    return data


class DemoClient:
    """One client of the demo at ``base_url`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base_url: str, timeout_s: float = TIMEOUT_S) -> None:
        self.http = httpx.Client(base_url=base_url + API, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def upload_response(self, name: str, content: bytes) -> httpx.Response:
        """The server's raw answer to uploading ``content`` as the file ``name``."""
        return self.http.post("/upload", files=[("files", (name, content))])

    def upload(self, name: str, content: bytes) -> dict[str, Any]:
        """Upload a file; the image input that names it."""
        response = self.upload_response(name, content)
        response.raise_for_status()
        (path,) = response.json()
        return file_data(path, orig_name=name)

    def segment(
        self,
        image: dict[str, Any] | None,
        classes: str = "cat; dog; sky",
        preset: str = "",
        task: str = "semantic",
        min_score: float = 0.0,
    ) -> Answer:
        """Call ``segment`` and wait for its answer."""
        posted = self.http.post(
            "/call/segment", json={"data": [image, classes, preset, task, min_score]}
        )
        if posted.status_code == 503:
            return Answer("queue_full", message=posted.json()["detail"])
        posted.raise_for_status()
        streamed = self.http.get(f"/call/segment/{posted.json()['event_id']}")
        streamed.raise_for_status()
        return _final_event(streamed.text)


def _final_event(stream: str) -> Answer:
    """The ``complete`` or ``error`` event of a server-sent-event stream."""
    for block in stream.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields.get("event") == "complete":
            return Answer("complete", outputs=json.loads(fields["data"]))
        if fields.get("event") == "error":
            data = json.loads(fields["data"])
            return Answer("error", message=data.get("error") if isinstance(data, dict) else data)
    raise AssertionError(f"the event stream ended without an answer: {stream!r}")
