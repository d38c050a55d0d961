"""Synonym logits combine into class logits by a max per class; void passes through."""

import pytest
import torch

from maft_plus.modeling.transformer_decoder import synonym_logits_to_class_logits


def test_max_over_synonyms_with_void_passthrough_and_gradient_to_the_max_only():
    # class 0 has one synonym (column 1), class 1 has three (columns 0, 2, 3); column 4 is void
    synonym_to_class = torch.tensor([1, 0, 1, 1])
    logits = torch.tensor(
        [
            [0.5, -2.0, 3.0, 1.0, 7.0],
            [-1.0, 4.0, -3.0, -0.5, -7.0],
        ],
        requires_grad=True,
    )
    class_logits = synonym_logits_to_class_logits(logits, synonym_to_class, num_classes=2)

    expected = torch.tensor([[-2.0, 3.0, 7.0], [4.0, -0.5, -7.0]])
    assert torch.equal(class_logits, expected)

    class_logits.sum().backward()
    expected_grad = torch.tensor(
        [
            [0.0, 1.0, 1.0, 0.0, 1.0],  # class 1 max at column 2
            [0.0, 1.0, 0.0, 1.0, 1.0],  # class 1 max at column 3
        ]
    )
    assert torch.equal(logits.grad, expected_grad)


def test_leading_dimensions_are_kept():
    logits = torch.randn(2, 5, 7)  # (B, Q, S+1) with S = 6
    synonym_to_class = torch.tensor([0, 0, 1, 2, 2, 2])
    out = synonym_logits_to_class_logits(logits, synonym_to_class, num_classes=3)
    assert out.shape == (2, 5, 4)
    assert torch.equal(out[..., 0], logits[..., :2].amax(-1))
    assert torch.equal(out[..., 2], logits[..., 3:6].amax(-1))
    assert torch.equal(out[..., 3], logits[..., 6])


def test_bad_synonym_count_names_the_input():
    with pytest.raises(ValueError, match="synonym_to_class"):
        synonym_logits_to_class_logits(torch.randn(3, 5), torch.tensor([0, 1, 1]), num_classes=2)
