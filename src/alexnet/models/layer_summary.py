"""The table ``alexnet-summary`` prints: each layer's output shape and parameters, the parameter and neuron totals."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from alexnet.models.alexnet import AlexNet

NEURON_LAYERS = (nn.Conv2d, nn.Linear)  # the paper counts the units of conv and fully-connected layers


@dataclass
class LayerRow:
    name: str
    layer: str
    shape: tuple[int, ...]
    params: int


def layer_rows(model: AlexNet) -> list[LayerRow]:
    """Run one image through ``model`` and record every layer's output shape and parameter count."""
    rows: list[LayerRow] = []
    hooks = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            params = sum(p.numel() for p in module.parameters())

            def record(module: nn.Module, _: tuple, output: torch.Tensor, name: str = name, params: int = params):
                rows.append(LayerRow(name, repr(module), tuple(output.shape[1:]), params))

            hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.in_channels, model.input_size, model.input_size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return rows


def neuron_count(model: AlexNet) -> int:
    return _neurons(model, layer_rows(model))


def _neurons(model: AlexNet, rows: list[LayerRow]) -> int:
    layers = dict(model.named_modules())
    return sum(_numel(row.shape) for row in rows if isinstance(layers[row.name], NEURON_LAYERS))


def _numel(shape: tuple[int, ...]) -> int:
    return int(torch.Size(shape).numel())


def format_summary(model: AlexNet) -> str:
    rows = layer_rows(model)
    width = max(len(r.layer) for r in rows)
    lines = [
        f"input: {model.in_channels}x{model.input_size}x{model.input_size} (conv1 padding {model.conv1_padding})",
        f"{'layer':<14} {'module':<{width}}  {'output':>14}  {'params':>12}",
    ]
    for r in rows:
        lines.append(f"{r.name:<14} {r.layer:<{width}}  {'x'.join(map(str, r.shape)):>14}  {r.params:>12,}")
    params = sum(p.numel() for p in model.parameters())
    neurons = _neurons(model, rows)
    lines += [f"parameters: {params:,}", f"neurons: {neurons:,} (outputs of the conv and fully-connected layers)"]
    return "\n".join(lines)
