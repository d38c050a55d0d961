"""The shipped class lists and id tables (checksums, facts) and the class list file format."""

import hashlib
from importlib import resources

import numpy as np
import pytest

from maft_plus.data.ade_tables import (
    ade150_thing_flags,
    ade847_code_lookup,
    ade847_object_codes,
    ade_instance_classes,
)
from maft_plus.data.vocabulary.class_lists import (
    ClassList,
    builtin_class_list,
    builtin_names,
    check_replacement,
    parse_class_list,
    read_class_list,
)

DATA = resources.files("maft_plus.data")

# sha256 of every shipped data file: the reference lists must stay byte for byte as distributed
# (datasets/README.md names the sources); any edit of a list or table shows up here.
CHECKSUMS = {
    "vocabularies/reference/ade150.txt": (
        "388e2a8aabc1cc485cc5c6de544a5dc7d5f1f7ae982ed6cf35688a7b118acf90"
    ),
    "vocabularies/reference/ade847.txt": (
        "173d44806d8b3ca94cfb8947f459e6ecdb90770387b3a4116fdd78e8e111d732"
    ),
    "vocabularies/reference/coco_panoptic_133.txt": (
        "560169ea22202460c3b9427df387f8d1778e94dadecd38554da683e2097cda9f"
    ),
    "vocabularies/reference/coco_stuff_171.txt": (
        "af860dc8362af7c7fed556b79014cfbf775b7ece2279b11317a16260cdca9bcb"
    ),
    "vocabularies/reference/pc459.txt": (
        "574ae7e3dc9decff20366696309c36d40502cda90204f7e94c96251559be5197"
    ),
    "vocabularies/reference/pc59.txt": (
        "0bf48d67f93b15d331cbf36e112777cc3a407084e94e395b98fad8c67e50149a"
    ),
    "vocabularies/reference/voc21.txt": (
        "9acddc0dc82ebb9167e23ac93b197c91794603ec320f5e30053f983d4fa23c21"
    ),
    "vocabularies/plain/ade150.txt": (
        "7bf7fe58af76e8848ae7dc18c116b3750ea6916ae92044979fcdb7ca6b931d86"
    ),
    "vocabularies/plain/ade847.txt": (
        "753624708e7651aef2116e2ac183790a8ebc3885023820acd712f34daca623d1"
    ),
    "vocabularies/plain/coco_panoptic_133.txt": (
        "6a388ae983a67483b6e9ba9e2c5423631786665a2dc11da9f8d5a5be0765e244"
    ),
    "vocabularies/plain/coco_stuff_171.txt": (
        "060bc0ee775b3dbcdb4a60aff71b3c5d6e9a05b70980fcc16bcd1eb9924b718b"
    ),
    "vocabularies/plain/pc459.txt": (
        "1154a6df52ff2ba9f1538617322398a26aca85005465615c502ccb4ae0ad67d9"
    ),
    "vocabularies/plain/pc59.txt": (
        "3b9ce99f2d21f6cfa3c7eb097916e150ed1cc1edd9aac09619ee4fb671e77446"
    ),
    "vocabularies/plain/voc21.txt": (
        "cbf46dba8d16d12e0c1595d30c7a25262a682b8ab007053bbdefa10eac55a4e2"
    ),
    "tables/ade20k_instance_catid_mapping.txt": (
        "183cc9f84212753d5f251cfb2242599acc895d332ad806cd181a827d2691c3cd"
    ),
    "tables/ade847_object_codes.txt": (
        "48bfd0aec38d24e225ef8e71780102ec661fb61bb6b9d8c439da1e1d3ba59569"
    ),
}
NUM_CLASSES = {
    "ade150": 150,
    "ade847": 847,
    "coco_panoptic_133": 133,
    "coco_stuff_171": 171,
    "pc459": 459,
    "pc59": 59,
    "voc20": 20,
    "voc21": 21,
}


@pytest.mark.parametrize("path", sorted(CHECKSUMS))
def test_shipped_file_checksum(path):
    assert hashlib.sha256((DATA / path).read_bytes()).hexdigest() == CHECKSUMS[path]


def test_every_shipped_file_has_a_checksum():
    shipped = {
        f"{folder}/{style.name}/{f.name}" if style.is_dir() else f"{folder}/{style.name}"
        for folder in ("vocabularies", "tables")
        for style in (DATA / folder).iterdir()
        for f in (style.iterdir() if style.is_dir() else [style])
        if f.name.endswith(".txt")
    }
    assert shipped == set(CHECKSUMS)


@pytest.mark.parametrize("name", sorted(NUM_CLASSES))
def test_both_namings_have_the_same_classes_and_ids(name):
    reference = builtin_class_list(name, "reference")
    plain = builtin_class_list(name, "plain")
    assert len(reference) == len(plain) == NUM_CLASSES[name]
    assert reference.ids == plain.ids
    assert reference.ids == tuple(sorted(set(reference.ids)))  # increasing
    assert builtin_names() == sorted(NUM_CLASSES)


def test_reference_facts():
    """What the released checkpoints were scored with (see the issue and the reference files)."""
    ade150 = builtin_class_list("ade150")
    plain = builtin_class_list("ade150", "plain")
    assert ade150.ids == tuple(range(1, 151))
    assert ade150.names[0] == "wall,walls,brick wall,stone wall,interior wall"
    assert ade150.names[8].startswith("windowpane,")
    first = [names.split(",")[0] for names in ade150.names]
    plain_first = [names.split(",")[0] for names in plain.names]
    assert sum(a != b for a, b in zip(first, plain_first, strict=True)) == 20
    voc21 = builtin_class_list("voc21")
    assert voc21.ids == tuple(range(21)) and voc21.names[0].startswith("background,crops,")
    assert len(voc21.names[0].split(",")) == 74
    voc20 = builtin_class_list("voc20")
    assert voc20.ids == voc21.ids[1:] and voc20.names == voc21.names[1:]
    ade847 = builtin_class_list("ade847")
    assert ade847.names[0].startswith("wall,") and ade847.names[1].startswith("building,")
    assert ade847.names[-1] == "adding machine,totalizer,totaliser"
    coco = builtin_class_list("coco_panoptic_133")
    assert coco.ids[:12] == (*range(1, 12), 13) and coco.ids[-1] == 200  # COCO category ids
    stuff = builtin_class_list("coco_stuff_171")
    assert stuff.ids[-1] == 182 and stuff.names[-1] == "wood"
    assert builtin_class_list("pc459").names[:2] == (
        "accordion",
        "aeroplane,aeroplanes,airplanes,airplane",
    )


def test_ade_tables():
    codes = ade847_object_codes()
    assert codes[:2] == (2978, 312) and codes[-1] == 3148
    lookup = ade847_code_lookup()
    assert lookup[2978] == 0 and lookup[312] == 1 and lookup[3148] == 846
    assert lookup[0] == 65535 and (lookup != 65535).sum() == 847
    assert lookup.size > 25 * 256 + 255  # every code a _seg.png can hold
    mapping = ade_instance_classes()
    assert len(mapping) == 100 and mapping[1] == 8 and mapping[5] == 15 and mapping[100] == 150
    flags = ade150_thing_flags()
    assert sum(flags) == 100 and flags[7] and flags[12] and not flags[0]


def test_placeholders_of_any_id_are_skipped():
    text = "0:invalid_class_id\n1:cat, kitty\n2: invalid_class_id\n3:dog\n\n4:bird\n"
    assert parse_class_list(text, "x") == ClassList(
        ids=(1, 3, 4), names=("cat, kitty", "dog", "bird")
    )
    assert parse_class_list("0:background,void\n1:cat\n", "x").ids == (0, 1)  # id 0 is a class


def test_read_class_list_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_class_list(tmp_path / "nope.txt")


def test_unknown_builtin_or_style():
    with pytest.raises(ValueError, match="no built-in vocabulary 'ade20'"):
        builtin_class_list("ade20")
    with pytest.raises(ValueError, match="'reference', 'plain'"):
        builtin_class_list("ade150", "fancy")


def names_of(*lists: ClassList) -> list[tuple[str, ...]]:
    return [class_list.names for class_list in lists]


@pytest.mark.parametrize("name", sorted(NUM_CLASSES))
def test_reference_and_plain_files_pass_the_replacement_check(name):
    reference, plain = builtin_class_list(name), builtin_class_list(name, "plain")
    for candidate in (reference, plain):
        check_replacement(
            candidate,
            ids=reference.ids,
            names=names_of(reference, plain),
            source="file",
            dataset=name,
        )


def test_a_permuted_list_is_refused_at_the_first_mismatch():
    reference, plain = builtin_class_list("ade150"), builtin_class_list("ade150", "plain")
    order = np.arange(150)
    order[[3, 4]] = order[[4, 3]]  # floor and tree swapped, the ids renumbered in file order
    swapped = ClassList(ids=reference.ids, names=tuple(reference.names[k] for k in order))
    with pytest.raises(ValueError, match=r"class 4 \('tree,trees'\) shares no name") as error:
        check_replacement(
            swapped, ids=reference.ids, names=names_of(reference, plain), source="f", dataset="d"
        )
    assert "class 4 of dataset 'd' ('floor,flooring' / 'floor')" in str(error.value)
    # the same swap with each class keeping its id: the ids are out of place
    kept_ids = ClassList(ids=tuple(reference.ids[k] for k in order), names=swapped.names)
    with pytest.raises(
        ValueError, match="class 3 .* has id 5, but class 3 of dataset 'd' has id 4"
    ):
        check_replacement(
            kept_ids, ids=reference.ids, names=names_of(reference, plain), source="f", dataset="d"
        )


def test_replacement_count_and_case():
    classes = ClassList(ids=(1, 2), names=("Cat , kitty", "dog"))
    check_replacement(classes, ids=None, names=[("cat", "Dog")], source="f", dataset="d")
    with pytest.raises(ValueError, match="lists 2 classes but dataset 'd' has 3"):
        check_replacement(classes, ids=None, names=[("a", "b", "c")], source="f", dataset="d")
