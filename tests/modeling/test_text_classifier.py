"""The text classifier: ViLD templates, synonym embeddings and the per-synonym cache."""

import zlib

import open_clip
import pytest
import torch
import torch.nn.functional as F

from maft_plus.data.vocabulary import Vocabulary
from maft_plus.modeling.text_classifier import TEMPLATES, TextEmbedder

D = 8


def fake_encode(sentences: list[str]) -> torch.Tensor:
    """A deterministic (N, D) embedding per sentence, with norms that vary by sentence."""
    rows = []
    for sentence in sentences:
        generator = torch.Generator().manual_seed(zlib.crc32(sentence.encode()))
        rows.append(torch.randn(D, generator=generator) * (1 + len(sentence) % 7))
    return torch.stack(rows)


class CountingEncoder:
    """Wraps an encoder, recording every batch of sentences it is given."""

    def __init__(self, encode=fake_encode):
        self.encode = encode
        self.batches: list[list[str]] = []

    def __call__(self, sentences: list[str]) -> torch.Tensor:
        self.batches.append(list(sentences))
        return self.encode(sentences)

    @property
    def sentences(self) -> list[str]:
        return [s for batch in self.batches for s in batch]


def test_templates_are_the_14_vild_templates():
    assert len(TEMPLATES) == 14
    assert len(set(TEMPLATES)) == 14
    assert all(t.count("{}") == 1 for t in TEMPLATES)
    assert TEMPLATES[0] == "a photo of a {}."
    assert TEMPLATES[1] == "This is a photo of a {}"  # no final period in the released list
    assert sum(t.endswith(".") for t in TEMPLATES) == 10


def test_rows_follow_synonyms_and_are_unit_norm():
    vocab = Vocabulary.from_names(["cat, kitty", "sky", "dog"])
    embeds = TextEmbedder(encode_text=fake_encode)(vocab)
    assert embeds.shape == (vocab.num_synonyms, D)
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(4))


def test_matches_hand_computation():
    embeds = TextEmbedder(encode_text=fake_encode)(Vocabulary.from_names(["sky", "cat, kitty"]))
    sentences = [t.replace("{}", "kitty") for t in TEMPLATES]
    per_sentence = F.normalize(fake_encode(sentences), dim=-1)  # (14, D)
    expected = F.normalize(per_sentence.mean(dim=0), dim=0)
    torch.testing.assert_close(embeds[2], expected)
    # normalizing before averaging matters: the raw mean points elsewhere
    raw = F.normalize(fake_encode(sentences).mean(dim=0), dim=0)
    assert not torch.allclose(embeds[2], raw, atol=1e-3)


def test_sentences_and_batches():
    encoder = CountingEncoder()
    TextEmbedder(encode_text=encoder, batch_size=10)(Vocabulary.from_names(["cat", "dog"]))
    expected = [t.replace("{}", n) for n in ("cat", "dog") for t in TEMPLATES]
    assert sorted(encoder.sentences) == sorted(expected)
    assert [len(b) for b in encoder.batches] == [10, 10, 8]
    # sorted by length, so each batch holds sentences of similar length
    assert [len(s) for s in encoder.sentences] == sorted(len(s) for s in expected)


def test_batch_size_does_not_change_the_result():
    vocab = Vocabulary.from_names(["cat, kitty", "sky", "dog"])
    small = TextEmbedder(encode_text=fake_encode, batch_size=3)(vocab)
    large = TextEmbedder(encode_text=fake_encode, batch_size=1000)(vocab)
    torch.testing.assert_close(small, large)


def test_same_vocabulary_twice_hits_the_cache():
    encoder = CountingEncoder()
    embedder = TextEmbedder(encode_text=encoder)
    vocab = Vocabulary.from_names(["cat, kitty", "sky"])
    first = embedder(vocab)
    num_calls = len(encoder.batches)
    assert num_calls > 0
    second = embedder(Vocabulary.from_names(["cat, kitty", "sky"]))
    assert len(encoder.batches) == num_calls
    torch.testing.assert_close(first, second)


def test_shared_synonyms_are_not_encoded_again():
    encoder = CountingEncoder()
    embedder = TextEmbedder(encode_text=encoder)
    first = embedder(Vocabulary.from_names(["cat, kitty", "sky"]))
    encoder.batches.clear()
    second = embedder(Vocabulary.from_names(["sky, heaven", "tree", "cat"]))
    expected = [t.replace("{}", n) for n in ("heaven", "tree") for t in TEMPLATES]
    assert sorted(encoder.sentences) == sorted(expected)
    torch.testing.assert_close(second[0], first[2])  # sky
    torch.testing.assert_close(second[3], first[0])  # cat


def test_repeated_synonym_encoded_once():
    encoder = CountingEncoder()
    embeds = TextEmbedder(encode_text=encoder)(Vocabulary.from_names(["car, auto", "truck, auto"]))
    assert len(encoder.sentences) == 3 * len(TEMPLATES)
    torch.testing.assert_close(embeds[1], embeds[3])


def test_clear_cache():
    encoder = CountingEncoder()
    embedder = TextEmbedder(encode_text=encoder)
    vocab = Vocabulary.from_names(["cat"])
    embedder(vocab)
    embedder.clear_cache()
    encoder.batches.clear()
    embedder(vocab)
    assert len(encoder.sentences) == len(TEMPLATES)


def test_a_bounded_cache_drops_the_least_recently_used_rows():
    encoder = CountingEncoder()
    embedder = TextEmbedder(encode_text=encoder, max_cached_synonyms=3)
    first = embedder(Vocabulary.from_names(["ant", "bee", "cow"]))

    def encoded(names: list[str]) -> set[str]:
        encoder.batches.clear()
        embedder(Vocabulary.from_names(names))
        return {name for name in names if TEMPLATES[0].format(name) in encoder.sentences}

    assert encoded(["ant"]) == set()  # ant is now the most recent: bee is the oldest
    assert encoded(["dog"]) == {"dog"}  # bee dropped
    assert encoded(["ant", "cow"]) == set()
    assert encoded(["bee"]) == {"bee"}  # computed again, the same row
    torch.testing.assert_close(embedder(Vocabulary.from_names(["bee"]))[0], first[1])
    assert len(embedder._cache) == 3
    # a vocabulary larger than the limit is still embedded whole; the most recent 3 stay
    rows = embedder(Vocabulary.from_names(["elk", "fox", "gnu", "hen"]))
    assert rows.shape == (4, D) and list(embedder._cache) == ["fox", "gnu", "hen"]
    embedder.max_cached_synonyms = 1  # lowering the limit drops rows at once
    assert list(embedder._cache) == ["hen"]


def test_output_is_detached_and_keeps_the_encoder_dtype():
    weight = torch.randn(D, D, requires_grad=True)

    def encode_with_grad(sentences):
        return (fake_encode(sentences) @ weight).double()

    embeds = TextEmbedder(encode_text=encode_with_grad)(Vocabulary.from_names(["cat"]))
    assert not embeds.requires_grad
    assert embeds.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"templates": ()}, "non-empty"),
        ({"templates": "a {}"}, "non-empty sequence"),
        ({"templates": ("a photo",)}, "'a photo'"),
        ({"templates": ("a {} and {}",)}, "exactly one"),
        ({"batch_size": 0}, "batch_size .* 0"),
        ({"max_cached_synonyms": 0}, "max_cached_synonyms .* 0"),
        ({"max_cached_synonyms": 2.5}, "max_cached_synonyms .* 2.5"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TextEmbedder(encode_text=fake_encode, **kwargs)


def test_bad_encoder_output():
    embedder = TextEmbedder(encode_text=lambda sentences: torch.zeros(len(sentences) + 1, D))
    with pytest.raises(ValueError, match="encode_text must return"):
        embedder(Vocabulary.from_names(["cat"]))


def test_real_tiny_clip_text_tower(tiny_clip, tiny_clip_name):
    tokenizer = open_clip.get_tokenizer(tiny_clip_name)
    tiny_clip.eval()

    def encode_text(sentences):
        with torch.no_grad():
            return tiny_clip.encode_text(tokenizer(sentences))

    vocab = Vocabulary.from_names(["cat, kitty", "sky"])
    embeds = TextEmbedder(encode_text=encode_text, batch_size=5)(vocab)
    assert embeds.shape == (3, 32)
    torch.testing.assert_close(embeds.norm(dim=-1), torch.ones(3))
    with torch.no_grad():
        sentences = tokenizer([t.replace("{}", "sky") for t in TEMPLATES])
        expected = F.normalize(F.normalize(tiny_clip.encode_text(sentences), dim=-1).mean(0), dim=0)
    torch.testing.assert_close(embeds[2], expected)
    assert not torch.allclose(embeds[0], embeds[1])


def test_a_repeated_vocabulary_returns_the_same_stacked_rows():
    calls = []

    def encode(sentences):
        calls.append(len(sentences))
        return torch.randn(len(sentences), 8)

    embedder = TextEmbedder(encode_text=encode)
    vocab = Vocabulary.from_names(["cat, kitty", "dog"])
    first = embedder(vocab)
    assert embedder(Vocabulary.from_names(["cat, kitty", "dog"])) is first  # no re-stacking
    other = embedder(Vocabulary.from_names(["dog", "cat, kitty"]))
    torch.testing.assert_close(other, first[[2, 0, 1]])
    embedder.clear_cache()
    assert embedder(vocab) is not first
