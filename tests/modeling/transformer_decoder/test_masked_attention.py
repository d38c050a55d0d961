"""The cross-attention mask: blocked where the previous mask is background, never a blocked row;
its logits at the level size are the projections of the resized mask features."""

import torch
import torch.nn.functional as F

from maft_plus.modeling.transformer_decoder import build_attention_mask, project_masks


def test_blocked_where_sigmoid_below_half_and_full_rows_unblocked():
    mask_logits = torch.tensor(
        [
            [  # image 0
                [[2.0, -1.0], [0.0, -3.0]],  # query 0: sigmoid(0) = 0.5 is not blocked
                [[-1.0, -2.0], [-0.1, -5.0]],  # query 1: all blocked -> all unblocked
            ],
            [  # image 1
                [[-1.0, -1.0], [-1.0, 1.0]],
                [[1.0, 1.0], [1.0, 1.0]],
            ],
        ],
        requires_grad=True,
    )  # (B=2, Q=2, 2, 2)
    attn_mask = build_attention_mask(mask_logits)

    assert attn_mask.dtype == torch.bool
    assert attn_mask.shape == (2, 1, 2, 4)  # (B, 1, Q, h*w): the same for every head
    assert not attn_mask.requires_grad
    image_0 = torch.tensor([[False, True, False, True], [False, False, False, False]])
    image_1 = torch.tensor([[True, True, True, False], [False, False, False, False]])
    assert torch.equal(attn_mask[0, 0], image_0)
    assert torch.equal(attn_mask[1, 0], image_1)


def test_projecting_resized_features_gives_the_resized_logits():
    """Bilinear resizing and the projection are both linear: their order does not matter."""
    mask_embeds = torch.randn(2, 5, 8)  # (B, Q, mask_dim)
    features = torch.randn(2, 8, 16, 12)  # (B, mask_dim, H/4, W/4)
    for size in [(8, 6), (4, 3), (2, 2), (5, 7)]:  # strides 8, 16, 32 and an odd size
        resized_logits = F.interpolate(
            project_masks(mask_embeds, features), size=size, mode="bilinear", align_corners=False
        )
        resized_features = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(
            project_masks(mask_embeds, resized_features), resized_logits, rtol=1e-5, atol=1e-5
        )
