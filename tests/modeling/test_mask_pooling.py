"""Mask pooling: averages inside binarized masks, zero for empty masks, no gradient to masks."""

import pytest
import torch

from maft_plus.modeling.mask_pooling import mask_pool


def test_average_inside_the_mask_by_hand():
    features = torch.arange(8.0).view(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    masks = torch.tensor(
        [[[[1.0, -1.0], [2.0, -3.0]], [[-1.0, -1.0], [-1.0, 5.0]]]]
    )  # (1, 2, 2, 2)
    pooled = mask_pool(features, masks)
    torch.testing.assert_close(pooled, torch.tensor([[[1.0, 5.0], [3.0, 7.0]]]))


def test_an_empty_mask_pools_to_zero():
    pooled = mask_pool(torch.randn(2, 3, 4, 4), -torch.ones(2, 5, 4, 4))
    assert torch.equal(pooled, torch.zeros(2, 5, 3))


def test_masks_are_resized_to_the_feature_size():
    features = torch.randn(1, 3, 2, 2)
    masks = torch.full((1, 1, 8, 8), -1.0)
    masks[..., :4, :4] = 1.0  # the top-left quarter = the top-left feature cell
    torch.testing.assert_close(mask_pool(features, masks)[0, 0], features[0, :, 0, 0])


def test_gradient_reaches_features_not_masks():
    features = torch.randn(1, 3, 4, 4, requires_grad=True)
    masks = torch.randn(1, 2, 4, 4, requires_grad=True)
    mask_pool(features, masks).sum().backward()
    assert features.grad is not None and masks.grad is None


def test_mismatched_batches_are_rejected():
    with pytest.raises(ValueError, match="with one B"):
        mask_pool(torch.randn(2, 3, 4, 4), torch.randn(1, 2, 4, 4))
