"""Train or evaluate MAFT+ with detectron2's trainer: one or many GPUs (or CPU processes).

    python train_net.py --config-file configs/tiny/maftp_tiny_train.yaml
    python train_net.py --config-file CFG --num-gpus 8 [KEY VALUE ...]
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS weights/maftp_l.pth
    python train_net.py --config-file CFG --eval-only --resume ...   # continue an evaluation
    python train_net.py --config-file CFG --resume        # continue from OUTPUT_DIR/last_checkpoint
    python train_net.py --config-file CFG --num-gpus 8 --dist-timeout-s 600   # stuck-peer bound
    torchrun --nproc_per_node 8 train_net.py --config-file CFG    # one run of 8 processes
    sbatch --nodes 2 scripts/slurm_train.sh --config-file CFG      # torchrun on every node

The model is MAFTPlus (maft_plus/modeling/meta_arch.py); this file only wires data, optimizer,
schedule, checkpoints and evaluation into detectron2's DefaultTrainer.
"""

import argparse
import logging
import os
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
from detectron2.data import MetadataCatalog, build_detection_train_loader
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
    default_argument_parser,
    default_setup,
)
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from maft_plus.allocator import retain_freed_memory
from maft_plus.checkpoint import MAFTPlusCheckpointer
from maft_plus.config import setup_cfg
from maft_plus.data.dataset_mappers import PanopticTrainMapper, SemanticTrainMapper
from maft_plus.data.datasets import check_registered, register_builtin_datasets
from maft_plus.data.datasets.register_folder import register_folder_datasets
from maft_plus.data.skipped_samples import SkipCountingLoader, SkipLimit
from maft_plus.data.vocabulary.datasets import dataset_vocabulary
from maft_plus.evaluation.loop import (
    RESUME_FOLDER,
    SKIPPED_REPORT,
    build_evaluator,
    evaluate_datasets,
)
from maft_plus.launch import launch_run
from maft_plus.modeling import MAFTPlus
from maft_plus.solver import build_lr_scheduler, build_optimizer

logger = logging.getLogger("maft_plus")


class FiniteLossCheck:
    """Stop at the first non-finite loss term, naming it and the iteration.

    The check runs after backward and before the optimizer step (detectron2 writes metrics
    there), so the weights are never updated with it and the last checkpoint stays the last good
    one.
    """

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        bad = {k: float(v.detach()) for k, v in loss_dict.items() if not torch.isfinite(v).all()}
        if bad:
            terms = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise FloatingPointError(
                f"non-finite loss at iteration {self.iter}: {terms}; training stopped before the "
                "optimizer step, so the last saved checkpoint is the last good state"
            )
        super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)


class CheckedSimpleTrainer(FiniteLossCheck, SimpleTrainer):
    pass


class CheckedAMPTrainer(FiniteLossCheck, AMPTrainer):
    pass


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer with MAFT+'s model, data, optimizer and checkpointer."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__, except that DDP gets device_ids only on GPUs (so that CPU
        # processes can train with gloo), a non-finite loss stops the step, the skipped samples
        # are counted (SkipCountingLoader) and checkpoints go through MAFTPlusCheckpointer:
        # docs/design.md, section 7, says why it is written out.
        TrainerBase.__init__(self)
        if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
            raise ValueError(
                f"SOLVER.AMP.ENABLED needs CUDA, but MODEL.DEVICE is {cfg.MODEL.DEVICE!r}; "
                "add SOLVER.AMP.ENABLED False to train without mixed precision"
            )
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = SkipCountingLoader(
            self.build_train_loader(cfg), limit=SkipLimit.from_config(cfg)
        )
        model = create_ddp_model(  # the model itself in a single process
            model,
            broadcast_buffers=False,
            device_ids=[comm.get_local_rank()] if next(model.parameters()).is_cuda else None,
            find_unused_parameters=model.objective.ma_weight == 0,  # the CDT then idles
        )
        trainer_class = CheckedAMPTrainer if cfg.SOLVER.AMP.ENABLED else CheckedSimpleTrainer
        self._trainer = trainer_class(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = MAFTPlusCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_model(cls, cfg):
        model = MAFTPlus(cfg, training=True).to(torch.device(cfg.MODEL.DEVICE))
        vocabulary, _ = dataset_vocabulary(
            cfg.DATASETS.TRAIN[0], class_names=cfg.MODEL.MAFT_PLUS.CLASS_NAMES
        )
        model.set_vocabulary(vocabulary)
        logger.info("training vocabulary: %d classes", model.vocabulary.num_classes)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        evaluator_type = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).evaluator_type
        if evaluator_type == "sem_seg":
            mapper = SemanticTrainMapper(cfg, is_train=True)
        elif evaluator_type == "coco_panoptic_seg":
            mapper = PanopticTrainMapper(cfg, is_train=True)
        else:
            raise ValueError(
                f"training set {cfg.DATASETS.TRAIN[0]!r} has evaluator_type {evaluator_type!r}; "
                "MAFT+ trains on semantic ('sem_seg') or panoptic ('coco_panoptic_seg') data"
            )
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        tests = cfg.MODEL.MAFT_PLUS.TEST
        return build_evaluator(
            dataset_name,
            semantic_on=tests.SEMANTIC_ON,
            panoptic_on=tests.PANOPTIC_ON,
            output_dir=output_folder,
        )

    @classmethod
    def test(cls, cfg, model, evaluators=None, *, strict: bool = False, resume: bool | None = None):
        """Evaluate on every DATASETS.TEST set, each with its own vocabulary; the images skipped
        (unreadable or mismatched files) are listed in OUTPUT_DIR/inference/skipped_files.json.

        A test set with no usable image is an error with ``strict`` (``--eval-only``); during
        training (detectron2's EvalHook calls this without it) it is logged and training goes
        on, so that the iterations since the last checkpoint are not lost.

        ``resume`` True or False (``--eval-only``): progress is saved in
        OUTPUT_DIR/inference/resume, and True continues an interrupted evaluation from it (see
        maft_plus/evaluation/resume.py); None (during training): nothing is saved.
        """
        inference = os.path.join(cfg.OUTPUT_DIR, "inference")
        return evaluate_datasets(
            cfg,
            model,
            cfg.DATASETS.TEST,
            skipped_report=os.path.join(inference, SKIPPED_REPORT),
            strict=strict,
            resume_dir=None if resume is None else os.path.join(inference, RESUME_FOLDER),
            resume=bool(resume),
        )


def setup(args):
    cfg = setup_cfg(args.config_file, args.opts)
    default_setup(cfg, args)  # sets up detectron2's and fvcore's loggers; ours too:
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="maft_plus")
    register_builtin_datasets()
    register_folder_datasets(cfg.DATASETS.FOLDERS)
    check_registered([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST])
    return cfg


def main(args):
    retain_freed_memory()  # every process of the run: activations reuse freed pages
    cfg = setup(args)
    if args.eval_only:
        model = MAFTPlus(cfg).to(torch.device(cfg.MODEL.DEVICE)).eval()
        checkpointer = MAFTPlusCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model, strict=True, resume=args.resume)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def argument_parser() -> argparse.ArgumentParser:
    """detectron2's arguments, plus ``--dist-timeout-s``."""
    parser = default_argument_parser()
    parser.add_argument(
        "--dist-timeout-s",
        type=float,
        default=DEFAULT_TIMEOUT.total_seconds(),
        help="seconds a collective waits for a process that neither answers nor dies (stuck, or "
        "lost on another machine) before the run fails; the process-group timeout under "
        "--num-gpus and torchrun alike (default: detectron2's, 30 minutes)",
    )
    return parser


def launch_main(args: argparse.Namespace, *, main_function: Callable[..., Any] = main) -> Any:
    """Run ``main_function(args)`` in every process of the run that ``args`` ask for (the
    launcher's own process under ``--num-gpus``, torchrun's processes under torchrun).

    Raises:
        LostProcessError: under ``--num-gpus``, a process died; the message names its rank.
    """
    if args.dist_timeout_s <= 0:
        raise ValueError(f"--dist-timeout-s is {args.dist_timeout_s}; expected seconds > 0")
    return launch_run(  # --num-gpus N spawns N processes; under torchrun, torchrun's are one run
        main_function,
        args,
        num_gpus=args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        timeout=timedelta(seconds=args.dist_timeout_s),
    )


if __name__ == "__main__":
    launch_main(argument_parser().parse_args())
