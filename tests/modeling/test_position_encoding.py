"""Sine position encoding: exact values of design.md section 11 on a hand-made grid."""

import math

import pytest
import torch

from maft_plus.modeling.position_encoding import sine_position_encoding


def test_values_match_the_formula_by_hand():
    pos = sine_position_encoding(2, height=1, width=2, num_feats=4)  # (2, 8, 1, 2)
    assert pos.shape == (2, 8, 1, 2)
    y = 1 / (1 + 1e-6) * 2 * math.pi  # the single row
    x0, x1 = 1 / (2 + 1e-6) * 2 * math.pi, 2 / (2 + 1e-6) * 2 * math.pi

    def feats(a):  # dim_t = 1, 1, 100, 100; sin on even, cos on odd features
        return [math.sin(a), math.cos(a), math.sin(a / 100), math.cos(a / 100)]

    expected = torch.tensor([feats(y) + feats(x0), feats(y) + feats(x1)]).T  # (8, 2)
    torch.testing.assert_close(pos[0, :, 0, :], expected)
    torch.testing.assert_close(pos[1], pos[0])


def test_rows_vary_only_in_y_and_columns_only_in_x():
    pos = sine_position_encoding(1, height=3, width=5, num_feats=8)[0]  # (16, 3, 5)
    assert torch.equal(pos[:8, :, 0:1].expand(-1, -1, 5), pos[:8])  # y part constant along x
    assert torch.equal(pos[8:, 0:1, :].expand(-1, 3, -1), pos[8:])  # x part constant along y


def test_odd_feature_count_is_rejected():
    with pytest.raises(ValueError, match="num_feats must be even"):
        sine_position_encoding(1, 2, 2, num_feats=3)
