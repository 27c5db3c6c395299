"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) and its common variants, in plain torch.

One class covers the paper's two-tower net, torchvision's single-tower net and d2l's Fashion-MNIST net;
the variants differ only in keyword arguments (see ``conf/model/``). Layer names follow torchvision's
``features`` / ``avgpool`` / ``classifier`` split, so a torchvision ``alexnet()`` state_dict loads by name
into the torchvision variant.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CONV1_KERNEL, CONV1_STRIDE = 11, 4
PAPER_CONV1_SIZE = 55  # the paper's conv1 maps are 55x55
ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}
INITS = ("paper", "default", "xavier")
DROPOUT_POSITIONS = ("before", "after")


class ArchitectureError(ValueError):
    """An argument that cannot build a working AlexNet; the message names the argument and the fix."""

    user_error = True  # alexnet.errors reports it in one line, like its own UserError


class TowerLocalResponseNorm(nn.LocalResponseNorm):
    """Local response normalisation inside each tower: the channels split into ``towers`` equal blocks and a
    channel's window never reaches into another block, as on the paper's two GPUs (each normalised only its
    own 48, then 128, kernel maps).

    Written by hand because torch's LocalResponseNorm has no notion of groups; folding the towers into the
    batch dimension runs torch's own kernel once, so the result is exactly its formula per tower. No
    parameters: state_dicts are the same as with ``nn.LocalResponseNorm``.
    """

    def __init__(self, size: int, alpha: float, beta: float, k: float, towers: int) -> None:
        super().__init__(size, alpha=alpha, beta=beta, k=k)
        self.towers = towers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *rest = x.shape
        per_tower = x.reshape(n * self.towers, c // self.towers, *rest)
        return F.local_response_norm(per_tower, self.size, self.alpha, self.beta, self.k).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, towers={self.towers}"


def conv1_output_size(input_size: int, padding: int) -> int:
    return (input_size + 2 * padding - CONV1_KERNEL) // CONV1_STRIDE + 1


def paper_conv1_padding(input_size: int) -> int:
    """Smallest padding (at most 2, torchvision's) that brings conv1 to the paper's 55x55: 2 at 224, 0 at 227."""
    for padding in range(3):
        if conv1_output_size(input_size, padding) >= PAPER_CONV1_SIZE:
            return padding
    return 2


def feature_map_sizes(input_size: int, conv1_padding: int, pool_kernel: int) -> list[int]:
    """Side length after conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool3 (0 where the map vanishes)."""

    def pool(size: int) -> int:
        return (size - pool_kernel) // 2 + 1 if size >= pool_kernel else 0

    conv1 = max(conv1_output_size(input_size, conv1_padding), 0)
    pool1 = pool(conv1)
    pool2 = pool(pool1)  # conv2..conv5 keep the size (padding k // 2)
    return [conv1, pool1, pool1, pool2, pool2, pool2, pool2, pool(pool2)]


class AlexNet(nn.Module):
    """AlexNet with the paper's ablations as arguments.

    Args:
        channels: output channels of conv1..conv5 (paper 96-256-384-384-256, torchvision 64-192-384-256-256).
        in_channels: image channels (3 for RGB, 1 for Fashion-MNIST's d2l net).
        num_classes: width of the last layer.
        input_size: side of the square input; the classifier width follows from it.
        conv1_padding: padding of conv1; ``None`` picks the one that keeps conv1 at 55x55 (2 at 224, 0 at 227).
        groups: groups of conv2, conv4 and conv5 (2 is the paper's two-GPU split; conv1 and conv3 are never
            grouped because conv3 is where the towers meet).
        lrn: local response normalisation after the ReLU of conv1 and conv2, before pooling (paper order).
        lrn_across_towers: with ``groups>1``, one LRN window slides over all channels, so channels at a tower's
            edge are normalised with the other tower's maps; ``False`` (the paper) normalises each tower alone.
        lrn_size, lrn_alpha, lrn_beta, lrn_k: LRN constants in the *paper's* formula
            ``b = a / (k + alpha * sum_window a^2) ** beta``; torch's LocalResponseNorm divides alpha by the
            window size, so ``alpha * size`` is handed to it. (Krizhevsky's cuda-convnet code divided by the
            window too: its ``1e-4`` equals ``lrn_alpha=2e-5`` here.)
        overlapping_pool: max-pool kernel 3 stride 2 (paper) instead of kernel 2 stride 2.
        activation: ``relu`` or ``tanh`` (the paper's ReLU-vs-tanh comparison).
        hidden_size: width of FC6 and FC7.
        dropout: dropout probability on the hidden FC layers (0 disables it).
        dropout_position: ``after`` FC6/FC7's ReLU (paper, d2l) or ``before`` FC6/FC7 (torchvision).
        adaptive_pool: output size of an adaptive average pool before the classifier (torchvision uses 6);
            ``None`` flattens the conv5 maps as the paper does.
        init: ``paper`` (weights N(0, init_std); biases ``init_bias`` in conv2, conv4, conv5, FC6, FC7 and 0
            elsewhere), ``xavier`` (d2l's xavier-uniform weights) or ``default`` (PyTorch's).
        weights: path of a state_dict to start from (e.g. torchvision's published ``alexnet-owt-*.pth``),
            loaded safely (``weights_only=True``) and strictly by name.
        channels_last: keep conv weights and inputs in NHWC memory order (faster convolutions on tensor-core
            GPUs and oneDNN CPUs); the state_dict keys and values are unchanged.
        compile: ``torch.compile`` the net in place (``nn.Module.compile``), so checkpoint keys stay clean.
    """

    def __init__(
        self,
        channels: Sequence[int] = (96, 256, 384, 384, 256),
        in_channels: int = 3,
        num_classes: int = 1000,
        input_size: int = 227,
        conv1_padding: int | None = None,
        groups: int = 2,
        lrn: bool = True,
        lrn_across_towers: bool = False,
        lrn_size: int = 5,
        lrn_alpha: float = 1e-4,
        lrn_beta: float = 0.75,
        lrn_k: float = 2.0,
        overlapping_pool: bool = True,
        activation: str = "relu",
        hidden_size: int = 4096,
        dropout: float = 0.5,
        dropout_position: str = "after",
        adaptive_pool: int | None = None,
        init: str = "paper",
        init_std: float = 0.01,
        init_bias: float = 1.0,
        weights: str | None = None,
        channels_last: bool = False,
        compile: bool = False,  # shadows the builtin: the override users type is model.compile
    ) -> None:
        super().__init__()
        channels = list(channels)
        _check_arguments(locals())
        if conv1_padding is None:
            conv1_padding = paper_conv1_padding(input_size)
        pool_kernel = 3 if overlapping_pool else 2
        sizes = feature_map_sizes(input_size, conv1_padding, pool_kernel)
        if min(sizes) < 1:
            smallest = next(s for s in range(1, 4096) if min(feature_map_sizes(s, conv1_padding, pool_kernel)))
            raise ArchitectureError(
                f"model.input_size={input_size} is too small: the feature maps shrink to nothing before the "
                f"classifier (sides {sizes} after conv1..pool3). This net needs model.input_size>={smallest}."
            )
        flat_features = channels[4] * (sizes[-1] ** 2 if adaptive_pool is None else adaptive_pool**2)
        _check_fits_in_memory(input_size, flat_features * hidden_size)
        self.in_channels, self.input_size, self.conv1_padding = in_channels, input_size, conv1_padding
        self.num_classes, self.channels_last = num_classes, channels_last

        def activation_layer() -> nn.Module:
            return ACTIVATIONS[activation]()

        def lrn_layers() -> list[nn.Module]:
            if not lrn:
                return []
            if groups > 1 and not lrn_across_towers:
                return [TowerLocalResponseNorm(lrn_size, lrn_alpha * lrn_size, lrn_beta, lrn_k, towers=groups)]
            return [nn.LocalResponseNorm(lrn_size, alpha=lrn_alpha * lrn_size, beta=lrn_beta, k=lrn_k)]

        def pool_layer() -> nn.Module:
            return nn.MaxPool2d(kernel_size=pool_kernel, stride=2)

        c1, c2, c3, c4, c5 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, CONV1_KERNEL, stride=CONV1_STRIDE, padding=conv1_padding),
            activation_layer(),
            *lrn_layers(),
            pool_layer(),
            nn.Conv2d(c1, c2, 5, padding=2, groups=groups),
            activation_layer(),
            *lrn_layers(),
            pool_layer(),
            nn.Conv2d(c2, c3, 3, padding=1),
            activation_layer(),
            nn.Conv2d(c3, c4, 3, padding=1, groups=groups),
            activation_layer(),
            nn.Conv2d(c4, c5, 3, padding=1, groups=groups),
            activation_layer(),
            pool_layer(),
        )
        if adaptive_pool is None:
            self.avgpool: nn.Module = nn.Identity()
            flat = c5 * sizes[-1] ** 2
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((adaptive_pool, adaptive_pool))
            flat = c5 * adaptive_pool**2
        fc6, fc7 = nn.Linear(flat, hidden_size), nn.Linear(hidden_size, hidden_size)
        fc8 = nn.Linear(hidden_size, num_classes)
        if dropout_position == "before":
            hidden = [nn.Dropout(dropout), fc6, activation_layer(), nn.Dropout(dropout), fc7, activation_layer()]
        else:
            hidden = [fc6, activation_layer(), nn.Dropout(dropout), fc7, activation_layer(), nn.Dropout(dropout)]
        self.classifier = nn.Sequential(*hidden, fc8)
        self._initialise(init, init_std, init_bias)
        if weights is not None:
            self.load_weights(weights)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        if compile:
            self.compile()

    def load_weights(self, path: str) -> None:
        """Load a state_dict file; any mismatch names the keys or shapes that differ."""
        state = read_weights_file(path)
        try:
            self.load_state_dict(state)
        except RuntimeError as error:
            raise ArchitectureError(
                f"model.weights={path} does not fit this net (use the model variant it was saved from, e.g. "
                f"model=torchvision for torchvision's weights): {str(error).splitlines()[1].strip()}"
            ) from error

    def _initialise(self, init: str, std: float, bias: float) -> None:
        if init == "default":
            return
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for layer in convs + linears:
            if init == "xavier":
                nn.init.xavier_uniform_(layer.weight)
                continue
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            nn.init.zeros_(layer.bias)
        if init == "paper":
            for layer in (convs[1], convs[3], convs[4], linears[0], linears[1]):
                nn.init.constant_(layer.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.last_hidden(x))

    def last_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (FC7 after its ReLU; 4096 values in the paper), the features
        whose Euclidean distances the paper's Figure 4 uses to find similar images."""
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ArchitectureError(
                f"AlexNet expects a batch of shape (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}; "
                "set model.input_size / model.in_channels to match the data."
            )
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.avgpool(self.features(x))
        return self.classifier[:-1](torch.flatten(x, 1))

    def forward_flops(self) -> int:
        """Floating-point operations of one image's forward pass (a multiply-add counts 2).

        Computed from the layer shapes rather than by tracing, so it is free and exact for every variant;
        training costs about three times this (backward = 2x forward).
        """
        flops, side = 0, self.input_size
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                side = (side + 2 * layer.padding[0] - layer.kernel_size[0]) // layer.stride[0] + 1
                per_output = 2 * (layer.in_channels // layer.groups) * layer.kernel_size[0] * layer.kernel_size[1]
                flops += per_output * layer.out_channels * side * side
            elif isinstance(layer, nn.MaxPool2d):
                side = (side - layer.kernel_size) // layer.stride + 1
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        return flops + sum(2 * m.in_features * m.out_features for m in linears)


def read_weights_file(path: str) -> object:
    """What a weights file holds, read with ``weights_only=True``: a state_dict, or a Lightning checkpoint's net."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise ArchitectureError(f"model.weights={path}: no such file.") from error
    except Exception as error:  # pickle, zip and unpickling-policy errors all mean "not a plain state_dict"
        raise ArchitectureError(f"model.weights={path}: not a readable state_dict ({error}).") from error
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint: take its net's weights
        state = net_weights(state["state_dict"])
    return state


def net_weights(lightning_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The net's own state_dict inside a LitAlexNet checkpoint's (whose keys are prefixed ``net.``)."""
    return {k.removeprefix("net."): v for k, v in lightning_state_dict.items() if k.startswith("net.")}


def log_mean_softmax(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """The log of the mean over ``dim`` of the softmax of ``logits``: how the paper combines the predictions of
    several crops (10-crop test) or several nets (ensembles). Cross-entropy of it stays comparable to one
    prediction's. Computed in log space, so a confident class never underflows to -inf."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return torch.logsumexp(log_probs, dim=dim) - math.log(logits.shape[dim])


class Ensemble(nn.Module):
    """Several nets voting by averaged softmax (the paper's 5- and 7-CNN ensembles); returns log-probabilities."""

    def __init__(self, nets: Sequence[AlexNet]) -> None:
        super().__init__()
        if len({(n.in_channels, n.input_size, n.num_classes) for n in nets}) != 1:
            raise ArchitectureError("An ensemble needs nets of the same input size, channels and classes.")
        self.nets = nn.ModuleList(nets)
        self.in_channels, self.input_size = nets[0].in_channels, nets[0].input_size
        self.num_classes = nets[0].num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return log_mean_softmax(torch.stack([net(x) for net in self.nets]), dim=0)


def physical_memory() -> int | None:
    """Bytes of RAM this machine has, where the OS says (POSIX); None elsewhere."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_fits_in_memory(input_size: int, fc6_weights: int) -> None:
    """Refuse, before allocating it, an FC6 whose float32 weights alone exceed the machine's memory: its input width
    grows with the square of the input size (model.input_size=100000 would ask for about 40 TB)."""
    memory, needed = physical_memory(), 4 * fc6_weights
    if memory is not None and needed > memory:
        raise ArchitectureError(
            f"model.input_size={input_size} makes FC6 {fc6_weights:,} weights ({needed / 2**30:,.0f} GiB as float32), "
            f"more than this machine's {memory / 2**30:,.0f} GiB of memory: the classifier's input grows with the "
            "square of the input size. Use a smaller model.input_size (227 in the paper), or model.adaptive_pool=6."
        )


def _check_arguments(args: dict) -> None:
    """Reject arguments a user can get wrong from the command line, with the override that fixes each."""

    def fail(name: str, problem: str) -> None:
        raise ArchitectureError(f"model.{name}={args[name]!r}: {problem}")

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    channels = args["channels"]
    if len(channels) != 5 or not all(is_int(c) and c > 0 for c in channels):
        fail("channels", "give five positive integers, the output channels of conv1..conv5.")
    for name in ("in_channels", "num_classes", "input_size", "hidden_size", "lrn_size"):
        if not is_int(args[name]) or args[name] < 1:
            fail(name, "must be a positive integer.")
    for name in ("lrn", "lrn_across_towers", "overlapping_pool", "channels_last", "compile"):
        if not isinstance(args[name], bool):
            fail(name, "must be true or false.")
    if args["conv1_padding"] is not None and (not is_int(args["conv1_padding"]) or args["conv1_padding"] < 0):
        fail("conv1_padding", "must be null (keep conv1 at 55x55) or a non-negative integer.")
    if args["adaptive_pool"] is not None and (not is_int(args["adaptive_pool"]) or args["adaptive_pool"] < 1):
        fail("adaptive_pool", "must be null (flatten conv5) or a positive integer such as 6.")
    groups = args["groups"]
    if not is_int(groups) or groups < 1:
        fail("groups", "must be a positive integer: 1 (one tower) or 2 (the paper's two-GPU split).")
    pairs = {"conv2": channels[0:2], "conv4": channels[2:4], "conv5": channels[3:5]}
    for conv, (c_in, c_out) in pairs.items():
        if c_in % groups or c_out % groups:
            fail(
                "groups",
                f"{conv} has {c_in} input and {c_out} output channels, which {groups} groups cannot split "
                "evenly. Use model.groups=1 (one tower) or model.groups=2 (the paper's two-GPU split).",
            )
    if not isinstance(args["dropout"], int | float) or not 0 <= args["dropout"] < 1:
        fail("dropout", "must be a probability in [0, 1).")

    def is_number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

    for name in ("lrn_alpha", "lrn_beta", "lrn_k"):
        if not is_number(args[name]) or args[name] < 0:
            fail(name, "must be a finite number >= 0.")
    if not is_number(args["init_std"]) or args["init_std"] <= 0:
        fail("init_std", "must be a finite number > 0.")
    if not is_number(args["init_bias"]):
        fail("init_bias", "must be a finite number.")
    for name, allowed in (
        ("activation", tuple(ACTIVATIONS)),
        ("init", INITS),
        ("dropout_position", DROPOUT_POSITIONS),
    ):
        if args[name] not in allowed:
            fail(name, f"choose one of {', '.join(allowed)}.")
