"""``export.preprocess=true``: the net with its input normalisation in front, so that the exported graph takes uint8
RGB pixels of the input size (NCHW or NHWC) and a deployer feeds decoded, cropped images as they are.

The normalisation is the data module's own, read off it rather than restated: at validation every step between
the uint8 image and the model input (to float, the mean image or per-channel statistics, the crop or resize, a
channel change) is affine in the pixels, so model input = C(pixels) * scale + offset, where ``offset`` is the data
module's model input of an all-black image (``-mean/std``, or the window of the paper's mean image under the
centre crop) and ``scale`` is 1 (paper: raw 0-255 pixels) or ``1 / (255 std)`` per channel.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.data import ImageClassificationData

# ITU-R 601-2 luma, as PIL's convert("L") (how Fashion-MNIST's data module reads any image) and torchvision's
# rgb_to_grayscale (how an ImageNet module feeds a 1-channel net) weigh R, G and B.
PIL_GREY = (0.299, 0.587, 0.114)
TORCHVISION_GREY = (0.2989, 0.587, 0.114)


class PixelInput(nn.Module):
    """uint8 RGB images (N, 3, s, s) or (N, s, s, 3) -> the net's logits, normalising as the data module does.

    Args:
        net: the trained net (eval mode).
        scale: (C, 1, 1) multiplier of the 0-255 pixels per model-input channel.
        offset: (C, s, s) added after scaling.
        grey: RGB -> grey weights (3 values) when the data or the net is grey; None keeps RGB.
        replicate: repeat the grey image on 3 channels (a 3-channel net on grey data).
        channels_last: the input is NHWC (N, s, s, 3), as decoders (PIL, OpenCV, image libraries) give it.
    """

    def __init__(
        self,
        net: nn.Module,
        scale: torch.Tensor,
        offset: torch.Tensor,
        grey: tuple[float, float, float] | None,
        replicate: bool,
        channels_last: bool,
    ) -> None:
        super().__init__()
        self.net, self.replicate, self.channels_last = net, replicate, channels_last
        self.register_buffer("scale", scale.float())
        self.register_buffer("offset", offset.float())
        self.register_buffer("grey", torch.tensor(grey or (1.0, 1.0, 1.0)).view(1, 3, 1, 1))
        self.to_grey = grey is not None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float()
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        if self.to_grey:
            x = (x * self.grey).sum(1, keepdim=True)
        if self.replicate:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x * self.scale + self.offset)


def source_channels(datamodule: ImageClassificationData) -> int:
    """Channels of the images the data module serves (1: Fashion-MNIST's grey, 3: ImageNet's RGB)."""
    return int(datamodule.dataset("val")[0][0].shape[0])


def with_pixel_input(net: nn.Module, datamodule: ImageClassificationData, channels_last: bool) -> PixelInput:
    """``net`` behind the data module's validation normalisation, for uint8 RGB input of the net's size."""
    first, _ = datamodule.dataset("val")[0]
    black = torch.zeros((1, *first.shape), dtype=torch.uint8)
    offset = datamodule.model_input(black, "val")[0]
    normalization = datamodule.normalization
    in_channels = int(offset.shape[0])
    if normalization.paper:
        scale = torch.ones(in_channels, 1, 1)
    else:
        scale = 1 / (255 * torch.tensor(normalization.channel_statistics(in_channels)[1])).view(-1, 1, 1)
    grey_data = first.shape[0] == 1
    grey = PIL_GREY if grey_data else (TORCHVISION_GREY if in_channels == 1 else None)
    return PixelInput(net, scale, offset, grey, grey_data and in_channels == 3, channels_last).eval()
