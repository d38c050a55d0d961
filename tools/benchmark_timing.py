"""Timers for tools/benchmark.py: calls timed in paired rounds, and inference stage by stage."""

import statistics
import time

import torch

from maft_plus.modeling import MAFTPlus


def seconds(fn, device: torch.device) -> float:
    """Wall time of one call of ``fn`` (CUDA work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def timed(fns: list, device: torch.device, warmup: int, repeats: int) -> list[list[float]]:
    """Seconds of each of ``fns`` in each of ``repeats`` rounds after ``warmup`` rounds.

    A round calls every function once, so that drifts of the machine's speed (other load, clock
    changes) reach all of them alike within a round: compare them round by round
    (`paired_ratio`).

    Returns:
        One list of ``repeats`` seconds per function, in round order.
    """
    times = [[] for _ in fns]
    for i in range(warmup + repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            elapsed = seconds(fn, device)
            if i >= warmup:
                fn_times.append(elapsed)
    return times


def paired_ratio(numerators: list[float], denominators: list[float]) -> tuple[float, list[float]]:
    """The median over rounds of each round's ratio, and those ratios.

    Unlike the ratio of the two medians, a drift of the machine's speed between rounds (which
    scales both times of a round alike) does not move it.
    """
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return statistics.median(ratios), ratios


# Stages of one inference call, timed by forward hooks (modules) and wrappers (methods).
STAGE_MODULES = {
    "clip_v_trunk": lambda model: model.backbone,
    "pixel_decoder": lambda model: model.sem_seg_head.pixel_decoder,
    "transformer_decoder": lambda model: model.sem_seg_head.predictor,
}
STAGE_METHODS = ("predict", "postprocess")


def stage_times(model: MAFTPlus, inputs: list[dict], device: torch.device, repeats: int) -> dict:
    """Median ms per stage of ``model(inputs)`` over ``repeats`` calls (after the timed rounds).

    Returns ``clip_v_trunk``, ``pixel_decoder``, ``transformer_decoder``, ``clip_heads`` (the
    rest of ``predict``: mask pooling on CLIP features, CDT, the CLIP classifier),
    ``postprocess`` and ``preprocess`` (the rest of the call: normalization, padding, casts).
    """
    spans: dict[str, float] = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def start(name: str) -> None:
        sync()
        spans[name] = spans.get(name, 0.0) - time.perf_counter()

    def stop(name: str) -> None:
        sync()
        spans[name] += time.perf_counter()

    handles = []
    for name, get in STAGE_MODULES.items():
        module = get(model)
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: start(n)))
        handles.append(module.register_forward_hook(lambda *_, n=name: stop(n)))
    for name in STAGE_METHODS:
        method = getattr(model, name)

        def wrapped(*args, _method=method, _name=name, **kwargs):
            start(_name)
            result = _method(*args, **kwargs)
            stop(_name)
            return result

        setattr(model, name, wrapped)  # an instance attribute, deleted below
    rounds = []
    try:
        for _ in range(repeats):
            spans.clear()
            total = seconds(lambda: model(inputs), device)
            clip_heads = spans["predict"] - sum(spans[name] for name in STAGE_MODULES)
            rest = total - spans["predict"] - spans["postprocess"]
            rounds.append(
                {
                    **{name: spans[name] for name in STAGE_MODULES},
                    "clip_heads": clip_heads,
                    "postprocess": spans["postprocess"],
                    "preprocess": rest,
                }
            )
    finally:
        for handle in handles:
            handle.remove()
        for name in STAGE_METHODS:
            delattr(model, name)
    return {name: statistics.median(r[name] for r in rounds) * 1e3 for name in rounds[0]}
