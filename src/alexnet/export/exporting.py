"""``alexnet-export``: one checkpoint's net, rebuilt the way ``alexnet-eval`` rebuilds it (its own checked saved
config), written as an ONNX file or a ``torch.export`` program with its input description, and checked against
the checkpoint on real validation images before the command reports success.

Written into the run folder (``<run>/export/``, or ``output=``)::

    model.onnx | model.pt2        the net in eval mode, batch dimension dynamic
    model.onnx.json | .pt2.json   what it takes and gives (input_spec.py), with the check's result
    mean_image.npy                under data.normalization=paper: the mean image to subtract
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from alexnet.analysis.scored_net import build_net_and_data, checkpoint_paths
from alexnet.errors import UserError
from alexnet.export.input_spec import input_spec, write_spec
from alexnet.export.onnx_file import write_onnx
from alexnet.export.preprocessing import with_pixel_input
from alexnet.export.program_file import write_program
from alexnet.export.validation import compare, validation_images
from alexnet.models.exported import ExportedModel, require_export_packages, spec_path

SUFFIXES = {"onnx": ".onnx", "torch_export": ".pt2"}


def export_checkpoint(cfg: DictConfig, data_keys: list[str] = ()) -> dict[str, Any]:
    """Export ``cfg.ckpt_path``'s net as ``cfg.format`` into ``cfg.paths.output_dir``; returns the description
    written beside it. A check beyond the tolerance removes the files and stops with one message."""
    paths = checkpoint_paths(cfg)
    if len(paths) != 1:
        raise UserError("alexnet-export exports one checkpoint: ckpt_path=<run>/checkpoints/<file>.ckpt")
    fmt, settings = cfg.format, cfg.export
    if fmt == "onnx":
        require_export_packages("format=onnx")
    scored = build_net_and_data(cfg, list(data_keys), compare_classes=False, eager=True)
    net, datamodule = scored.net.eval(), scored.datamodule
    datamodule.setup("validate")
    images = validation_images(datamodule, settings.validation_images)
    inputs = datamodule.model_input(images, "val")
    module: torch.nn.Module = net
    if settings.preprocess:
        channels_last = settings.layout == "nhwc"
        module = with_pixel_input(net, datamodule, channels_last)
        inputs = datamodule.picture(inputs)  # uint8 RGB of the input size: the data module's own crop or resize
        if channels_last:
            inputs = inputs.permute(0, 2, 3, 1).contiguous()
    with torch.no_grad():
        reference = module(inputs)
    folder = Path(cfg.paths.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / f"model{SUFFIXES[fmt]}"
    example = inputs[:2] if len(inputs) >= 2 else inputs.expand(2, *inputs.shape[1:])  # batch 1 would be fixed
    (write_onnx if fmt == "onnx" else write_program)(module, example.contiguous(), model_path)
    check = compare(ExportedModel(model_path)(inputs), reference)
    spec = input_spec(
        fmt=fmt,
        model_file=model_path.name,
        datamodule=datamodule,
        model_cfg=scored.model_cfg,
        data_cfg=scored.data_cfg,
        class_names=scored.class_names,
        checkpoint=Path(paths[0]).expanduser().absolute(),
        preprocess=bool(settings.preprocess),
        channels_last=settings.layout == "nhwc",
    )
    spec["validation"] = {**check, "reference": "the checkpoint's net in eager PyTorch, float32, CPU, same input"}
    print(
        f"checked on {check['images']} validation images: max |logit difference| {check['max_abs_diff']:.3g} "
        f"(largest |logit| {check['max_abs_logit']:.3g}; {check['tolerance']}), top-1 agreement "
        f"{100 * check['top1_agreement']:.1f} %"
    )
    if not check["passed"]:
        model_path.unlink()
        raise UserError(
            f"The exported model differs from the checkpoint beyond the tolerance ({check['tolerance']}): max "
            f"|difference| {check['max_abs_diff']:.3g}, {check['worst_diff_over_tolerance']:.1f}x the tolerance; "
            f"nothing was kept. Report it with the checkpoint and format={fmt}."
        )
    write_spec(spec_path(model_path), spec, datamodule)
    print(f"written: {model_path}\nwritten: {spec_path(model_path)}")
    return spec
