"""Set criterion: hand-computed class loss, analytic mask losses, deep supervision, gradients."""

import math

import pytest
import torch

from maft_plus.modeling.criterion import SetCriterion
from maft_plus.modeling.matcher import HungarianMatcher
from maft_plus.modeling.set_loss_settings import PointSampling, TermWeights

WEIGHT_NAMES = ("class_weight", "mask_weight", "dice_weight")


def make_criterion(*, match_points: int = 512, no_object_weight: float = 0.1, **settings):
    """A criterion from flat settings: `TermWeights`' and `PointSampling`'s field names."""
    weights = TermWeights(**{name: settings.pop(name) for name in WEIGHT_NAMES if name in settings})
    return SetCriterion(
        matcher=HungarianMatcher(num_points=match_points),
        weights=weights,
        no_object_weight=no_object_weight,
        sampling=PointSampling(**settings),
    )


def square_target(label: int, size: int = 64) -> dict:
    """One target: the centred square of half the side."""
    masks = torch.zeros(1, size, size, dtype=torch.bool)
    masks[0, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    return {"labels": torch.tensor([label]), "masks": masks}


def random_outputs(batch: int, queries: int, classes: int, size: int, num_aux: int = 0) -> dict:
    def one() -> dict:
        return {
            "pred_logits": torch.randn(batch, queries, classes + 1, requires_grad=True),
            "pred_masks": torch.randn(batch, queries, size, size, requires_grad=True),
        }

    outputs = one()
    if num_aux:
        outputs["aux_outputs"] = [one() for _ in range(num_aux)]
    return outputs


def test_loss_ce_is_the_weighted_mean_cross_entropy_by_hand():
    # 2 queries, 1 target of class 1, K = 2 (logit 2 is void). Query 0 predicts the target's mask,
    # so it is matched to class 1; query 1 is unmatched and targets void with weight 0.1.
    logits = [[0.5, 2.0, -1.0], [0.3, -0.2, 1.0]]
    target = square_target(label=1, size=16)
    pred_masks = torch.full((1, 2, 16, 16), -10.0)
    pred_masks[0, 0][target["masks"][0]] = 10.0
    outputs = {"pred_logits": torch.tensor([logits]), "pred_masks": pred_masks}
    losses = make_criterion(class_weight=2.0, no_object_weight=0.1)(outputs, [target])

    def neg_log_softmax(row: list[float], k: int) -> float:
        return math.log(sum(math.exp(v) for v in row)) - row[k]

    weighted = 1.0 * neg_log_softmax(logits[0], 1) + 0.1 * neg_log_softmax(logits[1], 2)
    expected = 2.0 * weighted / (1.0 + 0.1)
    assert losses["loss_ce"].item() == pytest.approx(expected, rel=1e-5)


def test_mask_losses_approach_their_analytic_values_on_random_points():
    # Left half logit 2, right half logit -1; the target is the left half. With uniform points the
    # BCE is the mean of the two halves' values and the dice follows from the area fractions.
    torch.manual_seed(0)
    size = 256
    pred_masks = torch.full((1, 1, size, size), -1.0)
    pred_masks[..., : size // 2] = 2.0
    masks = torch.zeros(1, size, size, dtype=torch.bool)
    masks[..., : size // 2] = True
    outputs = {"pred_logits": torch.tensor([[[0.0, 5.0, 0.0]]]), "pred_masks": pred_masks}
    targets = [{"labels": torch.tensor([1]), "masks": masks}]
    criterion = make_criterion(
        mask_weight=1.0, dice_weight=1.0, num_points=100_000, importance_sample_ratio=0.0
    )
    losses = criterion(outputs, targets)

    p_in, p_out = torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(-1.0)).item()
    bce = 0.5 * -math.log(p_in) + 0.5 * -math.log(1 - p_out)
    dice = 1 - 2 * 0.5 * p_in / (0.5 * p_in + 0.5 * p_out + 0.5)
    assert losses["loss_mask"].item() == pytest.approx(bce, abs=0.01)
    assert losses["loss_dice"].item() == pytest.approx(dice, abs=0.01)


def test_mask_losses_are_weighted():
    torch.manual_seed(0)
    outputs = random_outputs(1, 3, 2, 16)
    targets = [square_target(0, 32)]
    torch.manual_seed(1)
    unit = make_criterion(class_weight=1.0, mask_weight=1.0, dice_weight=1.0)(outputs, targets)
    torch.manual_seed(1)
    weighted = make_criterion(class_weight=2.0, mask_weight=5.0, dice_weight=3.0)(outputs, targets)
    for key, weight in (("loss_ce", 2.0), ("loss_mask", 5.0), ("loss_dice", 3.0)):
        torch.testing.assert_close(weighted[key], weight * unit[key])


def test_perfect_masks_give_near_zero_mask_losses():
    torch.manual_seed(0)
    target = square_target(label=0, size=256)
    good = torch.where(target["masks"], 10.0, -10.0)[None]  # (1, 1, 256, 256)
    outputs = {"pred_logits": torch.tensor([[[5.0, 0.0, 0.0]]]), "pred_masks": good}
    criterion = make_criterion(
        mask_weight=1.0, dice_weight=1.0, num_points=20_000, importance_sample_ratio=0.0
    )
    losses = criterion(outputs, [target])
    assert losses["loss_mask"].item() < 0.02 and losses["loss_dice"].item() < 0.02
    inverted = {"pred_logits": outputs["pred_logits"], "pred_masks": -good}
    bad = criterion(inverted, [target])
    assert bad["loss_mask"].item() > 5.0 and bad["loss_dice"].item() > 0.9


def test_importance_sampling_picks_points_at_the_mask_boundary():
    # Perfect +-10 masks are only wrong where bilinear sampling blurs the boundary: points chosen by
    # uncertainty (-|logit|) land there, so the loss is several times the uniform-points loss.
    target = square_target(label=0, size=32)
    outputs = {
        "pred_logits": torch.tensor([[[5.0, 0.0, 0.0]]]),
        "pred_masks": torch.where(target["masks"], 10.0, -10.0)[None],  # (1, 1, 32, 32)
    }
    losses = {}
    for ratio in (0.0, 1.0):
        torch.manual_seed(0)
        criterion = make_criterion(
            mask_weight=1.0, dice_weight=1.0, num_points=4000, importance_sample_ratio=ratio
        )
        losses[ratio] = criterion(outputs, [target])["loss_mask"].item()
    assert losses[1.0] > 2.0 * losses[0.0]


def test_mask_losses_are_averaged_over_the_target_masks():
    # Two identical images normalize by 2 masks: the same loss as one image alone.
    torch.manual_seed(0)
    single = random_outputs(1, 2, 2, 32)
    double = {key: single[key].detach().repeat(2, 1, 1, 1) for key in ("pred_masks",)}
    double["pred_logits"] = single["pred_logits"].detach().repeat(2, 1, 1)
    target = square_target(1, 64)
    criterion = make_criterion(num_points=50_000, importance_sample_ratio=0.0)
    one = criterion(single, [target])
    two = criterion(double, [target, target])
    for key in ("loss_ce", "loss_mask", "loss_dice"):
        assert two[key].item() == pytest.approx(one[key].item(), rel=0.02)


def test_unmatched_targets_still_count_in_the_normalizer():
    # One query, two targets: the query matches the first target, and the mask losses are divided
    # by the 2 target masks. The matcher and the criterion draw the same random numbers either way.
    torch.manual_seed(0)
    outputs = random_outputs(1, 1, 2, 32)
    first = square_target(0, 64)
    second = {"labels": torch.tensor([1]), "masks": torch.zeros(1, 64, 64, dtype=torch.bool)}
    second["masks"][0, :4, :4] = True
    both = {key: torch.cat([first[key], second[key]]) for key in ("labels", "masks")}
    criterion = make_criterion(num_points=1000, match_points=1000)
    torch.manual_seed(1)
    one = criterion(outputs, [first])
    torch.manual_seed(1)
    two = criterion(outputs, [both])
    for key in ("loss_mask", "loss_dice"):
        torch.testing.assert_close(two[key], one[key] / 2)


def test_deep_supervision_adds_suffixed_losses_for_every_aux_output():
    torch.manual_seed(0)
    outputs = random_outputs(2, 4, 3, 16, num_aux=3)
    targets = [square_target(0, 32), square_target(2, 32)]
    losses = make_criterion(num_points=256)(outputs, targets)
    expected = {
        f"{name}{suffix}"
        for name in ("loss_ce", "loss_mask", "loss_dice")
        for suffix in ("", "_0", "_1", "_2")
    }
    assert set(losses) == expected
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())


def test_gradients_reach_logits_and_masks_of_every_output():
    torch.manual_seed(0)
    outputs = random_outputs(2, 4, 3, 16, num_aux=2)
    targets = [square_target(1, 32), square_target(0, 32)]
    sum(make_criterion(num_points=256)(outputs, targets).values()).backward()
    for out in [outputs, *outputs["aux_outputs"]]:
        for key in ("pred_logits", "pred_masks"):
            assert out[key].grad is not None and out[key].grad.abs().sum() > 0


def test_images_without_targets_keep_the_losses_finite():
    torch.manual_seed(0)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32)}
    criterion = make_criterion(num_points=256)

    mixed = criterion(random_outputs(2, 4, 3, 16, num_aux=1), [empty, square_target(2, 32)])
    assert all(torch.isfinite(v) for v in mixed.values())

    outputs = random_outputs(2, 4, 3, 16)
    nothing = criterion(outputs, [empty, empty])
    assert nothing["loss_mask"].item() == 0.0 and nothing["loss_dice"].item() == 0.0
    # Every query targets void: the weighted mean is the plain mean of -log p(void).
    void_nll = -outputs["pred_logits"].detach().log_softmax(-1)[..., -1].mean()
    torch.testing.assert_close(nothing["loss_ce"], 2.0 * void_nll)
    sum(nothing.values()).backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0


def test_the_class_weights_are_rebuilt_from_the_logits_not_stored():
    criterion = make_criterion(num_points=64)
    assert dict(criterion.state_dict()) == {}
    for num_classes in (2, 5):
        outputs = random_outputs(1, 3, num_classes, 8)
        losses = criterion(outputs, [square_target(num_classes - 1, 16)])
        assert torch.isfinite(losses["loss_ce"])


def test_labels_outside_the_classes_are_rejected():
    outputs = random_outputs(1, 3, 2, 8)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        make_criterion(num_points=64)(outputs, [square_target(2, 16)])  # 2 is the void index


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_points": 0}, "num_points must be >= 1"),
        ({"oversample_ratio": 0.5}, "oversample_ratio must be >= 1"),
        ({"importance_sample_ratio": 1.5}, r"importance_sample_ratio must be in \[0, 1\]"),
        ({"dice_weight": -1.0}, "loss term weights must be >= 0"),
    ],
)
def test_bad_settings_are_refused_by_name(settings, message):
    with pytest.raises(ValueError, match=message):
        make_criterion(**settings)
