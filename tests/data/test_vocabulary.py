"""Vocabulary parsing, validation and the `id:name,...` vocabulary files."""

import pytest

from maft_plus.data.vocabulary import Vocabulary
from maft_plus.data.vocabulary.class_lists import read_vocabulary_file


def test_from_names_splits_strips_and_flattens():
    vocab = Vocabulary.from_names(["cat, kitty", "sky", " dog ,puppy,  hound "])
    assert vocab.class_synonyms == (("cat", "kitty"), ("sky",), ("dog", "puppy", "hound"))
    assert vocab.num_classes == 3
    assert vocab.num_synonyms == 6
    assert vocab.synonyms == ("cat", "kitty", "sky", "dog", "puppy", "hound")
    assert vocab.synonym_to_class == (0, 0, 1, 2, 2, 2)
    assert vocab.class_names == ("cat", "sky", "dog")
    assert vocab.is_thing == (True, True, True)  # None: every class is a thing


def test_empty_pieces_dropped_and_duplicates_removed_in_order():
    vocab = Vocabulary.from_names(["cat,, kitty,", "dog, puppy, dog, puppy"])
    assert vocab.class_synonyms == (("cat", "kitty"), ("dog", "puppy"))


def test_same_synonym_in_two_classes_is_allowed():
    vocab = Vocabulary.from_names(["car, vehicle", "truck, vehicle"])
    assert vocab.synonyms == ("car", "vehicle", "truck", "vehicle")
    assert vocab.synonym_to_class == (0, 0, 1, 1)


def test_is_thing_kept_and_hashable():
    a = Vocabulary.from_names(["cat", "sky"], is_thing=[True, False])
    b = Vocabulary.from_names(["cat", "sky"], is_thing=(True, False))
    assert a.is_thing == (True, False)
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a != Vocabulary.from_names(["cat", "sky"])  # is_thing is part of the identity


def test_frozen():
    vocab = Vocabulary.from_names(["cat"])
    with pytest.raises(AttributeError):
        vocab.is_thing = (False,)


def test_direct_construction_normalizes_lists():
    vocab = Vocabulary(class_synonyms=[["cat", "kitty"]], is_thing=[False])
    assert vocab.class_synonyms == (("cat", "kitty"),)
    assert hash(vocab) == hash(Vocabulary.from_names(["cat, kitty"], [False]))


@pytest.mark.parametrize(
    ("names", "is_thing", "message"),
    [
        ([], None, "names=\\[\\]"),
        ("cat, dog", None, "'cat, dog'"),
        (["cat", 3], None, "names\\[1\\] .*3"),
        (["cat", None], None, "names\\[1\\] .*None"),
        (["cat", " , ,"], None, "names\\[1\\]=' , ,'"),
        (["cat", ""], None, "names\\[1\\]=''"),
        (["cat", "dog"], [True], "1 flags for 2 classes"),
        (["cat", "dog"], [True, True, False], "3 flags for 2 classes"),
        (["cat", "dog"], [True, 1], "is_thing\\[1\\] .*1 \\(int\\)"),
        (["cat", "dog"], [True, "no"], "is_thing\\[1\\] .*'no'"),
        (["cat"], True, "is_thing .*True"),
    ],
)
def test_bad_input_names_the_input(names, is_thing, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary.from_names(names, is_thing)


@pytest.mark.parametrize(
    ("class_synonyms", "message"),
    [
        ((), "at least one class"),
        (((),), "class 0 has no synonym"),
        ((("cat", " "),), "class 0 has an invalid synonym ' '"),
        ((("cat", "cat"),), "class 0 repeats a synonym"),
        (("cat",), "class_synonyms\\[0\\] must be a tuple or list, got 'cat'"),
    ],
)
def test_direct_construction_is_validated(class_synonyms, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(class_synonyms=class_synonyms, is_thing=(True,) * len(class_synonyms))


def test_read_vocabulary_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("0:invalid_class_id\n1:cat, kitty\n\n2:sky\n3:dog,puppy,\n\n")
    names = read_vocabulary_file(path)
    assert names == ["cat, kitty", "sky", "dog,puppy,"]
    vocab = Vocabulary.from_names(names)
    assert vocab.class_synonyms == (("cat", "kitty"), ("sky",), ("dog", "puppy"))


def test_read_vocabulary_file_from_zero(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("0:cat\n1:name: with a colon\n")
    assert read_vocabulary_file(str(path)) == ["cat", "name: with a colon"]


@pytest.mark.parametrize(
    ("text", "line_no", "message"),
    [
        ("0:invalid_class_id\n1:cat\n3:dog\n", 3, "expected 2, got 3"),
        ("1:cat\n1:dog\n", 2, "expected 2, got 1"),
        ("2:cat\n3:dog\n", 1, "must be 0 or 1"),
        ("1:cat\ndog\n", 2, "expected 'id:name1,name2,...'"),
        ("1:cat\nx:dog\n", 2, "'x' is not an integer"),
        ("1:cat\n2: , \n", 2, "class 2 has no name"),
    ],
)
def test_bad_vocabulary_file_names_file_and_line(tmp_path, text, line_no, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_vocabulary_file(path)
    assert f"{path}, line {line_no}" in str(info.value)


def test_vocabulary_file_without_classes(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("0:invalid_class_id\n\n")
    with pytest.raises(ValueError, match="names no class"):
        read_vocabulary_file(path)


def test_missing_vocabulary_file(tmp_path):
    path = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_vocabulary_file(path)
