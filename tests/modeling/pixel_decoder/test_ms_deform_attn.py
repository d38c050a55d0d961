"""Pure-PyTorch deformable attention: bilinear samples where they should be, init as specified."""

import math

import pytest
import torch
import torch.nn.functional as F

from maft_plus.modeling.pixel_decoder import (
    MultiScaleDeformableAttention,
    ms_deform_attn,
    pixel_centre_reference_points,
)
from maft_plus.modeling.pixel_decoder.padded_table import row_arithmetic_dtype


def bilinear_sample_loop(value_map: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample a (h, w, Dh) map at normalized (x, y); pixel centres at (j + 0.5) / w; 0 outside."""
    height, width, _ = value_map.shape
    px, py = x * width - 0.5, y * height - 0.5  # continuous pixel coordinates
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(value_map.shape[-1], dtype=torch.float64)
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yi < height and 0 <= xi < width:
                out += wy * wx * value_map[yi, xi].double()
    return out


def ms_deform_attn_loop(value, spatial_shapes, locations, weights) -> torch.Tensor:
    """Reference: explicit loops over batch, query, head, level and point."""
    batch, _, num_heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = locations.shape
    starts = [0]
    for h, w in spatial_shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(batch, num_queries, num_heads, head_dim, dtype=torch.float64)
    for b in range(batch):
        for q in range(num_queries):
            for m in range(num_heads):
                for lvl, (h, w) in enumerate(spatial_shapes):
                    value_map = value[b, starts[lvl] : starts[lvl + 1], m].reshape(h, w, head_dim)
                    for p in range(num_points):
                        x, y = locations[b, q, m, lvl, p].tolist()
                        sample = bilinear_sample_loop(value_map, x, y)
                        out[b, q, m] += weights[b, q, m, lvl, p].double() * sample
    return out.reshape(batch, num_queries, num_heads * head_dim)


def test_matches_explicit_bilinear_loops_inside_and_outside_the_maps():
    spatial_shapes = [(3, 4), (2, 3)]  # non-square, so swapping x and y would show
    batch, num_queries, num_heads, head_dim, num_points = 2, 5, 2, 3, 2
    num_tokens = sum(h * w for h, w in spatial_shapes)
    value = torch.randn(batch, num_tokens, num_heads, head_dim)
    # many locations beyond [0, 1] (zero padding), plus hand-picked ones
    locations = torch.rand(batch, num_queries, num_heads, 2, num_points, 2) * 1.8 - 0.4
    locations[0, 0, 0, 0, 0] = torch.tensor([-0.5, 0.5])  # fully outside: contributes 0
    locations[0, 0, 0, 0, 1] = torch.tensor([0.125, 1.0 / 6])  # centre of pixel (0, 0) of level 0
    locations[0, 1, 1, 1, 0] = torch.tensor([1.0, 1.0])  # bottom-right corner: a quarter weight
    locations[1, 2, 0, 1, 1] = torch.tensor([-0.1, 0.3])  # left of the map: partly padded
    weights = torch.rand(batch, num_queries, num_heads, 2, num_points)

    ours = ms_deform_attn(value, spatial_shapes, locations, weights)
    expected = ms_deform_attn_loop(value, spatial_shapes, locations, weights)
    assert ours.shape == (batch, num_queries, num_heads * head_dim)
    torch.testing.assert_close(ours.double(), expected, atol=1e-5, rtol=1e-5)

    # the hand-picked cases, one sample at a time
    single_weight = torch.zeros_like(weights)
    single_weight[0, 0, 0, 0, 1] = 1.0
    out = ms_deform_attn(value, spatial_shapes, locations, single_weight)
    torch.testing.assert_close(out[0, 0, :head_dim], value[0, 0, 0])
    single_weight.zero_()
    single_weight[0, 0, 0, 0, 0] = 1.0
    out = ms_deform_attn(value, spatial_shapes, locations, single_weight)
    assert torch.equal(out[0, 0], torch.zeros(num_heads * head_dim))
    single_weight.zero_()
    single_weight[0, 1, 1, 1, 0] = 1.0
    out = ms_deform_attn(value, spatial_shapes, locations, single_weight)
    last_pixel_level1 = value[0, num_tokens - 1, 1]  # (2, 3) map, pixel (1, 2)
    torch.testing.assert_close(out[0, 1, head_dim:], 0.25 * last_pixel_level1)


def ms_deform_attn_grid_sample(value, spatial_shapes, locations, weights) -> torch.Tensor:
    """The plain formulation: grid_sample every level, weigh the samples, sum (reference)."""
    batch, _, num_heads, head_dim = value.shape
    num_queries = locations.shape[1]
    output = 0
    levels = value.split([h * w for h, w in spatial_shapes], dim=1)
    for level, (height, width) in enumerate(spatial_shapes):
        value_map = levels[level].permute(0, 2, 3, 1)  # (B, M, Dh, h*w)
        value_map = value_map.reshape(batch * num_heads, head_dim, height, width)
        grid = 2 * locations[:, :, :, level].transpose(1, 2).flatten(0, 1) - 1  # (B*M, Q, P, 2)
        sampled = F.grid_sample(value_map, grid, mode="bilinear", align_corners=False)
        level_weights = weights[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (B*M, Q, P)
        output = output + (sampled * level_weights[:, None]).sum(-1)  # (B*M, Dh, Q)
    output = output.view(batch, num_heads, head_dim, num_queries)
    return output.permute(0, 3, 1, 2).flatten(2)  # (B, Q, M*Dh)


def test_matches_grid_sample_at_pixel_decoder_like_shapes():
    """The fused path gives the plain grid_sample path's values (fp32 rounding apart)."""
    torch.manual_seed(0)
    spatial_shapes = [(5, 7), (10, 14), (20, 28)]
    batch, num_heads, head_dim, num_points = 2, 4, 8, 4
    num_tokens = sum(h * w for h, w in spatial_shapes)
    value = torch.randn(batch, num_tokens, num_heads, head_dim)
    locations = torch.rand(batch, num_tokens, num_heads, 3, num_points, 2) * 1.4 - 0.2
    weights = torch.rand(batch, num_tokens, num_heads, 3, num_points).softmax(dim=-1)
    ours = ms_deform_attn(value, spatial_shapes, locations, weights)
    plain = ms_deform_attn_grid_sample(value, spatial_shapes, locations, weights)
    torch.testing.assert_close(ours, plain, atol=1e-5, rtol=1e-5)


def test_gradients_match_finite_differences_for_values_locations_and_weights():
    torch.manual_seed(0)
    spatial_shapes = [(3, 4), (2, 3)]
    num_tokens = sum(h * w for h, w in spatial_shapes)
    value = torch.randn(1, num_tokens, 2, 3, dtype=torch.float64, requires_grad=True)
    # away from integer pixel coordinates, where bilinear sampling has a kink
    locations = torch.rand(1, 4, 2, 2, 2, 2, dtype=torch.float64) * 1.6 - 0.3
    locations.requires_grad_(True)
    weights = torch.rand(1, 4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, loc, w: ms_deform_attn(v, spatial_shapes, loc, w), (value, locations, weights)
    )


def test_rejects_spatial_shapes_that_do_not_match_the_value():
    value = torch.randn(1, 10, 2, 3)
    locations = torch.rand(1, 4, 2, 1, 1, 2)
    weights = torch.ones(1, 4, 2, 1, 1)
    with pytest.raises(ValueError, match="spatial_shapes"):
        ms_deform_attn(value, [(3, 4)], locations, weights)


def test_zero_offsets_single_level_single_point_samples_each_query_own_pixel():
    height, width, d_model = 3, 5, 8
    attn = MultiScaleDeformableAttention(d_model=d_model, num_heads=2, num_levels=1, num_points=1)
    torch.nn.init.zeros_(attn.sampling_offsets.bias)  # init points one pixel away; zero them
    torch.nn.init.normal_(attn.value_proj.bias)
    torch.nn.init.normal_(attn.output_proj.bias)
    x = torch.randn(2, height * width, d_model)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    centres = torch.stack(((xs + 0.5) / width, (ys + 0.5) / height), dim=-1).flatten(0, 1)
    torch.testing.assert_close(pixel_centre_reference_points([(height, width)]), centres)
    reference_points = centres[None, :, None, :].expand(2, -1, 1, -1)  # (B, N, 1, 2)

    out = attn(x + torch.randn_like(x), reference_points, x, [(height, width)])
    torch.testing.assert_close(out, attn.output_proj(attn.value_proj(x)), atol=1e-5, rtol=1e-5)


def test_offsets_are_in_pixels_of_their_level():
    """Offset (+1, 0) from a pixel centre lands on the next pixel of that level."""
    spatial_shapes = [(2, 4), (4, 2)]
    attn = MultiScaleDeformableAttention(d_model=4, num_heads=1, num_levels=2, num_points=1)
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))  # level 0 x, 1 y
        attn.attention_weights.bias.copy_(torch.tensor([0.0, -1e4]))  # only level 0 counts
        attn.value_proj.weight.copy_(torch.eye(4))
        attn.output_proj.weight.copy_(torch.eye(4))
    value = torch.randn(1, 16, 4)
    reference_points = torch.tensor([[0.125, 0.25], [0.25, 0.125]])[None, None]  # (1, 1, 2, 2)
    out = attn(torch.zeros(1, 1, 4), reference_points, value, spatial_shapes)
    torch.testing.assert_close(out[0, 0], value[0, 1])  # level 0 pixel (0, 1)
    with torch.no_grad():
        attn.attention_weights.bias.copy_(torch.tensor([-1e4, 0.0]))  # only level 1 counts
    out = attn(torch.zeros(1, 1, 4), reference_points, value, spatial_shapes)
    torch.testing.assert_close(out[0, 0], value[0, 8 + 2])  # level 1 pixel (1, 0)


def test_module_matches_the_reference_sampler_on_checkpoint_layout_offsets():
    """The module reorders its offsets and spells out the softmax: the math must not change."""
    spatial_shapes = [(3, 5), (2, 2)]
    batch, num_queries, d_model, heads, levels, points = 2, 6, 8, 2, 2, 3
    attn = MultiScaleDeformableAttention(
        d_model=d_model, num_heads=heads, num_levels=levels, num_points=points
    )
    for linear in (attn.sampling_offsets, attn.attention_weights):
        torch.nn.init.normal_(linear.weight, std=1.0)  # far-reaching points, peaked weights
        torch.nn.init.normal_(linear.bias)
    query = torch.randn(batch, num_queries, d_model)
    value_input = torch.randn(batch, sum(h * w for h, w in spatial_shapes), d_model)
    reference_points = torch.rand(batch, num_queries, levels, 2)

    out = attn(query, reference_points, value_input, spatial_shapes)

    # checkpoint layout: offsets (M, L, P, x/y) in pixels of the level, one softmax per head
    offsets = attn.sampling_offsets(query).view(batch, num_queries, heads, levels, points, 2)
    sizes = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=torch.float32)  # (L, 2)
    locations = reference_points[:, :, None, :, None, :] + offsets / sizes[:, None, :]
    weights = attn.attention_weights(query).view(batch, num_queries, heads, levels * points)
    weights = weights.softmax(-1).view(batch, num_queries, heads, levels, points)
    value = attn.value_proj(value_input).view(batch, -1, heads, d_model // heads)
    sampled = ms_deform_attn_loop(value, spatial_shapes, locations, weights)
    assert (locations < 0).any() and (locations > 1).any()  # the zero border is exercised
    torch.testing.assert_close(out, attn.output_proj(sampled.float()), atol=1e-5, rtol=1e-5)


def test_init_follows_deformable_detr():
    attn = MultiScaleDeformableAttention(d_model=16, num_heads=4, num_levels=2, num_points=3)
    grid = attn.sampling_offsets.bias.detach().view(4, 2, 3, 2)  # (M, L, P, 2)
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    steps = torch.tensor([1.0, 2.0, 3.0])
    expected = directions[:, None, None, :] * steps[None, None, :, None]  # (M, 1, P, 2)
    torch.testing.assert_close(grid, expected.expand(-1, 2, -1, -1), atol=1e-6, rtol=0)
    assert not attn.sampling_offsets.weight.any()
    assert not attn.attention_weights.weight.any() and not attn.attention_weights.bias.any()
    assert not attn.value_proj.bias.any() and not attn.output_proj.bias.any()
    assert attn.value_proj.weight.abs().max() <= math.sqrt(6 / 32)  # Xavier-uniform bound


def test_corner_rows_are_computed_in_a_dtype_that_holds_them_exactly():
    assert row_arithmetic_dtype(2**24 - 1, torch.float32) == torch.float32
    assert row_arithmetic_dtype(2**24 - 1, torch.bfloat16) == torch.float32  # never below fp32
    assert row_arithmetic_dtype(2**24 - 1, torch.float64) == torch.float64
    assert row_arithmetic_dtype(2**24, torch.float32) == torch.float64
    # fp32 would round the last row up: the bound is where that starts
    last = torch.tensor(2**24 + 1, dtype=torch.float64)
    assert last.float().double() != last


def test_precomputed_reference_pixels_and_projection_give_forward_exactly():
    torch.manual_seed(0)
    spatial_shapes = [(3, 5), (2, 2)]
    attn = MultiScaleDeformableAttention(d_model=8, num_heads=2, num_levels=2, num_points=3)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    query = torch.randn(2, 7, 8)
    value_input = torch.randn(2, 19, 8)
    reference_points = torch.rand(2, 7, 2, 2)
    reference = attn.reference_pixels(reference_points, spatial_shapes)
    assert reference.shape == (2, 7, 2, 2, 2, 3)  # (B, Q, M, x/y, L, P)
    # level 0 is 5 wide and 3 high: x * 5 - 0.5 and y * 3 - 0.5, for every head and point
    expected_x = reference_points[:, :, 0, 0] * 5 - 0.5
    expected_y = reference_points[:, :, 0, 1] * 3 - 0.5
    torch.testing.assert_close(reference[:, :, 1, 0, 0, 2], expected_x)
    torch.testing.assert_close(reference[:, :, 0, 1, 0, 1], expected_y)
    table = attn.value_table(value_input, spatial_shapes)
    out = attn.attend(query, reference, table, spatial_shapes, attn.sampling_projection())
    assert torch.equal(out, attn(query, reference_points, value_input, spatial_shapes))
