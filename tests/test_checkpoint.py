"""Loading official MAFT+ key sets (tests/contracts/) and our own checkpoints."""

import json
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from maft_plus.checkpoint import (
    OFFICIAL_TO_OURS,
    OPTIONAL_PREFIXES,
    MAFTPlusCheckpointer,
    check_compatible,
    convert_official_state_dict,
    load_state_dict_file,
    official_to_ours,
)
from maft_plus.config import setup_cfg

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "tests" / "contracts"
CONFIGS = {
    "maftp_l": "configs/semantic/maftp_l_eval.yaml",
    "maftp_b": "configs/semantic/maftp_b_eval.yaml",
    "maftp_l_pano": "configs/panoptic/maftp_l_pano_eval.yaml",
}
TINY = str(REPO / "configs" / "tiny" / "maftp_tiny.yaml")


def contract(name: str) -> dict[str, tuple[int, ...]]:
    path = CONTRACTS / f"{name}.json"
    return {key: tuple(shape) for key, shape in json.loads(path.read_text())}


def meta_model_shapes(config: str) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of the full-size model, built on the meta device (no weights)."""
    opts = ("MODEL.MAFT_PLUS.CLIP_PRETRAINED", "", "MODEL.DEVICE", "meta", "MODEL.WEIGHTS", "")
    with torch.device("meta"):
        model = build_model(setup_cfg(str(REPO / config), opts))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def converted_shapes(official: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    ours = {official_to_ours(key): shape for key, shape in official.items()}
    ours.pop(None, None)
    return ours


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_official_key_sets_fit_exactly(name):
    model_shapes = meta_model_shapes(CONFIGS[name])
    state_shapes = converted_shapes(contract(name))
    assert check_compatible(model_shapes, state_shapes) == []  # nothing of ours left unset


def test_every_official_key_is_used_or_documented():
    for key in contract("maftp_l"):
        ours = official_to_ours(key)
        assert ours is None or not ours.startswith("cdt.cross_atten."), key
    assert {
        official_to_ours(k) for k in ("backbone_t.clip_model.logit_scale", "criterion.empty_weight")
    } == {None}


def test_a_checkpoint_for_another_size_is_rejected_naming_both():
    model_shapes = meta_model_shapes(CONFIGS["maftp_l"])
    with pytest.raises(ValueError, match=r"file is for a model with D=640.*builds D=768"):
        check_compatible(model_shapes, converted_shapes(contract("maftp_b")))


def test_a_file_without_the_text_tower_keeps_the_pretrained_one():
    model_shapes = meta_model_shapes(CONFIGS["maftp_l"])
    state = {
        k: s
        for k, s in converted_shapes(contract("maftp_l")).items()
        if not k.startswith(OPTIONAL_PREFIXES)
    }
    kept = check_compatible(model_shapes, state)
    assert kept and all(k.startswith(OPTIONAL_PREFIXES) for k in kept)
    assert "backbone.clip_model.token_embedding.weight" in kept


def test_missing_and_unexpected_keys_are_named():
    model_shapes = meta_model_shapes(CONFIGS["maftp_l"])
    state = converted_shapes(contract("maftp_l"))
    with pytest.raises(ValueError, match="keys this model does not.*extra.weight"):
        check_compatible(model_shapes, {**state, "extra.weight": (1,)})
    state.pop("sem_seg_head.predictor.query_feat.weight")
    with pytest.raises(ValueError, match="lacks 1 model keys.*query_feat"):
        check_compatible(model_shapes, state)


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names -> the released names (the inverse of OFFICIAL_TO_OURS)."""
    official = {}
    for key, value in state.items():
        for theirs, ours in OFFICIAL_TO_OURS:
            if key.startswith(ours):
                key = theirs + key.removeprefix(ours)
        official[key] = value
    return official


def test_released_format_file_round_trips_into_a_fresh_model(tmp_path):
    source = build_model(setup_cfg(TINY)).eval()
    state = to_official(source.state_dict())
    teacher = {
        k.replace("backbone.", "backbone_t.", 1): v.clone()
        for k, v in state.items()
        if k.startswith("backbone.")
    }
    released = {
        f"module.{k}": v
        for k, v in {**state, **teacher, "criterion.empty_weight": torch.ones(5)}.items()
    }
    path = tmp_path / "released.pth"
    torch.save({"model": released}, path)

    torch.manual_seed(1)
    target = build_model(setup_cfg(TINY)).eval()
    assert not torch.equal(target.void_embedding.weight, source.void_embedding.weight)
    MAFTPlusCheckpointer(target).load(str(path))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=f"could not read the checkpoint {path}"):
        load_state_dict_file(str(path))


class NotATensor:
    pass


def test_pickled_objects_are_refused_by_default(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": NotATensor()}, path)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_state_dict_file(str(path))
    assert "extra" in load_state_dict_file(str(path), allow_pickle=True)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_state_dict_file(str(tmp_path / "nothing.pth"))


def test_non_tensor_entries_are_named():
    with pytest.raises(ValueError, match="'step' is a int, not a tensor"):
        convert_official_state_dict({"model": {"step": 3}})


@pytest.mark.slow
def test_random_large_checkpoint_from_the_contract_loads(tmp_path):
    """A file with exactly the released Large key set (random values) loads into the real model."""
    official = contract("maftp_l")
    state = {k: torch.randn(s) if s else torch.tensor(1.0) for k, s in official.items()}
    model = build_model(
        setup_cfg(
            str(REPO / CONFIGS["maftp_l"]),
            ("MODEL.MAFT_PLUS.CLIP_PRETRAINED", "", "MODEL.DEVICE", "cpu"),
        )
    )
    path = tmp_path / "maftp_l.pth"
    torch.save(state, path)
    del state
    MAFTPlusCheckpointer(model).load(str(path))
    torch.testing.assert_close(
        model.cdt.layers[0].proj.weight, torch.load(path)["cdt.cross_atten.MLP.weight"]
    )


def test_pickle_formats_need_an_explicit_opt_in(tmp_path):
    import pickle

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in model.state_dict().items()}}))
    with pytest.raises(ValueError, match="allow_pickle=True"):
        MAFTPlusCheckpointer(model).load(str(path))
    pth = tmp_path / "extra.pth"
    torch.save({"model": model.state_dict(), "note": NotATensor()}, pth)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        MAFTPlusCheckpointer(model).load(str(pth))
    loaded = MAFTPlusCheckpointer(model, allow_pickle=True)._load_file(str(pth))
    assert "note" in loaded
