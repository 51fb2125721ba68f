"""Linear layers that multiply few-row inputs as `(W @ x.T).T` on CPU: twice the speed of `F.linear` when decoding.

A decoding step multiplies a handful of rows (one per sequence) by every weight matrix of the model. On CPU that is
bound by reading the weights from memory, and the BLAS kernel behind `F.linear(x, W)` (`x @ W.T`) reads them at
about half the rate of the same product written `W @ x.T` (MKL here, SmolLM2-135M's shapes, 2 to 64 rows:
bench/eval_speed.py; one row is the same either way). `skinny_linear(model)` makes the model's plain `nn.Linear`
layers take that route for inputs of at most `MAX_ROWS` rows while no gradient is recorded, for the duration of a
block; everything else (training passes, long prefills, CUDA) goes through `F.linear` unchanged. The products
differ from `F.linear`'s only in float summation order.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["MAX_ROWS", "skinny_linear"]

MAX_ROWS = 64  # beyond this many rows F.linear's kernel is as fast (a prefill's block)


@contextlib.contextmanager
def skinny_linear(model: Any) -> Iterator[int]:
    """Within the block, `model`'s CPU `nn.Linear` layers multiply few-row inputs as `W @ x.T` (yields how many).

    Layers whose `forward` is already replaced on the instance (offloading hooks, adapters) are left alone.
    """
    patched = []
    if isinstance(model, torch.nn.Module):
        for module in model.modules():
            if type(module) is torch.nn.Linear and "forward" not in vars(module) and module.weight.device.type == "cpu":
                module.forward = functools.partial(_forward, module)  # type: ignore[method-assign]
                patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward


def _forward(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    features = x.shape[-1]
    rows = x.numel() // features if features else 0
    if not 1 < rows <= MAX_ROWS or torch.is_grad_enabled() or x.device.type != "cpu":
        return torch.nn.functional.linear(x, module.weight, module.bias)
    product = torch.mm(module.weight, x.reshape(rows, features).t()).t()
    if module.bias is not None:
        product = product + module.bias
    return product.reshape(*x.shape[:-1], module.weight.shape[0]).contiguous()
