"""Weights as safetensors: tools/convert_weights.py, tensors-only loading, exact round trips."""

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from safetensors import safe_open
from script_loader import load_script

from maft_plus.checkpoint import (
    OFFICIAL_TO_OURS,
    OPTIONAL_PREFIXES,
    MAFTPlusCheckpointer,
    load_safetensors_file,
    load_state_dict_file,
)
from maft_plus.config import setup_cfg
from maft_plus.predictor import Predictor
from maft_plus.pretrained import resolve_pretrained
from maft_plus.safetensors_weights import (
    MAFT_PLUS_FORMAT,
    save_safetensors_weights,
    shared_memory_groups,
)

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny" / "maftp_tiny.yaml")
VOCABULARY = "cat, kitty; dog; grass; sky"
convert_weights = load_script("tools/convert_weights.py")


def convert(source: Path, output_dir: Path, *extra: str) -> dict:
    return convert_weights.main([str(source), str(output_dir), "--config-file", TINY, *extra])


def random_image() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (64, 80, 3), dtype=np.uint8)


def assert_same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def assert_same_prediction(first, second) -> None:
    assert np.array_equal(first.label_map, second.label_map)
    assert [(s.label, s.score) for s in first.segments] == [
        (s.label, s.score) for s in second.segments
    ]


@pytest.fixture(autouse=True)
def no_text_embedding_disk_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every prediction encodes its vocabulary afresh, in the same batches: rows cached by other
    tests were encoded in other batches and can differ in the last bits."""
    monkeypatch.setenv("MAFT_PLUS_TEXT_CACHE", "0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny model with its own weights, saved as a training checkpoint and converted."""
    root = tmp_path_factory.mktemp("trained")
    torch.manual_seed(123)  # weights unlike those of a fresh tiny model
    model = build_model(setup_cfg(TINY)).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    MAFTPlusCheckpointer(model, str(root), optimizer=optimizer).save("model_final", iteration=7)
    checkpoint = root / "model_final.pth"
    written = convert(checkpoint, root / "converted")
    state = {key: value.clone() for key, value in model.state_dict().items()}
    return SimpleNamespace(state=state, checkpoint=checkpoint, folder=root / "converted", **written)


@pytest.fixture(scope="module")
def reference(trained: SimpleNamespace):
    """The prediction of the .pth checkpoint, loaded as before this feature."""
    predictor = Predictor(setup_cfg(TINY), weights=str(trained.checkpoint))
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: before the autouse fixtures
        patch.setenv("MAFT_PLUS_TEXT_CACHE", "0")
        return predictor.predict(random_image(), VOCABULARY)


def test_round_trip_is_exact(trained, reference):
    assert trained.weights == trained.folder / "model.safetensors"
    assert trained.num_tensors == len(trained.state)
    for predictor in (
        Predictor(setup_cfg(TINY), weights=str(trained.weights)),
        Predictor.from_pretrained(trained.folder, device="cpu"),
    ):
        assert_same_weights(predictor.model, trained.state)
        assert_same_prediction(predictor.predict(random_image(), VOCABULARY), reference)


def test_written_file_and_config(trained):
    with safe_open(trained.weights, framework="pt") as handle:
        assert handle.metadata() == {
            "format": "pt",
            "maft_plus_format": MAFT_PLUS_FORMAT,
            "source": "model_final.pth",
        }
        assert set(handle.keys()) == set(trained.state)  # the model only: no optimizer state
    text = trained.config.read_text()
    assert "_BASE_" not in text
    written, original = setup_cfg(str(trained.config)), setup_cfg(TINY)
    assert written.MODEL.WEIGHTS == "" and written.MODEL.MAFT_PLUS == original.MODEL.MAFT_PLUS
    assert written.INPUT == original.INPUT


def to_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names -> a released file: official CDT names, ``module.``, teacher and loss keys."""
    released = {"module.criterion.empty_weight": torch.ones(5)}
    for key, value in state.items():
        for official, ours in OFFICIAL_TO_OURS:
            if key.startswith(ours):
                key = official + key.removeprefix(ours)
        released[f"module.{key}"] = value
        if key.startswith("backbone."):
            released["module.backbone_t." + key.removeprefix("backbone.")] = value.clone()
    return released


def test_released_file_converts_to_our_names(trained, tmp_path):
    released = to_released(trained.state)
    assert any(".cdt.cross_atten.multihead_attn." in key for key in released)
    path = tmp_path / "maftp_released.pth"
    torch.save(released, path)  # a flat state dict
    # Every key, text tower included: the config no longer asks for CLIP weights.
    opts = ("MODEL.MAFT_PLUS.CLIP_PRETRAINED", "laion2b_s29b_b131k_ft_soup")
    written = convert(path, tmp_path / "out", *opts)
    assert written["clip_pretrained"] == ""
    assert setup_cfg(str(written["config"])).MODEL.MAFT_PLUS.CLIP_PRETRAINED == ""
    loaded = load_safetensors_file(str(written["weights"]))
    assert loaded.keys() == trained.state.keys()
    for key, value in trained.state.items():
        assert torch.equal(loaded[key], value), key


def test_a_file_without_the_text_tower_keeps_clip_pretrained(trained, tmp_path, capsys):
    state = {k: v for k, v in trained.state.items() if not k.startswith(OPTIONAL_PREFIXES)}
    path = tmp_path / "no_text.pth"
    torch.save(state, path)
    with pytest.raises(SystemExit, match="lacks CLIP's text tower.*CLIP_PRETRAINED is empty"):
        convert(path, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    written = convert(path, tmp_path / "out", "MODEL.MAFT_PLUS.CLIP_PRETRAINED", "/clip/open.bin")
    assert written["clip_pretrained"] == "/clip/open.bin"
    assert setup_cfg(str(written["config"])).MODEL.MAFT_PLUS.CLIP_PRETRAINED == "/clip/open.bin"
    assert "no CLIP text tower" in capsys.readouterr().out
    assert set(load_safetensors_file(str(written["weights"]))) == set(state)


def test_loading_safetensors_never_unpickles(trained, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for module, name in ((torch, "load"), (torch.serialization, "load"), (pickle, "load")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    predictor = Predictor.from_pretrained(trained.folder, device="cpu")
    assert_same_weights(predictor.model, trained.state)
    with pytest.raises(ValueError, match="something was unpickled"):  # the patch catches .pth
        load_state_dict_file(str(trained.checkpoint))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_safetensors_are_named(trained, tmp_path, damage):
    data = trained.weights.read_bytes()
    content = {"truncated": data[: len(data) // 2], "garbage": b"\x00" * 64, "empty": b""}
    path = tmp_path / f"{damage}.safetensors"
    path.write_bytes(content[damage])
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=f"could not read the safetensors checkpoint {path}"):
        MAFTPlusCheckpointer(model).load(str(path))
    with pytest.raises(ValueError, match=str(path)):
        load_state_dict_file(str(path))
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        load_safetensors_file(str(tmp_path / "absent.safetensors"))


def test_safetensors_keep_the_strict_check(trained):
    cfg = setup_cfg(TINY, ["MODEL.MAFT_PLUS.DECODER.NUM_QUERIES", "16"])
    with pytest.raises(ValueError, match=r"does not fit this model.*query_feat.weight"):
        Predictor(cfg, weights=str(trained.weights))


def test_a_config_of_another_size_writes_nothing(trained, tmp_path):
    output = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"nothing written.*query_feat.weight: file \(8, 32\)"):
        convert(trained.checkpoint, output, "MODEL.MAFT_PLUS.DECODER.NUM_QUERIES", "16")
    assert not output.exists()


def test_existing_outputs_are_kept_unless_overwrite(trained, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "config.yaml").write_text("mine")
    with pytest.raises(SystemExit, match="config.yaml already exist.*--overwrite"):
        convert(trained.checkpoint, output)
    assert (output / "config.yaml").read_text() == "mine"
    assert not (output / "model.safetensors").exists()
    convert(trained.checkpoint, output, "--overwrite")
    assert setup_cfg(str(output / "config.yaml")).MODEL.WEIGHTS == ""
    assert load_safetensors_file(str(output / "model.safetensors")).keys() == trained.state.keys()


def test_tensors_sharing_memory_are_refused(tmp_path):
    weight = torch.randn(4, 3)
    path = tmp_path / "tied.safetensors"
    with pytest.raises(ValueError, match=r"share memory \(a.weight, b.weight\)"):
        save_safetensors_weights({"a.weight": weight, "b.weight": weight[1:3]}, path)
    assert list(tmp_path.iterdir()) == []
    assert shared_memory_groups({"x": weight, "y": weight.T}) == [["x", "y"]]
    flat = torch.arange(10.0)
    halves = {"first": flat[:5], "second": flat[5:], "strided": torch.randn(3, 4)[:, ::2]}
    assert shared_memory_groups(halves) == []
    written = save_safetensors_weights(halves, path, source="/some/where/halves.pth")
    assert all(tensor.is_contiguous() for tensor in written.values())
    loaded = load_safetensors_file(str(path))
    assert all(torch.equal(loaded[key], value) for key, value in halves.items())


COMMIT_MAIN = "a" * 40
COMMIT_V2 = "0123456789abcdef0123456789abcdef01234567"


def add_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, Path], ref: str) -> None:
    """Lay files out as the Hugging Face cache does: snapshots/<commit>/ and refs/<ref>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)  # the hub writes the hash without a newline


@pytest.fixture
def hub_cache(trained, tmp_path: Path) -> Path:
    """org/maftp-tiny: main holds the converted model, tag v2 the same with void_embedding + 1."""
    cache = tmp_path / "hf_cache"
    files = {"model.safetensors": trained.weights, "config.yaml": trained.config}
    add_snapshot(cache, "org/maftp-tiny", COMMIT_MAIN, files, "main")
    state = load_safetensors_file(str(trained.weights))
    state["void_embedding.weight"] = state["void_embedding.weight"] + 1
    save_safetensors_weights(state, tmp_path / "v2.safetensors")
    files["model.safetensors"] = tmp_path / "v2.safetensors"
    add_snapshot(cache, "org/maftp-tiny", COMMIT_V2, files, "v2")
    add_snapshot(cache, "org/no-weights", COMMIT_MAIN, {"config.yaml": trained.config}, "main")
    return cache


def test_hub_repo_loads_offline_from_the_cache(trained, reference, hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(hub_cache.parent)  # no local folder "org/maftp-tiny"
    predictor = Predictor.from_pretrained("org/maftp-tiny", cache_dir=hub_cache, device="cpu")
    assert_same_weights(predictor.model, trained.state)
    assert_same_prediction(predictor.predict(random_image(), VOCABULARY), reference)

    tagged = Predictor.from_pretrained(
        "org/maftp-tiny", revision="v2", cache_dir=hub_cache, device="cpu"
    )
    expected = trained.state["void_embedding.weight"] + 1
    assert torch.equal(tagged.model.void_embedding.weight.detach(), expected)
    files = resolve_pretrained("org/maftp-tiny", revision=COMMIT_V2, cache_dir=hub_cache)
    assert files.weights.parent.name == COMMIT_V2 and files.config.name == "config.yaml"


def test_hub_files_not_cached_offline_are_a_clear_error(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(hub_cache.parent)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set") as error:
        Predictor.from_pretrained("org/absent", cache_dir=hub_cache, device="cpu")
    assert "org/absent" in str(error.value) and "config.yaml" in str(error.value)
    with pytest.raises(RuntimeError, match=r"org/no-weights/model.safetensors.*HF_HUB_OFFLINE"):
        resolve_pretrained("org/no-weights", cache_dir=hub_cache)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        resolve_pretrained("org/maftp-tiny", revision="v3", cache_dir=hub_cache)


def test_local_folder_errors(trained, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.yaml").write_bytes(trained.config.read_bytes())
    with pytest.raises(FileNotFoundError, match=f"{folder} has no model.safetensors;"):
        resolve_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="has no model.safetensors;"):
        Predictor.from_pretrained(folder, device="cpu")
    (folder / "config.yaml").unlink()
    (folder / "model.safetensors").write_bytes(trained.weights.read_bytes())
    with pytest.raises(FileNotFoundError, match="has no config.yaml;"):
        resolve_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="is a file"):
        resolve_pretrained(folder / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="expected a local folder .* or a .* repo id"):
        resolve_pretrained(tmp_path / "nowhere" / "at" / "all")
    with pytest.raises(ValueError, match="local folder"):
        resolve_pretrained(trained.folder, revision="v2")


def test_configs_that_could_run_code_or_reach_other_files_are_refused(trained, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(trained.weights.read_bytes())
    marker = tmp_path / "code-ran"
    (folder / "config.yaml").write_text(
        f'MODEL: !!python/object/apply:os.system ["touch {marker}"]\n'
    )
    with pytest.raises(ValueError, match="not a plain YAML config"):
        Predictor.from_pretrained(folder, device="cpu")
    assert not marker.exists()
    (folder / "config.yaml").write_text(f"_BASE_: {TINY}\n")
    with pytest.raises(ValueError, match="_BASE_"):
        resolve_pretrained(folder)
