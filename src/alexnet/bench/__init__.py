"""alexnet-bench: the training paths (``training_paths.py``) and the ImageNet loaders (``imagenet_loaders.py``)."""
