"""demo/web_demo.py with the tiny random-init predictor: its Segment callback, its options and
limits, the bounded text-embedding cache of its shared predictor, and the page itself driven by
selenium in headless Chromium (skipped without chromium and chromedriver). Its behaviour over
HTTP, under load and abuse, is tested in test_web_demo_http.py."""

import io
import shutil
import socket
import urllib.request
import warnings
from urllib.parse import urljoin

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from script_loader import load_script

from maft_plus.modeling.text_classifier import TEMPLATES
from maft_plus.predictor import TASKS, Prediction, Predictor, Segment
from maft_plus.visualization import overlay

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WAIT_S = 30  # the longest wait for the page, the upload or the result


@pytest.fixture(scope="module")
def web_demo():
    """demo/web_demo.py as a module (it is a script, not part of the package)."""
    return load_script("demo/web_demo.py")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_preset("tiny", device="cpu")


def sample_image(height: int = 48, width: int = 64) -> np.ndarray:
    """(H, W, 3) uint8: three flat regions and a noisy square."""
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[: height // 2] = (90, 150, 230)  # sky-ish top
    rgb[height // 2 :, : width // 2] = (40, 160, 60)
    rgb[height // 2 :, width // 2 :] = (150, 110, 70)
    noise = np.random.default_rng(0).integers(0, 256, (height // 3, width // 3, 3))
    rgb[height // 3 : 2 * (height // 3), width // 3 : 2 * (width // 3)] = noise
    return rgb


def rows_by_area(prediction: Prediction) -> list[str]:
    """The class names of the legend's rows: biggest segment first, ties by segment id."""
    segments = sorted(prediction.segments, key=lambda s: (-int(s.mask.sum()), s.id))
    return [segment.name for segment in segments]


def legend_row_names(markdown: str) -> list[str]:
    """The class column of the legend table's body rows."""
    return [line.split("|")[2].strip() for line in markdown.splitlines() if "<span" in line]


@pytest.mark.parametrize("task", list(TASKS))
def test_callback_matches_the_predictor(web_demo, predictor, task):
    image = sample_image()
    picture, legend = web_demo.segment_image(
        predictor, image, "cat, kitty; dog;\nsky", web_demo.NO_PRESET, task, min_score=0.0
    )
    expected = predictor.predict(image, ["cat, kitty", "dog", "sky"], task, min_score=0.0)
    assert expected.class_names == ["cat", "dog", "sky"]
    np.testing.assert_array_equal(picture, overlay(image, expected))
    assert legend.startswith(f"**{task}**: {len(expected.segments)} segment")
    assert legend_row_names(legend) == rows_by_area(expected)
    for name in ("cat", "dog", "sky"):  # in the table or in the "Not found" line
        assert name in legend
    assert "kitty" not in legend  # rows show a class's first synonym only


def test_legend_exact_values(web_demo):
    masks = np.array([[1, 1], [1, 0]], dtype=bool), np.array([[0, 0], [0, 1]], dtype=bool)
    prediction = Prediction(
        task="semantic",
        label_map=np.array([[2, 2], [2, 0]], dtype=np.int32),
        segments=[
            Segment(id=0, label=0, name="a|b <i>", score=0.25, is_thing=True, mask=masks[1]),
            Segment(id=2, label=2, name="sky", score=0.5, is_thing=False, mask=masks[0]),
        ],
        class_names=["a|b <i>", "dog", "sky"],
    )
    lines = web_demo.legend_markdown(prediction).splitlines()
    assert lines[0] == "**semantic**: 2 segments in 2×2 pixels"
    assert lines[4].endswith("| sky | 75.0% | 0.50 |")
    assert lines[5].endswith(r"| a\|b \<i\> | 25.0% | 0.25 |")  # escaped: no HTML, no new cell
    assert lines[-1] == "Not found: dog"


def test_preset_overrides_the_typed_classes(web_demo, predictor):
    image = sample_image()
    with pytest.warns(UserWarning, match="preset 'voc20'; the typed classes are ignored"):
        _, legend = web_demo.segment_image(predictor, image, "cat; dog", "voc20", "semantic")
    expected = predictor.predict(image, "voc20", "semantic")
    assert len(expected.class_names) == 20
    assert legend_row_names(legend) == rows_by_area(expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no text typed: nothing to warn about
        web_demo.segment_image(predictor, image, "  ", "voc20", "semantic")


def test_typed_text_is_never_read_as_a_file(web_demo, predictor, tmp_path):
    vocabulary_file = tmp_path / "classes.txt"
    vocabulary_file.write_text("0:secret\n")
    _, legend = web_demo.segment_image(
        predictor, sample_image(), str(vocabulary_file), None, "semantic"
    )
    assert "secret" not in legend
    assert "classes" in legend  # the path is one (odd) class name


def test_no_instance_above_the_minimum_score_warns(web_demo, predictor):
    with pytest.warns(UserWarning, match="No instance segment found. Lower the minimum score"):
        _, legend = web_demo.segment_image(
            predictor, sample_image(), "cat; dog", None, "instance", min_score=1.01
        )
    assert legend.splitlines()[0] == "**instance**: 0 segments in 64×48 pixels"


@pytest.mark.parametrize(
    ("image", "classes", "preset", "task", "message"),
    [
        (None, "cat", "", "semantic", "No image: upload an image first"),
        ("image", " ; \n ;", "", "semantic", "No classes: type class names"),
        ("image", "cat; , ;dog", "", "semantic", "Bad classes: class 1"),
        ("image", "cat", "imagenet", "semantic", "Unknown preset 'imagenet'"),
        ("image", "cat", "", "depth", "Unknown task 'depth': choose one of semantic"),
        ("image", "", "lvis", "semantic", "preset 'lvis' is missing.*prepare_lvis_vocabulary.py"),
    ],
)
def test_bad_input_is_a_message_for_the_user(
    web_demo, predictor, tmp_path, monkeypatch, image, classes, preset, task, message
):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))  # nothing prepared there
    image = sample_image() if image == "image" else image
    with pytest.raises(gr.Error, match=message):
        web_demo.segment_image(predictor, image, classes, preset, task)


def test_command_line_defaults_serve_locally(web_demo):
    args = web_demo.parse_args(["--preset", "tiny"])
    assert (args.host, args.port, args.share, args.weights) == ("127.0.0.1", 7860, False, None)
    with pytest.raises(SystemExit):
        web_demo.parse_args(["--preset", "tiny", "--config-file", "configs/tiny/maftp_tiny.yaml"])
    with pytest.raises(SystemExit):
        web_demo.parse_args([])  # a model is required


def test_limits_are_command_line_options(web_demo, capsys):
    assert web_demo.parse_args(["--preset", "tiny"]).limits == web_demo.Limits()
    args = web_demo.parse_args(
        ["--preset", "tiny", "--host", "0.0.0.0", "--max-queue", "3", "--max-file-mb", "1.5"]
        + ["--max-pixels", "1000", "--max-classes", "2", "--max-class-name-length", "9"]
    )
    assert args.host == "0.0.0.0"
    assert args.limits == web_demo.Limits(
        max_queue=3, max_file_mb=1.5, max_pixels=1000, max_classes=2, max_class_name_length=9
    )
    assert args.limits.max_file_bytes == 1_572_864
    with pytest.raises(SystemExit):
        web_demo.parse_args(["--preset", "tiny", "--max-pixels", "0"])
    assert "--max-pixels must be a positive number, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_queue must be a positive number, got -1"):
        web_demo.Limits(max_queue=-1)


def test_main_serves_where_the_options_say(web_demo, monkeypatch):
    served = {}
    monkeypatch.setattr(web_demo, "serve", lambda app, **options: served.update(options))
    monkeypatch.setattr(web_demo.Image, "MAX_IMAGE_PIXELS", web_demo.Image.MAX_IMAGE_PIXELS)
    argv = ["--preset", "tiny", "--device", "cpu", "--host", "0.0.0.0", "--port", "8123"]
    assert web_demo.main([*argv, "--max-pixels", "200000000"]) == 0
    assert (served["host"], served["port"], served["share"]) == ("0.0.0.0", 8123, False)
    assert served["limits"] == web_demo.Limits(max_pixels=200_000_000)
    assert web_demo.Image.MAX_IMAGE_PIXELS == 200_000_000  # PIL's bomb guard: not below the limit


def test_shared_predictor_bounds_the_text_embedding_cache(
    web_demo, predictor, monkeypatch, private_cache_dir
):
    embedder = predictor.model.text_embedder
    sentences: list[str] = []

    def encode_text(batch: list[str]):
        sentences.extend(batch)
        return original_encode_text(batch)

    original_encode_text = embedder.encode_text
    monkeypatch.setattr(embedder, "encode_text", encode_text)
    embedder.clear_cache()  # the module's predictor has served other tests
    shared = web_demo.SharedPredictor(predictor, max_cached_synonyms=4)

    def encoded_by(vocabulary: list[str]) -> set[str]:
        """The synonyms whose embeddings predicting with ``vocabulary`` computed."""
        sentences.clear()
        shared.predict(sample_image(), vocabulary, "semantic")
        assert len(embedder._cache) <= 4  # the memory the cache holds: 4 synonyms at most
        names = {name for item in vocabulary for name in item.split(", ")}
        return {name for name in names if TEMPLATES[0].format(name) in sentences}

    assert encoded_by(["ant", "bee"]) == {"ant", "bee"}
    assert encoded_by(["ant", "bee, cow"]) == {"cow"}  # cached: ant, bee
    assert encoded_by(["dog"]) == {"dog"}  # 4 cached
    assert encoded_by(["elk"]) == {"elk"}  # a 5th: ant, the least recently used, is dropped
    assert encoded_by(["ant"]) == {"ant"}  # so ant is computed again (and bee dropped)
    assert encoded_by(["cow, dog"]) == set()  # recent ones stay
    # typed classes stay off the disk cache; presets (a finite set) use it
    assert not list(private_cache_dir.rglob("*.pt"))
    shared.predict(sample_image(), "voc20", "semantic")
    assert list(private_cache_dir.rglob("*.pt"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium that reaches 127.0.0.1 only."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    # A driver path given: selenium does not run Selenium Manager (which would download).
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="the page test needs chromium and chromedriver on PATH "
    "(Debian: apt install chromium chromium-driver)",
)
def test_page_segments_an_uploaded_image(web_demo, predictor, browser, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    image = sample_image(height=240, width=320)
    image_path = tmp_path / "upload.png"
    Image.fromarray(image).save(image_path)
    wait = WebDriverWait(browser, WAIT_S)
    port = free_port()
    app = web_demo.build_app(predictor, default_min_score=0.0)
    web_demo.serve(app, limits=web_demo.Limits(), port=port, block=False)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        segment = wait.until(ec.element_to_be_clickable((By.ID, "segment")))

        segment.click()  # no image yet: a message, not a traceback
        toast = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".toast-body")))
        wait.until(lambda _: "No image: upload an image first." in toast.text)
        assert "Traceback" not in toast.text
        toast.find_element(By.CSS_SELECTOR, ".toast-close").click()
        wait.until(ec.invisibility_of_element(toast))

        browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(image_path))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image img")))
        classes = browser.find_element(By.CSS_SELECTOR, "#classes textarea, #classes input")
        classes.clear()
        classes.send_keys("zebra, striped horse; rock; ocean")
        browser.find_element(By.XPATH, "//*[@id='task']//label[contains(., 'instance')]").click()
        segment.click()

        legend = browser.find_element(By.ID, "legend")
        wait.until(lambda _: legend.text.startswith("instance:"))
        shown = wait.until(
            lambda driver: driver.execute_script(
                "const img = document.querySelector('#overlay img');"
                "return img && img.complete && img.naturalWidth > 0"
                " ? [img.getAttribute('src'), img.naturalWidth, img.naturalHeight] : null;"
            )
        )
        browser.save_screenshot(str(tmp_path / "web_demo.png"))
        src, natural_width, natural_height = shown
        assert src
        assert (natural_height, natural_width) == image.shape[:2]

        expected = predictor.predict(
            image, ["zebra, striped horse", "rock", "ocean"], "instance", min_score=0.0
        )
        assert expected.segments  # the tiny model's top instances, all kept at min_score 0
        cells = browser.find_elements(By.CSS_SELECTOR, "#legend tbody tr td:nth-child(2)")
        assert [cell.text for cell in cells] == rows_by_area(expected)
        for name in ("zebra", "rock", "ocean"):  # a row or "Not found"
            assert name in legend.text
        with urllib.request.urlopen(urljoin(browser.current_url, src), timeout=WAIT_S) as reply:
            served = np.asarray(Image.open(io.BytesIO(reply.read())).convert("RGB"))
        np.testing.assert_array_equal(served, overlay(image, expected))
    finally:
        app.close()
