"""The config: every YAML merges, every MAFT+ key is commented and used by the code."""

import ast
import re
from pathlib import Path

import pytest

from maft_plus.config import add_maft_plus_config, setup_cfg

REPO = Path(__file__).resolve().parents[1]
CONFIG_SOURCE = REPO / "maft_plus" / "config.py"


@pytest.mark.parametrize("path", sorted(REPO.glob("configs/**/*.yaml")), ids=lambda p: p.name)
def test_every_yaml_config_merges(path):
    cfg = setup_cfg(str(path))
    assert cfg.MODEL.META_ARCHITECTURE == "MAFTPlus"


def maft_plus_keys() -> list[tuple[str, int]]:
    """(dotted key below MODEL.MAFT_PLUS, line) for every leaf assigned in config.py."""
    keys = []
    for node in ast.walk(ast.parse(CONFIG_SOURCE.read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            target = ast.unparse(node.targets[0])
            if target.startswith("m.") and not ast.unparse(node.value).startswith("CN("):
                keys.append((target.removeprefix("m."), node.lineno))
    return keys


def test_every_key_has_a_comment():
    lines = CONFIG_SOURCE.read_text().splitlines()
    keys = maft_plus_keys()
    assert len(keys) > 20
    for key, lineno in keys:
        line, previous = lines[lineno - 1], lines[lineno - 2].strip()
        assert "#" in line or previous.startswith("#"), f"MODEL.MAFT_PLUS.{key} has no comment"


def test_every_key_is_read_by_the_code():
    code = "\n".join(
        p.read_text() for p in (REPO / "maft_plus").rglob("*.py") if p != CONFIG_SOURCE
    )
    for key, _ in maft_plus_keys():
        leaf = key.split(".")[-1]
        assert re.search(rf"\.{leaf}\b", code), f"MODEL.MAFT_PLUS.{key} is never read"


def test_no_key_defaults_to_none():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_maft_plus_config(cfg)

    def leaves(node, prefix):
        for name, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", value

    for key, value in leaves(cfg.MODEL.MAFT_PLUS, "MODEL.MAFT_PLUS."):
        assert value is not None, key


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        setup_cfg(str(tmp_path / "nope.yaml"))
