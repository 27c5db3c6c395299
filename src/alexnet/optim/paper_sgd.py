"""The 2012 paper's momentum update, which keeps the learning rate inside the velocity.

Krizhevsky et al. (section 5) update every weight w with

    v <- momentum * v - weight_decay * lr * w - lr * dL/dw
    w <- w + v

``torch.optim.SGD`` stores ``momentum * buf + grad`` (no learning rate) and steps by ``lr * buf``. The two agree
while the rate is constant; after a /10 drop torch rescales the whole remembered velocity at once, so its first
steps are about 10x smaller than the paper's, whose velocity still carries the old rate and decays over ~20 steps
(0.9^20 = 0.12). torch has no option for the paper's form, hence this optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from alexnet.config.rules import check_values


class PaperSGD(torch.optim.Optimizer):
    """SGD with momentum and weight decay exactly as the paper writes them (see the module docstring).

    Args:
        params: parameters or parameter groups, as for any torch optimizer.
        lr: the learning rate epsilon; schedulers change ``param_groups[i]["lr"]`` and the next step uses it.
        momentum: the velocity's decay (the paper: 0.9).
        weight_decay: the paper's 0.0005, multiplied by the learning rate as in its formula.
        decay_biases: apply weight decay to 1-D parameters (biases) too. The paper's formula names only
            "weight w"; Krizhevsky's cuda-convnet decays weights only (its ``wc`` layer setting has no bias
            counterpart), so the default is ``False``.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        decay_biases: bool = False,
    ) -> None:
        check_values(
            {
                "optimizer.lr": lr,
                "optimizer.momentum": momentum,
                "optimizer.weight_decay": weight_decay,
                "optimizer.decay_biases": decay_biases,
            }
        )
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "decay_biases": decay_biases}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                decay = group["weight_decay"] if (group["decay_biases"] or p.dim() > 1) else 0.0
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocity = state["velocity"]
                velocity.mul_(momentum).add_(p.grad, alpha=-lr)
                if decay:
                    velocity.add_(p, alpha=-decay * lr)
                p.add_(velocity)
        return loss
