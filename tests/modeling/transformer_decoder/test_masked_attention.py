"""The cross-attention mask: blocked where the previous mask is background, never a blocked row."""

import torch

from maft_plus.modeling.transformer_decoder import build_attention_mask


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
    attn_mask = build_attention_mask(mask_logits, (2, 2))

    assert attn_mask.dtype == torch.bool
    assert attn_mask.shape == (2, 1, 2, 4)  # (B, 1, Q, h*w): the same for every head
    assert not attn_mask.requires_grad
    image_0 = torch.tensor([[False, True, False, True], [False, False, False, False]])
    image_1 = torch.tensor([[True, True, True, False], [False, False, False, False]])
    assert torch.equal(attn_mask[0, 0], image_0)
    assert torch.equal(attn_mask[1, 0], image_1)


def test_resized_bilinearly_to_the_level_size():
    mask_logits = torch.full((1, 1, 4, 4), -5.0)
    mask_logits[..., :2, :2] = 5.0  # top-left quarter is foreground
    attn_mask = build_attention_mask(mask_logits, (2, 2))
    assert torch.equal(attn_mask, torch.tensor([[[[False, True, True, True]]]]))
