"""Representation compensation loss: hand-made values for both variants, non-square maps against a
step-by-step reference (including the released code's tall-map grid), zeros and gradients."""

import pytest
import torch
import torch.nn.functional as F

from maft_plus.modeling.losses import representation_compensation_loss, representation_descriptor


def ramp_map() -> torch.Tensor:
    """(1, 1, 4, 4): rows (-4..-1), (0..3), (4..7), (8..11)."""
    return torch.arange(16.0).view(1, 1, 4, 4) - 4


def naive_released_descriptor(features: torch.Tensor, scales: tuple[int, ...]) -> torch.Tensor:
    """The released recipe written out: ReLU, square resize, window means by explicit loops."""
    width = features.shape[-1]
    x = features.relu()
    side = max(x.shape[-2:])
    if x.shape[-2] != x.shape[-1]:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    parts = []
    for s in scales:
        k = width // s
        rows, cols = side // k, side // k  # floor: the remainder is dropped
        pooled = torch.zeros(*x.shape[:2], rows, cols)
        for i in range(rows):
            for j in range(cols):
                pooled[:, :, i, j] = x[:, :, i * k : (i + 1) * k, j * k : (j + 1) * k].mean((2, 3))
        column_sums = sum(pooled[:, :, i, :] for i in range(rows))  # (B, C, cols)
        row_sums = sum(pooled[:, :, :, j] for j in range(cols))  # (B, C, rows)
        parts += [column_sums.reshape(x.shape[0], -1), row_sums.reshape(x.shape[0], -1)]
    return torch.cat(parts, dim=1)


def test_released_by_hand_on_a_square_map():
    student = ramp_map()  # after ReLU: rows (0,0,0,0), (0,1,2,3), (4,5,6,7), (8,9,10,11)
    teacher = -torch.ones(1, 1, 4, 4)  # zero after ReLU
    # s=1: one 4x4 mean 66/16 = 4.125, as column sum and row sum.
    # s=2: 2x2 means (0.25, 1.25; 6.5, 8.5); column sums (6.75, 9.75), row sums (1.5, 15).
    expected_desc = torch.tensor([[4.125, 4.125, 6.75, 9.75, 1.5, 15.0]])
    torch.testing.assert_close(representation_descriptor(student, scales=(1, 2)), expected_desc)
    # SmoothL1 against zeros: |d| - 0.5 each -> (3.625 + 3.625 + 6.25 + 9.25 + 1 + 14.5) / 6.
    loss = representation_compensation_loss(student, teacher, scales=(1, 2))
    torch.testing.assert_close(loss, torch.tensor(6.375))


def test_paper_variant_by_hand_on_a_square_map():
    student = ramp_map()
    teacher = torch.zeros(1, 1, 4, 4)
    # s=1: mean 3.5. s=2: quadrant means (-1.5, 0.5; 6.5, 8.5). No ReLU.
    expected_desc = torch.tensor([[3.5, -1.5, 0.5, 6.5, 8.5]])
    got_desc = representation_descriptor(student, variant="paper", scales=(1, 2))
    torch.testing.assert_close(got_desc, expected_desc)
    # SmoothL1: 3.0, 0.5 * 1.5 -> 1.0, 0.5 * 0.5**2 = 0.125, 6.0, 8.0 -> 18.125 / 5.
    loss = representation_compensation_loss(student, teacher, variant="paper", scales=(1, 2))
    torch.testing.assert_close(loss, torch.tensor(3.625))


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 8, 8), (2, 3, 6, 12), (2, 3, 12, 6), (1, 2, 5, 7), (1, 2, 9, 5)],
    ids=["square", "wider", "taller", "odd-wider", "odd-taller"],
)
def test_released_matches_the_step_by_step_reference(shape: tuple[int, ...]):
    student, teacher = torch.randn(shape), torch.randn(shape)
    scales = (1, 2, 4)
    torch.testing.assert_close(
        representation_descriptor(student, scales=scales),
        naive_released_descriptor(student, scales),
    )
    expected = F.smooth_l1_loss(
        naive_released_descriptor(student, scales), naive_released_descriptor(teacher, scales)
    )
    torch.testing.assert_close(representation_compensation_loss(student, teacher), expected)


def test_released_pools_a_taller_map_on_a_finer_grid():
    # (8, 4) -> resized to 8x8, kernel 4 // 1 = 4: a 2x2 grid at s=1, not 1x1.
    taller = representation_descriptor(torch.randn(1, 3, 8, 4), scales=(1,))
    wider = representation_descriptor(torch.randn(1, 3, 4, 8), scales=(1,))
    assert taller.shape == (1, 3 * 2 + 3 * 2)
    assert wider.shape == (1, 3 + 3)


@pytest.mark.parametrize("variant", ["released", "paper"])
def test_identical_maps_give_zero(variant: str):
    features = torch.randn(2, 4, 6, 10)
    loss = representation_compensation_loss(features, features.clone(), variant=variant)
    assert loss.item() == 0.0


@pytest.mark.parametrize("variant", ["released", "paper"])
def test_gradient_reaches_student_not_teacher(variant: str):
    student = torch.randn(2, 4, 8, 8, requires_grad=True)
    teacher = torch.randn(2, 4, 8, 8, requires_grad=True)
    representation_compensation_loss(student, teacher, variant=variant).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_bad_inputs_are_rejected():
    features = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="'fancy'"):
        representation_compensation_loss(features, features, variant="fancy")
    with pytest.raises(ValueError, match=r"student \(1, 2, 4, 4\) and teacher \(1, 2, 4, 2\)"):
        representation_compensation_loss(features, features[..., :2])
    with pytest.raises(ValueError, match="feature width 4"):
        representation_compensation_loss(features, features, scales=(1, 8))
