"""How every Hydra console script runs: Hydra composes the config from ``conf/`` and the overrides, what Hydra
knows of the invocation is read once into plain values, every setting is checked against ``config_rules``, and a
user error ends in one line with exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import hydra
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser  # see show_resumed_config
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.config.invocation import Invocation
from alexnet.config.location import CONFIG_DIR
from alexnet.config.rules import check_settings
from alexnet.errors import reported_user_errors
from alexnet.run.folder import check_run_folder, removed_if_left_empty, resolve_auto
from alexnet.run.resume import continue_run

T = TypeVar("T")


def show_resumed_config(config_name: str, argv: list[str]) -> bool:
    """``--cfg job resume=<run>`` (or ``ckpt_path=last``): print the config the resumed run will use, its saved
    config with the values typed now, instead of Hydra's print of today's defaults. False when not asked."""
    if not any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in argv):
        return False
    # Hydra has no public API for its command-line parser: hydra.main parses sys.argv itself and prints --cfg's
    # config before any hook of ours runs. get_args_parser is the parser hydra.main uses, so --cfg, -p and the
    # overrides are read exactly as Hydra reads them; pyproject.toml holds hydra-core to the series this was tested
    # with (1.3), and tests/test_run_state.py checks `--cfg job resume=<run>` end to end.
    args = get_args_parser().parse_args(argv)
    continuing = any(o.startswith("resume=") or o == "ckpt_path=last" for o in args.overrides)
    if args.cfg not in ("job", "all") or not continuing:
        return False
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        full = compose(config_name, overrides=args.overrides, return_hydra_config=True)
    folder = Path(str(full.hydra.run.dir)).absolute()
    with open_dict(full):
        full.paths.output_dir = str(folder)
        full.resume = resolve_auto(full.get("resume"), folder)
        del full["hydra"]
    if not full.resume and full.get("ckpt_path") != "last":
        return False  # resume=auto in a folder without a run: Hydra prints the new run's config
    check_run_folder(folder, full.get("resume"), full.get("ckpt_path"))
    keys = [o.split("=", 1)[0] for o in args.overrides]
    print(OmegaConf.to_yaml(continue_run(full, keys)), end="")
    return True


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig, Invocation], T]], Callable[[], T | None]]:
    """Turn ``task(cfg, invocation)`` into the console script of ``conf/<config_name>.yaml``."""

    def decorate(task: Callable[[DictConfig, Invocation], T]) -> Callable[[], T | None]:
        @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
        def main(cfg: DictConfig) -> T:
            invocation = Invocation.from_hydra(HydraConfig.get())  # the one read of Hydra's global state
            # A refused start leaves no empty folder behind (Hydra makes the job's folder before the job runs).
            with reported_user_errors(invocation.multirun), removed_if_left_empty(invocation.output_dir):
                check_settings(cfg)  # every setting's value, before anything is built or written
                return task(cfg, invocation)

        def command() -> T | None:
            with reported_user_errors():
                if show_resumed_config(config_name, sys.argv[1:]):
                    return None
            return main()

        command.__doc__ = task.__doc__
        return command

    return decorate
