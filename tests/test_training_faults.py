"""Training faults: a non-finite loss stops the run by name; saving is atomic."""

import pytest
import torch
from torch import nn

from maft_plus.checkpoint import MAFTPlusCheckpointer
from maft_plus.config import setup_cfg
from maft_plus.data.datasets import register_synthetic, unregister
from maft_plus.data.synthetic import write_synthetic_dataset

TRAIN_CONFIG = "configs/tiny/maftp_tiny_train.yaml"


@pytest.fixture
def synthetic(tmp_path):
    write_synthetic_dataset(tmp_path / "synthetic", num_train=4, num_val=1, image_size=64)
    names = register_synthetic(tmp_path / "synthetic", prefix="maftp_faults")
    yield names
    unregister(names)


def test_a_non_finite_loss_stops_with_its_name_and_keeps_the_last_checkpoint(synthetic, tmp_path):
    from train_net import Trainer

    output = tmp_path / "run"
    cfg = setup_cfg(
        TRAIN_CONFIG,
        [
            *("DATASETS.TRAIN", "('maftp_faults_sem_seg_train',)", "DATASETS.TEST", "()"),
            *("SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "2"),
            *("OUTPUT_DIR", str(output), "INPUT.MIN_SIZE_TRAIN", "(64,)"),
        ],
    )
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    objective = trainer.model.objective
    forward, calls = objective.forward, []

    def poisoned(*args, **kwargs):
        losses = forward(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:  # iteration 3
            losses["loss_ma"] = losses["loss_ma"] * float("nan")
        return losses

    objective.forward = poisoned
    with pytest.raises(FloatingPointError, match=r"iteration 3: loss_ma=nan"):
        trainer.train()
    assert (output / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (output / "model_0000003.pth").exists()
    saved = torch.load(output / "model_0000001.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    checkpointer = MAFTPlusCheckpointer(model, str(tmp_path))
    checkpointer.save("model_a")
    good = (tmp_path / "model_a.pth").read_bytes()

    def crashing_save(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpointer.save("model_b")
    assert (tmp_path / "model_a.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_a.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_a.pth"]
