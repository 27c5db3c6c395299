"""``alexnet-export ckpt_path=... format=onnx|torch_export``: a trained net as an ONNX file or a torch.export
program, with the description of its input, checked against the checkpoint (see ``conf/export.yaml``)."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.cli.command import hydra_command
from alexnet.config.invocation import Invocation
from alexnet.export import export_checkpoint


@hydra_command("export")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    export_checkpoint(cfg, invocation.typed_keys("data"))  # data.* typed replace a checkpoint's; data= its own


if __name__ == "__main__":
    main()
