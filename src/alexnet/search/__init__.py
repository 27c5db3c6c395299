"""Hyper-parameter search with Optuna behind Hydra's ``-m``: the search space written in Hydra's sweep syntax
(``space.py``), the study and its storage, reachable from every job (``study.py``), the ask-and-tell loop that
launches each batch of trials through Hydra's launcher (``trials.py``), and the Lightning callback that reports a
trial's validation score each epoch and stops it when the pruner says so (``pruning.py``).

The Hydra sweeper plugin itself, ``hydra_plugins.alexnet_optuna_sweeper``, only connects these to Hydra: Hydra
finds sweepers in the ``hydra_plugins`` namespace package alone."""
