"""ImageNet (ILSVRC-2012): class folders decoded every epoch (``image_folder.py``, ``data=imagenet``), the patches
``alexnet-prepare`` writes once (``prepared_writer.py``) and streams back (``prepared_reader.py``,
``data=imagenet_prepared``), and the on-device pipeline both data modules share (``pipeline.py``)."""

from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.data.imagenet.prepared_reader import PreparedImageNetDataModule

__all__ = ["ImageNetDataModule", "PreparedImageNetDataModule"]
