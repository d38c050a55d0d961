"""tools/bf16_agreement.py's command line; the comparison itself runs on a trained model in
tests/test_learning.py."""

import pytest
from script_loader import load_script

tool = load_script("tools/bf16_agreement.py")


def test_a_negative_image_count_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(["--config-file", "x.yaml", "--max-images", "-1"])
    assert "--max-images must be >= 0" in capsys.readouterr().err
