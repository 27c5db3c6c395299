"""The net as a ``torch.export`` program archive (``.pt2``: the graph as JSON, the weights as raw tensor bytes),
with a dynamic batch dimension; ``torch.export.load`` and ``.module()`` run it without this project's code."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from alexnet.errors import UserError


def write_program(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``module`` (eval mode) traced on ``example``, its first dimension left free."""
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    except Exception as error:
        raise UserError(f"torch.export failed ({type(error).__name__}: {str(error).splitlines()[0][:300]}).") from error
    torch.export.save(program, str(path))
