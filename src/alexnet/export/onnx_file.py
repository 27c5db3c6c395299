"""The net as an ONNX file: ``torch.onnx.export`` with the dynamo exporter (``torch.export`` underneath, then
onnxscript's translation), a dynamic batch dimension, the weights inside the one file."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import torch
from torch import nn

from alexnet.errors import UserError


def write_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``module`` (eval mode) traced on ``example``, its first dimension left free."""
    batch = torch.export.Dim("batch", min=1)
    quiet = io.StringIO()
    # The exporter prints its progress ("[torch.onnx] Obtain model graph ...") and its optimiser logs every pass.
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(quiet):
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                dynamic_shapes=({0: batch},),
                input_names=["input"],
                output_names=["logits"],
                external_data=False,  # one self-contained file (AlexNet's 244 MB is far below protobuf's 2 GB)
                verbose=False,
            )
    except Exception as error:
        raise UserError(f"ONNX export failed ({type(error).__name__}: {str(error).splitlines()[0][:300]}).") from error
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
