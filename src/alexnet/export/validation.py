"""The check every export passes: the exported file, run as a deployer runs it (ONNX Runtime on the CPU, or the
loaded ``torch.export`` program), against the checkpoint's net in eager PyTorch, on real validation images.

Tolerance: ``|exported - checkpoint| <= 1e-4 * max(1, |checkpoint logit|)`` for every logit. Both sides compute
in float32, but ONNX Runtime's (and the exported graph's) convolution and matrix kernels sum in another order and
fuse other operations than eager PyTorch; float32 rounding then differs by about 1e-7 of a sum's magnitude per
term, ~1e-6 relative over FC6's 9216-long sums (measured: at most a few 1e-6 here). 1e-4 leaves a wide margin for
other CPUs' kernels, yet any real difference (a weight, a missing normalisation step, a wrong channel order)
moves logits by 1e-2 or more and fails.
"""

from __future__ import annotations

from typing import Any

import torch

from alexnet.data import ImageClassificationData
from alexnet.errors import UserError

RELATIVE_TOLERANCE = 1e-4


def validation_images(datamodule: ImageClassificationData, count: int) -> torch.Tensor:
    """``count`` uint8 validation images (N, C, H, W) as the loader serves them, spread evenly over the set."""
    dataset = datamodule.dataset("val")
    picks = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().long().unique()
    images = [image for image, _ in (dataset[int(i)] for i in picks) if image is not None]  # None: unreadable
    if not images:
        raise UserError("The checkpoint's validation set holds no readable images to check the export on.")
    return torch.stack(images)


def compare(exported: torch.Tensor, reference: torch.Tensor) -> dict[str, Any]:
    """Max abs difference, the worst ratio to the tolerance, and top-1 agreement of two logit batches."""
    difference = (exported.double() - reference.double()).abs()
    allowed = RELATIVE_TOLERANCE * reference.double().abs().clamp(min=1)
    return {
        "images": int(reference.shape[0]),
        "max_abs_diff": float(difference.max()),
        "max_abs_logit": float(reference.abs().max()),
        "tolerance": f"|diff| <= {RELATIVE_TOLERANCE:g} * max(1, |logit|)",
        "worst_diff_over_tolerance": float((difference / allowed).max()),
        "top1_agreement": float((exported.argmax(1) == reference.argmax(1)).double().mean()),
        "passed": bool((difference <= allowed).all()),
    }
