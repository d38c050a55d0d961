"""Hungarian matcher: optimal assignments on hand-made costs, perfect predictions, fp32 costs."""

import itertools
import math

import pytest
import torch

from maft_plus.modeling.matcher import HungarianMatcher, match_cost_matrix
from maft_plus.modeling.set_loss_settings import TermWeights


def brute_force_assignments(cost: torch.Tensor) -> list[tuple[float, tuple[int, ...]]]:
    """All (total cost, rows for columns 0..N-1) of injective column -> row maps, cheapest first."""
    num_rows, num_cols = cost.shape
    totals = [
        (sum(cost[r, c].item() for c, r in enumerate(rows)), rows)
        for rows in itertools.permutations(range(num_rows), num_cols)
    ]
    return sorted(totals)


def as_pairs(rows: torch.Tensor, cols: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


def test_a_3x2_cost_matrix_gets_its_unique_optimum():
    # Greedy per target would give target 0 row 2 (0.1) and target 1 row 2 too; the optimum
    # is row 2 -> target 0, row 1 -> target 1 (total 0.6).
    cost = torch.tensor([[1.0, 5.0], [2.0, 0.5], [0.1, 0.4]])
    rows, cols = match_cost_matrix(cost)
    assert rows.dtype == cols.dtype == torch.int64
    assert rows.tolist() == [1, 2]  # query indices ascending, as scipy returns them
    assert as_pairs(rows, cols) == {(2, 0), (1, 1)}


def test_a_4x4_cost_matrix_gets_its_unique_optimum_not_the_greedy_one():
    cost = torch.tensor(
        [
            [0.0, 1.0, 9.0, 9.0],
            [1.0, 9.0, 9.0, 9.0],
            [9.0, 9.0, 2.0, 3.0],
            [9.0, 9.0, 9.0, 2.5],
        ]
    )
    # Greedy would give query 0 target 0 (cost 0) and then pay 9 for query 1.
    (best, best_rows), (second, _) = brute_force_assignments(cost)[:2]
    assert best < second  # the optimum is unique
    rows, cols = match_cost_matrix(cost)
    assert as_pairs(rows, cols) == {(r, c) for c, r in enumerate(best_rows)}
    assert as_pairs(rows, cols) == {(0, 1), (1, 0), (2, 2), (3, 3)}


def test_more_queries_than_targets_matches_every_target_once_at_minimum_cost():
    generator = torch.Generator().manual_seed(0)
    cost = torch.rand(6, 3, generator=generator)
    rows, cols = match_cost_matrix(cost)
    assert len(rows) == len(cols) == 3
    assert sorted(cols.tolist()) == [0, 1, 2] and len(set(rows.tolist())) == 3
    best_total, best_rows = brute_force_assignments(cost)[0]
    assert as_pairs(rows, cols) == {(r, c) for c, r in enumerate(best_rows)}
    assert math.isclose(cost[rows, cols].sum().item(), best_total, rel_tol=1e-6)


def test_no_targets_gives_empty_int64_indices():
    rows, cols = match_cost_matrix(torch.zeros(5, 0))
    assert rows.shape == cols.shape == (0,)
    assert rows.dtype == cols.dtype == torch.int64


def test_a_non_finite_cost_is_rejected():
    with pytest.raises(ValueError, match="NaN or infinite"):
        match_cost_matrix(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


def perfect_outputs(
    labels: list[int], boxes: list[tuple[int, int, int, int]], query_of_target: list[int]
) -> tuple[dict, dict]:
    """Outputs in which query ``query_of_target[n]`` predicts target n exactly; others predict void.

    Masks 32x32, targets at full size, predictions at 16x16 (boxes on even coordinates).
    """
    num_queries, num_classes = 6, 4
    masks = torch.zeros(len(labels), 32, 32, dtype=torch.bool)
    for n, (y0, y1, x0, x1) in enumerate(boxes):
        masks[n, y0:y1, x0:x1] = True
    pred_logits = torch.zeros(num_queries, num_classes + 1)
    pred_logits[:, num_classes] = 10.0  # every query says "void" ...
    pred_masks = torch.full((num_queries, 16, 16), -10.0)
    for n, query in enumerate(query_of_target):
        pred_logits[query] = 0.0
        pred_logits[query, labels[n]] = 10.0  # ... except the one that predicts target n
        small = masks[n].view(16, 2, 16, 2).any(3).any(1)  # (16, 16) the 2x2 blocks
        pred_masks[query][small] = 10.0
    target = {"labels": torch.tensor(labels, dtype=torch.int64), "masks": masks}
    return {"pred_logits": pred_logits, "pred_masks": pred_masks}, target


def test_perfect_predictions_are_matched_to_their_queries_whatever_the_query_order():
    torch.manual_seed(0)
    # Two targets share a class: only the masks tell them apart.
    labels = [2, 0, 2]
    boxes = [(0, 12, 0, 12), (0, 32, 16, 32), (16, 32, 0, 14)]
    image_a, target_a = perfect_outputs(labels, boxes, query_of_target=[4, 0, 2])
    image_b, target_b = perfect_outputs(labels[:2], boxes[:2], query_of_target=[1, 5])
    outputs = {
        key: torch.stack([image_a[key], image_b[key]]) for key in ("pred_logits", "pred_masks")
    }
    matcher = HungarianMatcher(num_points=2000)
    (rows_a, cols_a), (rows_b, cols_b) = matcher(outputs, [target_a, target_b])
    assert as_pairs(rows_a, cols_a) == {(4, 0), (0, 1), (2, 2)}
    assert as_pairs(rows_b, cols_b) == {(1, 0), (5, 1)}


def test_an_image_without_targets_gets_empty_indices():
    outputs = {"pred_logits": torch.randn(2, 4, 3), "pred_masks": torch.randn(2, 4, 8, 8)}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 16, 16)},
        {"labels": torch.tensor([1]), "masks": torch.ones(1, 16, 16)},
    ]
    (rows0, cols0), (rows1, cols1) = HungarianMatcher(num_points=64)(outputs, targets)
    assert rows0.numel() == cols0.numel() == 0
    assert len(rows1) == len(cols1) == 1 and cols1.item() == 0


def test_the_cost_matrix_follows_the_formula_on_constant_masks():
    # Constant masks: every point sees the same values except in the half-pixel border band where
    # grid_sample blends with its zero padding (under 1% of the points at 256x256).
    logit, size, num_points = 1.5, 256, 4000
    class_logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])  # (Q=2, K+1=3)
    mask_logits = torch.stack([torch.full((size, size), logit), torch.full((size, size), -logit)])
    masks = torch.stack([torch.ones(size, size), torch.zeros(size, size)])  # (N=2, H, W)
    labels = torch.tensor([1, 0])
    torch.manual_seed(0)
    matcher = HungarianMatcher(weights=TermWeights(2.0, 5.0, 3.0), num_points=num_points)
    cost = matcher.cost_matrix(class_logits, mask_logits, {"labels": labels, "masks": masks})

    probs = class_logits.softmax(-1)
    expected = torch.empty(2, 2)
    for q, sign in enumerate((1.0, -1.0)):
        p = torch.sigmoid(torch.tensor(sign * logit)).item()
        for n, t in enumerate((1.0, 0.0)):
            bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
            dice = 1 - (2 * p * t * num_points + 1) / ((p + t) * num_points + 1)
            expected[q, n] = -2.0 * probs[q, labels[n]] + 5.0 * bce + 3.0 * dice
    torch.testing.assert_close(cost, expected, atol=0.05, rtol=0.0)


def test_the_class_cost_is_minus_the_softmax_probability_of_the_target_class():
    class_logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])  # (Q=2, K+1=3)
    target = {"labels": torch.tensor([1, 0, 1]), "masks": torch.ones(3, 8, 8)}
    matcher = HungarianMatcher(weights=TermWeights(1.0, 0.0, 0.0), num_points=8)
    cost = matcher.cost_matrix(class_logits, torch.zeros(2, 4, 4), target)
    torch.testing.assert_close(cost, -class_logits.softmax(-1)[:, [1, 0, 1]])


def test_costs_are_computed_in_fp32_under_autocast():
    matcher = HungarianMatcher(num_points=256)
    generator = torch.Generator().manual_seed(0)
    class_logits = torch.randn(3, 4, generator=generator)
    mask_logits = 3 * torch.randn(3, 8, 8, generator=generator)
    target = {
        "labels": torch.tensor([0, 2]),
        "masks": torch.rand(2, 16, 16, generator=generator) > 0.5,
    }
    torch.manual_seed(0)
    reference = matcher.cost_matrix(class_logits, mask_logits, target)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = matcher.cost_matrix(class_logits, mask_logits, target)
    assert cost.dtype == torch.float32
    torch.testing.assert_close(cost, reference)  # bf16 products would be off by ~1e-2


def test_one_query_per_target_at_most_when_targets_outnumber_queries():
    cost = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, 0.7]])  # (Q=2, N=3)
    rows, cols = match_cost_matrix(cost)
    assert as_pairs(rows, cols) == {(0, 1), (1, 0)}


def test_mismatched_target_fields_are_rejected():
    outputs = {"pred_logits": torch.randn(1, 4, 3), "pred_masks": torch.randn(1, 4, 8, 8)}
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.ones(1, 8, 8)}]
    with pytest.raises(ValueError, match="with one N"):
        HungarianMatcher(num_points=16)(outputs, targets)


def test_predictions_and_targets_are_sampled_at_the_same_points():
    # A fine checkerboard predicted exactly: cheap only if both are read at the same points.
    cells = (torch.arange(64)[:, None] // 4 + torch.arange(64)[None, :] // 4) % 2 == 0  # (64, 64)
    target = {"labels": torch.tensor([0]), "masks": cells[None]}
    mask_logits = torch.where(cells, 20.0, -20.0)[None]  # (1, 64, 64)
    matcher = HungarianMatcher(weights=TermWeights(0.0, 1.0, 0.0), num_points=4000)
    cost = matcher.cost_matrix(torch.zeros(1, 2), mask_logits, target)
    assert cost.item() < 2.0  # independent points would give about 10 (half the points wrong)


def test_all_zero_cost_weights_are_refused():
    with pytest.raises(ValueError, match="at least one non-zero cost weight"):
        HungarianMatcher(weights=TermWeights(0.0, 0.0, 0.0))
