"""``alexnet-bench``: training images/s of this project's Lightning step against a plain PyTorch loop and the
model step alone; ``bench=imagenet``: ImageNet's loaders per worker and the training step with each;
``bench=inference``: inference speed of eager, compiled, ONNX Runtime and torch.export paths."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from alexnet.bench.imagenet_loaders import format_imagenet_table, imagenet_benchmark
from alexnet.bench.inference_paths import format_inference_table, inference_benchmark
from alexnet.bench.training_paths import benchmark, format_table
from alexnet.cli.command import hydra_command
from alexnet.config.invocation import Invocation


@hydra_command("bench")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    if cfg.bench.get("suite") == "imagenet":  # bench=imagenet (conf/bench/imagenet.yaml)
        print(format_imagenet_table(imagenet_benchmark(cfg)))
    elif cfg.bench.get("suite") == "inference":  # bench=inference (conf/bench/inference.yaml)
        print(format_inference_table(inference_benchmark(cfg)))
    else:
        print(format_table(benchmark(cfg)))
    print(f"written: {Path(cfg.paths.output_dir) / 'bench.json'}")


if __name__ == "__main__":
    main()
