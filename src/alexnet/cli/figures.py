"""``alexnet-figures ckpt_path=...``: the paper's Figure 3 and Figure 4 and the training curves of a trained run,
as PNGs in ``<run>/figures/`` (see ``conf/figures.yaml``)."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.analysis.paper_figures import checkpoint_figures
from alexnet.cli.command import hydra_command
from alexnet.config.invocation import Invocation


@hydra_command("figures")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    checkpoint_figures(cfg, invocation.typed_keys("data"))  # data.* typed replace a checkpoint's; data= must be its own


if __name__ == "__main__":
    main()
