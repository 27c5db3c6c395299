"""How every Hydra console script runs: Hydra composes the config from ``conf/`` and the overrides, what Hydra
knows of the invocation is read once into plain values, and a user error ends in one line with exit status 2."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from alexnet.config import CONFIG_DIR, Invocation
from alexnet.config_rules import check_settings
from alexnet.errors import reported_user_errors

T = TypeVar("T")


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig, Invocation], T]], Callable[[], T]]:
    """Turn ``task(cfg, invocation)`` into the console script of ``conf/<config_name>.yaml``."""

    def decorate(task: Callable[[DictConfig, Invocation], T]) -> Callable[[], T]:
        @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
        def main(cfg: DictConfig) -> T:
            invocation = Invocation.from_hydra(HydraConfig.get())  # the one read of Hydra's global state
            with reported_user_errors(invocation.multirun):
                check_settings(cfg)  # every setting's value, before anything is built or written
                return task(cfg, invocation)

        main.__doc__ = task.__doc__
        return main

    return decorate
