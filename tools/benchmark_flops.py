"""Matrix-product work for tools/benchmark.py: the ratio inference / trunk at equal product speed.

The products and convolutions of an inference are counted with ``torch.utils.flop_counter``
(elementwise work, sampling and normalisation are not counted). Their ratio to the trunk's is
what the measured time ratio would be if every product ran as fast as the trunk's and nothing
else took time: a floor that no tuning of the memory-bound steps can go below, the same on
every machine.
"""

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def product_gflop(model: torch.nn.Module, fn: Callable[[], object]) -> float:
    """GFLOP (1e9 floating-point operations, a multiply-add counting 2) of the products in fn().

    Runs ``fn`` once under ``no_grad``, outside inference mode, with the model's parameters
    briefly marked as not requiring grad (the counter's module tracker hooks autograd
    otherwise); the flags are restored afterwards.
    """
    flags = [param.requires_grad for param in model.parameters()]
    model.requires_grad_(False)
    try:
        with torch.inference_mode(False), torch.no_grad(), FlopCounterMode(display=False) as count:
            fn()
    finally:
        for param, flag in zip(model.parameters(), flags, strict=True):
            param.requires_grad_(flag)
    return count.get_total_flops() / 1e9
