"""Property-based tests of the predictor: any image size or mode, any reasonable vocabulary."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from maft_plus.predictor import Predictor

MODES = ("RGB", "L", "RGBA", "P", "LA", "CMYK", "I;16")
# Class names: ASCII words, non-ASCII text and names longer than CLIP's 77-token context.
NAMES = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=20),
    st.sampled_from(["café", "Straßenbahn", "猫", "собака", "naïve façade", "🙂 face"]),
    st.integers(min_value=80, max_value=200).map(lambda n: " ".join(["long"] * n)),
).filter(lambda name: name.strip() and "," not in name and ";" not in name)


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_preset("tiny", device="cpu")


def make_image(height: int, width: int, mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    return rgb.convert(mode)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    height=st.integers(min_value=1, max_value=96),
    width=st.integers(min_value=1, max_value=96),
    mode=st.sampled_from(MODES),
    names=st.lists(NAMES, min_size=1, max_size=5),
    task=st.sampled_from(["semantic", "panoptic", "instance"]),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_any_image_and_vocabulary(predictor, height, width, mode, names, task, seed):
    prediction = predictor.predict(make_image(height, width, mode, seed), names, task=task)
    assert prediction.label_map.shape == (height, width)
    assert prediction.label_map.min() >= -1
    assert prediction.label_map.max() < len(names)
    assert len(prediction.class_names) == len(names)
    for segment in prediction.segments:
        assert segment.mask.shape == (height, width)
        assert 0 <= segment.label < len(names)
        assert np.isfinite(segment.score)
