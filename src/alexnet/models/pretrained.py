"""A net started from pretrained weights: torchvision's ImageNet weights by name (``model.weights=IMAGENET1K_V1``)
or a state_dict file, also into a net with another number of classes.

``alexnet(**settings)`` is what the model configs build (their ``_target_``): ``AlexNet`` itself (torch only, in
``alexnet.py``) loads a file strictly; here a name goes through torchvision's weights API
(``torchvision.models.AlexNet_Weights``: downloaded once into torch's hub cache), and when only the last layer
differs (``model.num_classes`` is not the file's) every other layer loads and the last keeps its fresh
initialisation, with one log line saying which is which.
"""

from __future__ import annotations

import logging
import os
import urllib.error
from pathlib import Path
from typing import Any

import torch

from alexnet.config.resolvers import torchvision_weights_name
from alexnet.errors import UserError
from alexnet.models.alexnet import AlexNet, ArchitectureError, read_weights_file

log = logging.getLogger(__name__)


def alexnet(weights: str | None = None, **settings: Any) -> AlexNet:
    """``AlexNet(**settings)`` started from ``weights``: None, a torchvision weights name or a state_dict file."""
    net = AlexNet(**settings)
    if weights is not None:
        load_pretrained(net, weights)
    return net


def torchvision_state(name: str) -> dict[str, torch.Tensor]:
    """torchvision's weights ``name``: from the hub cache, or downloaded into it; offline, a message naming the file
    and the folder it belongs in."""
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights[name]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = folder / os.path.basename(weights.url)
    try:
        # weights_only: a file in the cache is read as safely as model.weights=<file> (no code runs).
        return weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        if file.is_file():  # present but unreadable or with the wrong hash
            raise UserError(f"model.weights={name}: {file} cannot be read ({error}); delete it and retry.") from error
        raise UserError(
            f"model.weights={name}: cannot download {weights.url} ({getattr(error, 'reason', error)}); put "
            f"{file.name} into {folder} (torch's hub cache, TORCH_HOME) or pass model.weights=/path/{file.name}."
        ) from error


def read_state(path: str) -> dict[str, torch.Tensor]:
    """A state_dict file (or a Lightning checkpoint's net), read safely."""
    state = read_weights_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArchitectureError(f"model.weights={path}: not a state_dict (a mapping of names to tensors).")
    return state


def layer_of(key: str) -> str:
    """``classifier.6.weight`` -> ``classifier.6``."""
    return key.rsplit(".", 1)[0]


def load_pretrained(net: AlexNet, weights: str) -> None:
    """Load ``weights`` into ``net``: all of it, or every layer but the last when only the last differs."""
    name = torchvision_weights_name(weights)
    state = torchvision_state(name) if name else read_state(weights)
    ours = net.state_dict()
    fits = {k for k, v in state.items() if k in ours and ours[k].shape == v.shape}
    if not fits:
        raise ArchitectureError(
            f"model.weights={weights} fits no layer of this net (no tensor with a name and shape of this net's); "
            "use the model variant it was saved from, e.g. model=torchvision for torchvision's weights."
        )
    if fits == set(ours) == set(state):
        net.load_state_dict(state)
        return
    last = layer_of(next(reversed(ours)))  # the classifier's output layer
    differ = sorted({layer_of(k) for k in (set(ours) | set(state)) - fits})
    if differ != [last]:
        mismatch = next(k for k in [*ours, *state] if k not in fits)
        there = tuple(state[mismatch].shape) if mismatch in state else "absent"
        here = tuple(ours[mismatch].shape) if mismatch in ours else "absent"
        raise ArchitectureError(
            f"model.weights={weights} does not fit this net (use the model variant it was saved from, e.g. "
            f"model=torchvision for torchvision's weights): {mismatch} is {there} there and {here} here; layers that "
            f"differ: {', '.join(differ[:6])}. Only the last layer ({last}) may differ (model.num_classes)."
        )
    net.load_state_dict({k: state[k] for k in fits}, strict=False)
    loaded = sorted({layer_of(k) for k in fits}, key=list(dict.fromkeys(map(layer_of, ours))).index)
    outputs = state.get(f"{last}.weight", torch.empty(0)).shape[:1]
    log.info(
        "model.weights=%s: loaded %s; initialised %s anew (%d classes here, %s in the weights).",
        weights, ", ".join(loaded), last, net.num_classes, outputs[0] if outputs else "?",
    )  # fmt: skip
