"""parse_vocabulary: presets (shipped, plain and prepared), vocabulary files, free text, lists."""

import json
from pathlib import Path

import pytest
from script_loader import load_script

from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.class_lists import read_builtin_vocabulary
from maft_plus.data.vocabulary.presets import (
    LVIS_ANNOTATIONS,
    LVIS_VOCABULARY,
    PRESETS,
    parse_vocabulary,
)

PREPARE_LVIS = load_script("datasets/prepare_lvis_vocabulary.py")


@pytest.fixture
def datasets_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty datasets root in ``$DETECTRON2_DATASETS``."""
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return root


@pytest.mark.parametrize(
    ("spec", "builtin", "num_things"),
    [
        ("coco", "coco_panoptic_133", 80),
        ("COCO_Stuff", "coco_stuff_171", 80),
        ("coco-stuff", "coco_stuff_171", 80),
        ("pascal-context", "pc59", None),
        ("PC59", "pc59", None),
        ("voc", "voc20", None),
        ("voc20", "voc20", None),
        ("voc_21", "voc21", None),
        ("ade150", "ade150", 100),
        ("ade", "ade150", 100),
        ("ade847", "ade847", None),
        ("pc459", "pc459", None),
    ],
)
@pytest.mark.parametrize("style", ["reference", "plain"])
def test_shipped_presets(spec, builtin, num_things, style):
    """Every benchmark preset works with nothing prepared, in both namings."""
    names, is_thing = parse_vocabulary(spec + ("-plain" if style == "plain" else ""))
    assert names == read_builtin_vocabulary(builtin, style)
    if num_things is None:
        assert is_thing is None
    else:
        assert len(is_thing) == len(names) and sum(is_thing) == num_things
    Vocabulary.from_names(names, is_thing)  # usable as is


def test_coco_thing_flags_follow_detectron2():
    names, is_thing = parse_vocabulary("coco-plain")
    flags = dict(zip(names, is_thing, strict=True))
    assert flags["person"] and flags["toothbrush"]
    assert not flags["sky-other-merged"] and not flags["wall-other-merged"]
    _, stuff_flags = parse_vocabulary("coco-stuff")
    assert stuff_flags == [True] * 80 + [False] * 91


def test_ade150_things_are_the_instance_classes():
    names, is_thing = parse_vocabulary("ade150-plain")
    flags = dict(zip(names, is_thing, strict=True))
    assert flags["bed"] and flags["person"] and flags["flag"]
    assert not flags["wall"] and not flags["sky"] and not flags["floor"]


def test_lvis_is_prepared(datasets_root):
    path = datasets_root / LVIS_VOCABULARY
    with pytest.raises(FileNotFoundError, match="datasets/prepare_lvis_vocabulary.py") as error:
        parse_vocabulary("lvis")
    assert str(path) in str(error.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("0:invalid_class_id\n1:wall\n2:cat,kitty\n")
    assert parse_vocabulary("LVIS") == (["wall", "cat,kitty"], None)
    assert "lvis-plain" not in PRESETS
    assert parse_vocabulary("lvis-plain") == (["lvis-plain"], None)  # no preset: free text


def test_prepare_lvis_vocabulary_writes_the_preset(datasets_root, capsys):
    categories = [
        {"id": 2, "name": "aerosol_can", "synonyms": ["aerosol_can", "spray_can"]},
        {"id": 1, "name": "acorn", "synonyms": ["acorn"]},
        {"id": 3, "name": "bow_(weapon)", "synonyms": ["bow_(weapon)", "a,b"]},
    ]
    with pytest.raises(FileNotFoundError, match="lvis_v1_val.json"):
        PREPARE_LVIS.main(["--root", str(datasets_root)])
    annotations = datasets_root / LVIS_ANNOTATIONS
    annotations.parent.mkdir(parents=True)
    annotations.write_text(json.dumps({"categories": categories, "images": []}))
    PREPARE_LVIS.main([])  # --root defaults to $DETECTRON2_DATASETS
    assert "3 classes, 5 synonyms" in capsys.readouterr().out
    names, is_thing = parse_vocabulary("lvis")
    assert names == ["acorn", "aerosol can,spray can", "bow (weapon),a b"]
    assert is_thing is None
    assert not list((datasets_root / "lvis").glob(".*"))  # no temporary file left
    PREPARE_LVIS.main(["--root", str(datasets_root)])
    assert "already up to date" in capsys.readouterr().out


def test_free_text():
    assert parse_vocabulary("cat, kitty; dog; sky") == (["cat, kitty", "dog", "sky"], None)
    assert parse_vocabulary("cat,kitty,,cat\n\n dog ;\n") == (["cat, kitty", "dog"], None)
    assert parse_vocabulary("traffic light") == (["traffic light"], None)


def test_sequences_hold_one_class_per_item():
    assert parse_vocabulary(["cat , kitty", "coco"]) == (["cat, kitty", "coco"], None)
    assert parse_vocabulary(("sky",)) == (["sky"], None)


def test_vocabulary_file(tmp_path, monkeypatch):
    path = tmp_path / "mine.txt"
    path.write_text("1:cat,kitty\n2:dog\n")
    assert parse_vocabulary(str(path)) == (["cat,kitty", "dog"], None)
    monkeypatch.chdir(tmp_path)
    assert parse_vocabulary("mine.txt") == (["cat,kitty", "dog"], None)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        parse_vocabulary("missing.txt")


@pytest.mark.parametrize("spec", ["", "  \n ", ";;", [], ["cat", " , "], "cat; , ; dog"])
def test_empty_vocabulary_or_class_is_an_error(spec):
    with pytest.raises(ValueError, match="vocabulary") as error:
        parse_vocabulary(spec)
    assert repr(spec) in str(error.value) or "empty" in str(error.value)


def test_non_string_items_are_refused():
    with pytest.raises(TypeError, match="item 1"):
        parse_vocabulary(["cat", 3])
    with pytest.raises(TypeError):
        parse_vocabulary(3)


def test_presets_list_every_name():
    assert {"coco", "coco-stuff", "ade150", "ade", "ade847", "pc59", "pc459", "lvis"} <= set(
        PRESETS
    )
    for name in ("coco", "coco-stuff", "voc21", "pascal-context"):
        assert name in PRESETS and f"{name}-plain" in PRESETS
