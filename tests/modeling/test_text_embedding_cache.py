"""The disk cache of text embeddings: hits across embedders and processes, misses on a new identity,
corrupt files, atomic writes, and the switches that turn it off."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maft_plus.data.vocabulary import Vocabulary
from maft_plus.modeling.backbone.clip_convnext import CLIPConvNeXt
from maft_plus.modeling.text_classifier import TEMPLATES, TextEmbedder
from maft_plus.modeling.text_embedding_cache import TextEmbeddingCache, default_cache_root

VOCAB = Vocabulary.from_names(["cat, kitty", "sky", "traffic light"])
NUM_SENTENCES = 4 * len(TEMPLATES)


class Counting:
    """Wraps an encoder and counts the sentences it encodes."""

    def __init__(self, encode):
        self.encode = encode
        self.num_sentences = 0

    def __call__(self, sentences: list[str]) -> torch.Tensor:
        self.num_sentences += len(sentences)
        return self.encode(sentences)


@pytest.fixture(scope="module")
def backbone() -> CLIPConvNeXt:
    return CLIPConvNeXt(model_name="maftp-tiny-convnext-mlp", pretrained="")


def embedder(backbone: CLIPConvNeXt, **kwargs) -> tuple[TextEmbedder, Counting]:
    encoder = Counting(backbone.encode_text)
    return TextEmbedder(
        encode_text=encoder, cache_identity=backbone.text_identity, **kwargs
    ), encoder


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_cache_lives_under_maft_plus_cache(private_cache_dir):
    assert default_cache_root() == private_cache_dir / "text_embeddings"


def test_second_embedder_reads_the_disk(backbone, private_cache_dir):
    first, first_encoder = embedder(backbone)
    expected = first(VOCAB)
    assert first_encoder.num_sentences == NUM_SENTENCES
    files = cache_files(private_cache_dir / "text_embeddings")
    assert len(files) == 1 and files[0].suffix == ".pt"  # one file per encoded batch
    second, second_encoder = embedder(backbone)
    torch.testing.assert_close(second(VOCAB), expected, rtol=0, atol=0)
    assert second_encoder.num_sentences == 0
    # a new vocabulary sharing synonyms encodes only the new ones
    both = second(Vocabulary.from_names(["sky, heaven", "cat"]))
    assert second_encoder.num_sentences == len(TEMPLATES)  # heaven only
    torch.testing.assert_close(both[0], expected[2], rtol=0, atol=0)
    # clear_cache forgets memory only: the disk still answers
    second.clear_cache()
    second(VOCAB)
    assert second_encoder.num_sentences == len(TEMPLATES)


def test_other_templates_miss(backbone):
    embedder(backbone)[0](VOCAB)
    other, encoder = embedder(backbone, templates=TEMPLATES[:3])
    other(VOCAB)
    assert encoder.num_sentences == 4 * 3


def test_other_weights_miss(backbone):
    embedder(backbone)[0](VOCAB)
    other_backbone = CLIPConvNeXt(model_name="maftp-tiny-convnext-mlp", pretrained="")
    other_backbone.load_state_dict(backbone.state_dict())  # same weights: same identity
    assert other_backbone.text_identity() == backbone.text_identity()
    same, encoder = embedder(other_backbone)
    same(VOCAB)
    assert encoder.num_sentences == 0
    with torch.no_grad():
        other_backbone.clip_model.ln_final.weight.mul_(2.0)  # a text-tower weight changes
    assert other_backbone.text_identity()["weights"] != backbone.text_identity()["weights"]
    changed, encoder = embedder(other_backbone)
    changed(VOCAB)
    assert encoder.num_sentences == NUM_SENTENCES


def test_pretrained_identity_names_the_tag_or_file(backbone, tmp_path, monkeypatch):
    monkeypatch.setattr(backbone, "pretrained", "laion2b_s29b_b131k_ft_soup")
    monkeypatch.setattr(backbone, "_built_text_versions", backbone._text_versions())
    assert backbone.text_identity()["weights"] == "tag:laion2b_s29b_b131k_ft_soup"
    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"12345")
    monkeypatch.setattr(backbone, "pretrained", str(weights))
    assert backbone.text_identity()["weights"].startswith(f"file:{weights}:5:")


def test_disable_by_env_or_argument(backbone, private_cache_dir, monkeypatch):
    embedder(backbone, disk_cache=False)[0](VOCAB)
    monkeypatch.setenv("MAFT_PLUS_TEXT_CACHE", "0")
    embedder(backbone)[0](VOCAB)
    assert not private_cache_dir.exists()
    monkeypatch.setenv("MAFT_PLUS_TEXT_CACHE", "1")
    embedder(backbone)[0](VOCAB)
    assert cache_files(private_cache_dir)


def test_cache_dir_argument(backbone, tmp_path, private_cache_dir):
    embedder(backbone, cache_dir=tmp_path / "elsewhere")[0](VOCAB)
    assert cache_files(tmp_path / "elsewhere") and not private_cache_dir.exists()


def test_corrupt_file_is_ignored_with_a_warning_and_rewritten(backbone, private_cache_dir, caplog):
    expected = embedder(backbone)[0](VOCAB)
    [path] = cache_files(private_cache_dir)
    path.write_bytes(b"not a torch file")
    second, encoder = embedder(backbone)
    with caplog.at_level(logging.WARNING, logger="maft_plus"):
        result = second(VOCAB)
    assert "unreadable text-embedding cache file" in caplog.text
    assert encoder.num_sentences == NUM_SENTENCES
    torch.testing.assert_close(result, expected)
    assert cache_files(private_cache_dir) == [path]  # rewritten in place
    third, encoder = embedder(backbone)
    third(VOCAB)
    assert encoder.num_sentences == 0


def test_file_of_another_identity_is_ignored(tmp_path, caplog):
    cache = TextEmbeddingCache(identity={"weights": "a"}, root=tmp_path)
    path = cache.save(["cat"], torch.ones(1, 4))
    other = TextEmbeddingCache(identity={"weights": "b"}, root=tmp_path)
    other.directory.mkdir(parents=True)
    os.replace(path, other.directory / path.name)  # a misplaced file
    with caplog.at_level(logging.WARNING, logger="maft_plus"):
        assert other.load(["cat"]) == {}
    assert "unreadable" in caplog.text


def test_atomic_writes_leave_no_temporary_files(tmp_path, monkeypatch):
    cache = TextEmbeddingCache(identity={"weights": "a"}, root=tmp_path)
    cache.save(["cat", "dog"], torch.randn(2, 4))
    assert [p.name.startswith(".tmp-") for p in cache_files(tmp_path)] == [False]

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    assert cache.save(["sky"], torch.randn(1, 4)) is None  # a failed write only warns
    assert len(cache_files(tmp_path)) == 1  # the partial temporary file is gone
    fresh = TextEmbeddingCache(identity={"weights": "a"}, root=tmp_path)
    assert sorted(fresh.load(["cat", "dog", "sky"])) == ["cat", "dog"]


SUBPROCESS = """
import maft_plus
from maft_plus.data.vocabulary import Vocabulary
from maft_plus.modeling.backbone.clip_convnext import CLIPConvNeXt
from maft_plus.modeling.text_classifier import TextEmbedder
import torch
torch.manual_seed(0)
backbone = CLIPConvNeXt(model_name="maftp-tiny-convnext-linear", pretrained="")
calls = []
def encode_text(sentences):
    calls.append(len(sentences))
    return backbone.encode_text(sentences)
embedder = TextEmbedder(encode_text=encode_text, cache_identity=backbone.text_identity)
embeds = embedder(Vocabulary.from_names(["cat, kitty", "sky"]))
print("calls", len(calls), "sum", float(embeds.sum()))
"""


def test_a_second_process_reads_the_cache(tmp_path):
    env = {**os.environ, "MAFT_PLUS_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", SUBPROCESS], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.strip().splitlines()[-1].split())
    assert outputs[0][1] != "0"  # the first process encodes
    assert outputs[1][1] == "0"  # the second only reads
    assert outputs[0][3] == outputs[1][3]  # the same embeddings
