"""Checks of a run's settings that can run as soon as its config is composed, before anything is written."""

from __future__ import annotations

import logging

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet.data.normalization import check_normalization
from alexnet.errors import UserError

log = logging.getLogger(__name__)
TEST_WEIGHTS = ("best", "last")


def check_test_weights(value: object) -> str:
    if value not in TEST_WEIGHTS:
        raise UserError(
            f"test_weights={value!r}: choose best (the checkpoint with the best validation top-1) or last "
            "(the final epoch's weights, as d2l reports)."
        )
    return str(value)


def check_run_config(cfg: DictConfig) -> None:
    """Refuse a bad ``test_weights``, ``data.normalization``, optimizer or scheduler setting in one message.

    The optimizer and scheduler are built once on a dummy parameter: it costs nothing and checks every setting
    their constructors check, long before Lightning would build them at the start of fit.
    """
    test_weights = check_test_weights(cfg.get("test_weights", "best"))
    data = cfg.get("data") or {}
    if "normalization" in data:
        check_normalization(data.normalization)
    if data.get("val_size") == 0 and test_weights == "best" and cfg.get("test"):
        log.warning(
            "data.val_size=0 validates on the test set, so test_weights=best would pick the checkpoint by its test "
            "accuracy; test_weights=last tests the final epoch's weights instead."
        )
    if cfg.get("optimizer"):
        try:
            optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
            if cfg.get("scheduler"):
                instantiate(cfg.scheduler)(optimizer)
        except (ValueError, TypeError) as error:  # torch's own checks (a negative lr, an unknown mode...)
            raise UserError(f"optimizer/scheduler settings: {error}") from error
