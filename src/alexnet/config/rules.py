"""The values each setting may take, as one table checked as soon as a command's config is composed, before
anything is built: a wrong value ends in one line naming the setting and what it must be, not in a traceback
minutes (or an epoch) later.

Adding a setting is one line in ``RULES``: ``"group.key": rule``, e.g. ``"data.decode": choice("cpu", "gpu")`` or
``"scheduler.patience": integer(0)``. A rule applies wherever its key exists, so the options of a group share the
rules of the keys they have in common, and an option without the key is not checked (tests/test_configs.py checks
that every rule names a key some config has). Settings that must agree with each other go in ``AGREE``.

Each rule is stated once. The classes the configs build check their arguments against this same table
(``check_values``), so a value refused here is refused there with the same message, also when a class is used
from Python. The net's settings (``model.*``) are the one exception: ``alexnet.models.alexnet.AlexNet`` checks them
itself, because that file imports only torch, and so the table holds no ``model.*`` key (tests/test_configs.py
checks both sides).

Written here rather than with pydantic (installed with W&B): the messages must name the override a user typed
and say what it must be in one line; pydantic reports a union (a count or a fraction) as one error per member.
"""

from __future__ import annotations

import logging
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet.errors import UserError

log = logging.getLogger(__name__)

_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    accepts: Callable[[Any], bool]
    expected: str  # completes "<key>=<value>: must be ..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _bounds(low: float | None, high: float | None, above: float | None, below: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    limits = ((">=", low), (">", above), ("<=", high), ("<", below))
    parts = [f"{sign} {limit}" for sign, limit in limits if limit is not None]
    return " " + " and ".join(parts) if parts else ""


def _within(value: float, low: float | None, high: float | None, above: float | None, below: float | None) -> bool:
    return (
        (low is None or value >= low)
        and (high is None or value <= high)
        and (above is None or value > above)
        and (below is None or value < below)
    )


def _or_null(rule: Rule, null: bool) -> Rule:
    if not null:
        return rule
    return Rule(lambda v: v is None or rule.accepts(v), f"{rule.expected} or null")


def integer(low: int | None = None, high: int | None = None, null: bool = False) -> Rule:
    """An integer (not a bool) in [low, high]."""
    if (low, high) == (1, None):
        text = "a positive integer"
    elif (low, high) == (0, None):
        text = "a non-negative integer"
    else:
        text = "an integer" + _bounds(low, high, None, None)
    return _or_null(Rule(lambda v: _is_int(v) and _within(v, low, high, None, None), text), null)


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
    null: bool = False,
) -> Rule:
    """A finite number (integer or float, not a bool) within the bounds: ``low``/``high`` inclusive,
    ``above``/``below`` exclusive."""
    text = "a finite number" + _bounds(low, high, above, below)
    return _or_null(Rule(lambda v: _is_number(v) and _within(v, low, high, above, below), text), null)


def boolean() -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false")


def choice(*options: Any) -> Rule:
    return Rule(lambda v: any(v == o and type(v) is type(o) for o in options), "one of " + ", ".join(map(str, options)))


def count_or_fraction(low: int = 1) -> Rule:
    """A count of items (an integer >= ``low``) or a fraction of them (a float strictly between 0 and 1)."""
    count = "a positive integer" if low == 1 else "a non-negative integer" if low == 0 else f"an integer >= {low}"
    return Rule(
        lambda v: (_is_int(v) and v >= low) or (isinstance(v, float) and 0 < v < 1),
        f"a count ({count}) or a fraction between 0 and 1, e.g. 5000 or 0.1",
    )


def batches() -> Rule:
    """Lightning's ``limit_*_batches``: null (all), a number of batches, or a fraction in [0, 1]."""
    return Rule(
        lambda v: v is None or (_is_int(v) and v >= 0) or (isinstance(v, float) and 0 <= v <= 1),
        "null (all batches), a number of batches or a fraction between 0 and 1",
    )


def numbers(lengths: tuple[int, ...] = (1, 3), above: float | None = None) -> Rule:
    """A list of finite numbers, one per image channel."""
    text = f"a list of {' or '.join(map(str, lengths))} finite numbers" + (f" > {above}" if above is not None else "")
    return Rule(
        lambda v: (
            isinstance(v, list | tuple)
            and len(v) in lengths
            and all(_is_number(x) and (above is None or x > above) for x in v)
        ),
        text,
    )


def files() -> Rule:
    """null, a path, or a non-empty list of paths."""
    return Rule(
        lambda v: (
            v is None
            or (isinstance(v, str) and v != "")
            or (isinstance(v, list) and len(v) > 0 and all(isinstance(p, str) and p for p in v))
        ),
        "a checkpoint file, or a non-empty list of them for an ensemble (ckpt_path=[a.ckpt,b.ckpt])",
    )


SEED = integer(0, 2**32 - 1)  # NumPy's seed range, which Lightning's seed_everything enforces


def precision() -> Rule:
    """One of the precisions Lightning's Trainer accepts (its own list)."""
    from lightning.fabric.connector import _PRECISION_INPUT_INT, _PRECISION_INPUT_STR

    allowed = (*typing.get_args(_PRECISION_INPUT_STR), *map(str, typing.get_args(_PRECISION_INPUT_INT)), "bf16")
    return Rule(lambda v: str(v) in allowed, "one of " + ", ".join(allowed))


def _accelerators_here() -> list[str]:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    found = sorted(name for name in AcceleratorRegistry.available_accelerators()
                   if AcceleratorRegistry[name]["accelerator"].is_available())  # fmt: skip
    return [*found, "gpu"] if {"cuda", "mps"} & set(found) else found


def accelerator() -> Rule:
    """``auto``, or an accelerator Lightning knows that this machine has (``gpu``: CUDA or Apple's MPS)."""
    here = _accelerators_here()
    return Rule(lambda v: v == "auto" or v in here, f"auto or an accelerator this machine has ({', '.join(here)})")


RULES: dict[str, Rule] = {
    # top-level settings of train.yaml, eval.yaml, predict.yaml
    "seed": _or_null(SEED, null=True),
    "test": boolean(),
    "top_k": integer(1),
    "ckpt_path": files(),
    "test_weights": choice("best", "last"),
    "lock": boolean(),  # the best validation checkpoint, or the final weights (d2l)
    # data (fashion_mnist, imagenet)
    "data.num_classes": integer(1),
    "data.batch_size": integer(1),
    "data.num_workers": integer(0),
    "data.prefetch_factor": integer(1),
    "data.val_size": count_or_fraction(0),  # 0: no hold-out, validate on the test set
    "data.split_seed": integer(0, 2**63 - 1),
    "data.resize_size": integer(1),
    "data.test_crops": choice(1, 10),
    "data.lighting_std": number(0),
    "data.mean": numbers(),
    "data.std": numbers(above=0),
    "data.flip": boolean(),
    "data.pin_memory": boolean(),
    "data.download": boolean(),
    "data.on_device": boolean(),
    "data.skip_unreadable": boolean(),
    "data.normalization": choice("per_channel", "paper"),
    "data.channels": Rule(lambda v: v in (1, 3) and _is_int(v), "1 (grey) or 3 (RGB); it follows model.in_channels"),
    "data.decode": choice("cpu", "device", "auto"),  # data=imagenet_prepared
    "data.seed": _or_null(SEED, null=True),  # data=imagenet_prepared's shuffle seed
    # optimizer (sgd)
    "optimizer.lr": number(0),
    "optimizer.momentum": number(0, 1),
    "optimizer.weight_decay": number(0),
    "optimizer.decay_biases": boolean(),
    # scheduler (step, plateau)
    "scheduler.step_size": integer(1),
    "scheduler.gamma": number(above=0),
    "scheduler.mode": choice("min", "max"),
    "scheduler.factor": number(above=0, below=1),
    "scheduler.patience": integer(0),
    "scheduler.max_drops": integer(0),
    # module (LitAlexNet)
    "module.label_smoothing": number(0, 1),
    "module.nonfinite_loss": choice("stop", "skip"),
    "module.scheduler_interval": choice("epoch", "step"),
    "module.freeze_features_epochs": integer(-1),  # -1: frozen for the whole run
    "module.features_lr_scale": number(0),
    # trainer (the Lightning Trainer settings the configs set)
    "trainer.precision": precision(),
    "trainer.accelerator": accelerator(),
    "trainer.max_epochs": integer(-1, null=True),
    "trainer.min_epochs": integer(0, null=True),
    "trainer.max_steps": integer(-1),
    "trainer.log_every_n_steps": integer(1),
    "trainer.check_val_every_n_epoch": integer(1, null=True),
    "trainer.gradient_clip_val": number(0, null=True),
    "trainer.num_sanity_val_steps": integer(-1, null=True),
    "trainer.min_steps": integer(0, null=True),
    "trainer.accumulate_grad_batches": integer(1),
    "trainer.gradient_clip_algorithm": choice(None, "norm", "value"),
    "trainer.val_check_interval": Rule(
        lambda v: v is None or (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1),
        "null (once per epoch), a number of training batches or a fraction of the epoch between 0 and 1",
    ),
    "trainer.detect_anomaly": boolean(),
    "trainer.profiler": choice(None, "simple", "advanced", "pytorch"),
    "trainer.limit_train_batches": batches(),
    "trainer.limit_val_batches": batches(),
    "trainer.limit_test_batches": batches(),
    "trainer.deterministic": boolean(),
    "trainer.benchmark": boolean(),
    # callbacks
    "callbacks.checkpoint.every_n_train_steps": integer(0, null=True),
    "callbacks.throughput.window": integer(1),
    "callbacks.wandb_media.examples": integer(0),
    # alexnet-bench
    "bench.warmup": integer(1),
    "bench.steps": integer(1),
    "bench.data_batches": integer(1),
    "bench.workers": integer(0),
    "bench.fast_paths": choice("auto", None),
    "bench.imagenet.images": integer(1),
    "bench.imagenet.classes": integer(1),
    "bench.imagenet.workers": integer(1),  # rates are divided by it
    "bench.imagenet.batch_size": integer(1),
    "bench.imagenet.loader_batches": integer(1),
    "bench.imagenet.warmup": integer(1),
    "bench.imagenet.steps": integer(0),  # 0: no training steps
    "bench.imagenet.step_batch_size": integer(1),
    "bench.imagenet.chunk_items": integer(1),
    "bench.imagenet.keep_data": boolean(),
    "bench.imagenet.rounds": integer(1),
    "bench.imagenet.decode_patches": integer(4),
    "bench.imagenet.jpeg_quality": integer(1, 100),
    "bench.imagenet.prepare_workers": integer(1, null=True),
    "bench.inference.batch_sizes": Rule(
        lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(b) and b > 0 for b in v),
        "a non-empty list of positive integers, e.g. [1,64]",
    ),
    "bench.inference.warmup": integer(0),
    "bench.inference.timed_images": integer(1),
    "bench.inference.min_steps": integer(1),
    "bench.inference.emulated_bf16": boolean(),
    "bench.inference.device": Rule(lambda v: isinstance(v, str) and v != "", "auto, cpu, cuda or cuda:<n>"),
    # alexnet-prepare
    "format": choice("jpeg", "raw"),
    "jpeg_quality": integer(1, 100),
    "resize_size": integer(1),
    "num_workers": integer(0, null=True),  # and alexnet-figures' loader processes; null: every core / data's
    "overwrite": boolean(),
    # alexnet-figures
    "examples": integer(1),
    "neighbours": integer(1),
    "batch_size": integer(1),
    "dpi": integer(1),
    "train_images": integer(1, null=True),
    # alexnet-export (its format=: TASK_RULES)
    "export.preprocess": boolean(),
    "export.layout": choice("nchw", "nhwc"),
    "export.validation_images": integer(1),
    # alexnet-predict model_path=<exported file>
    "model_path": _or_null(Rule(lambda v: isinstance(v, str) and v != "", "an exported .onnx or .pt2 file"), null=True),
}

# A top-level name that means something else in one command than in the others: (task_name, key) -> its rule there.
TASK_RULES: dict[tuple[str, str], Rule] = {
    ("export", "format"): choice("onnx", "torch_export"),  # alexnet-prepare's format= is jpeg or raw
}

# Pairs of settings that must be equal, and how to make them so.
AGREE: list[tuple[str, str, str]] = [
    ("model.num_classes", "data.num_classes", "the net's outputs follow the data's classes: set data.num_classes"),
]


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


def _broken(key: str, value: Any, task: str | None = None) -> str | None:
    rule = TASK_RULES.get((str(task), key), RULES[key])
    return None if rule.accepts(value) else f"{key}={value!r}: must be {rule.expected}"


def _refuse(problems: list[str]) -> None:
    if problems:
        raise UserError("; ".join(problems) + ".")


def check_values(values: dict[str, Any]) -> None:
    """Refuse, in one message, the values (by setting: ``{"optimizer.lr": lr}``) that break their rule: what a
    class the configs build calls on its arguments, so that it says what ``check_settings`` says."""
    _refuse([problem for key, value in values.items() if (problem := _broken(key, _plain(value)))])


def check_settings(cfg: DictConfig) -> None:
    """Refuse, in one message, every setting of ``cfg`` that breaks a rule of ``RULES`` or ``AGREE``."""
    problems = []
    for key in RULES:
        value = _plain(OmegaConf.select(cfg, key, default=_ABSENT))
        if value is not _ABSENT and (problem := _broken(key, value, cfg.get("task_name"))):
            problems.append(problem)
    for key, other, fix in AGREE:
        values = [OmegaConf.select(cfg, k, default=_ABSENT) for k in (key, other)]
        if _ABSENT not in values and values[0] != values[1]:
            problems.append(f"{key}={values[0]!r} but {other}={values[1]!r}; {fix}={values[0]!r}")
    _refuse(problems)
    check_constructors(cfg)
    if OmegaConf.select(cfg, "data.val_size") == 0 and cfg.get("test_weights") == "best" and cfg.get("test"):
        log.warning(
            "data.val_size=0 validates on the test set, so test_weights=best would pick the checkpoint by its test "
            "accuracy; test_weights=last tests the final epoch's weights instead."
        )


def check_constructors(cfg: DictConfig) -> None:
    """What only the optimizer's and scheduler's own constructors know (torch's checks, an unknown ``mode``...),
    found by building them once on a dummy parameter: free, and long before Lightning builds them."""
    if not cfg.get("optimizer"):
        return
    try:
        optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        if cfg.get("scheduler"):
            instantiate(cfg.scheduler)(optimizer)
    except (ValueError, TypeError) as error:
        raise UserError(f"optimizer/scheduler settings: {error}") from error
