"""The vocabulary of a registered dataset: its metadata's class names, or a checked replacement.

The one place where a dataset's classes become a :class:`Vocabulary`, for training
(``train_net.py``) and evaluation (``evaluation/loop.py``) alike.
"""

from detectron2.data import MetadataCatalog

from .class_lists import check_replacement, read_class_list
from .core import Vocabulary


def vocabulary_from_metadata(metadata, class_names: str = "reference") -> Vocabulary:
    """The vocabulary of a registered dataset, from its detectron2 metadata.

    Class names come from ``stuff_classes`` (which lists every class, things included, in
    detectron2's semantic and panoptic datasets), else ``thing_classes``; each may hold synonyms
    (``"cat, kitty"``). With ``class_names="plain"`` they come from ``plain_classes`` instead, which
    the built-in benchmarks register beside their reference (prompt-engineered) names. Thing flags
    come from ``thing_dataset_id_to_contiguous_id`` (panoptic), else an ``is_thing`` list; without
    either every class counts as a thing.
    """
    dataset = getattr(metadata, "name", "?")
    if class_names == "plain":
        names = getattr(metadata, "plain_classes", None)
        if not names:
            raise ValueError(f"dataset {dataset!r} has no plain class names (plain_classes)")
    elif class_names == "reference":
        names = getattr(metadata, "stuff_classes", None) or getattr(metadata, "thing_classes", None)
    else:
        raise ValueError(
            f"class_names (MODEL.MAFT_PLUS.CLASS_NAMES) is 'reference' or 'plain', "
            f"got {class_names!r}"
        )
    if not names:
        raise ValueError(
            f"dataset {dataset!r} has no stuff_classes or thing_classes "
            "in its metadata: cannot build its vocabulary"
        )
    is_thing = getattr(metadata, "is_thing", None)
    thing_ids = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    if thing_ids is not None and hasattr(metadata, "stuff_classes"):
        things = set(thing_ids.values())
        is_thing = [k in things for k in range(len(names))]
    return Vocabulary.from_names(list(names), is_thing)


def dataset_vocabulary(
    dataset_name: str,
    vocabulary_file: str | None = None,
    class_names: str = "reference",
    rename: bool = False,
) -> tuple[Vocabulary, str]:
    """The classes of a registered dataset, parsed once.

    Args:
        vocabulary_file: optional ``id:name,synonym,...`` file replacing the dataset's class names
            (e.g. a list of your own synonyms). Its ids must be the dataset's class ids and each
            class must share a name with the dataset's (reference or plain) names for it, so a
            list in another order is refused (``class_lists.check_replacement``), unless
            ``rename`` says that new names are meant.
        class_names: ``"reference"`` (the dataset's default names; for the built-in benchmarks the
            prompt-engineered lists of the released checkpoints) or ``"plain"``
            (``MODEL.MAFT_PLUS.CLASS_NAMES``).

    Returns:
        The vocabulary, and what it is for reports (:func:`vocabulary_label`).
    """
    metadata = MetadataCatalog.get(dataset_name)
    vocabulary = vocabulary_from_metadata(metadata, class_names)
    if vocabulary_file is not None:
        replacement = read_class_list(vocabulary_file)
        names = [", ".join(synonyms) for synonyms in vocabulary.class_synonyms]
        other_namings = ("stuff_classes", "plain_classes")  # reference and plain, where known
        check_replacement(
            replacement,
            ids=getattr(metadata, "class_ids", None),
            names=[names, *(getattr(metadata, k) for k in other_namings if hasattr(metadata, k))],
            source=str(vocabulary_file),
            dataset=dataset_name,
            rename=rename,
        )
        vocabulary = Vocabulary.from_names(list(replacement.names), vocabulary.is_thing)
    return vocabulary, vocabulary_label(class_names, vocabulary_file)


def vocabulary_label(class_names: str, vocabulary_file: str | None = None) -> str:
    """How a benchmark's classes were named, for reports: the file, else "reference"/"plain"."""
    return str(vocabulary_file) if vocabulary_file is not None else class_names
