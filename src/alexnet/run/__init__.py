"""A training run and its folder: the one home of a run's state.

A run folder (``outputs/runs/<date>_<time>/``, or ``outputs/multirun/<date>_<time>/<job>/`` in a sweep) holds:

==============================  =====================================================  ===============================
file                            what it is                                             written by
==============================  =====================================================  ===============================
``config_resolved.yaml``        the run's config, every value resolved: what           ``training.save_config``, once
                                ``resume=``, alexnet-eval and -figures rebuild from    every check has passed
``checkpoints/last.ckpt``       the one resume point: weights, optimizer, schedule,    ``resume_point.ResumePoint``
                                loops, RNG and metric states, loader position, class   and ``signals.StopOnSignal``
                                list (``checkpoint_state``)                            through ``checkpoint_io``
``checkpoints/epoch_NNN.ckpt``  the epoch with the best validation top-1               Lightning's ``ModelCheckpoint``,
                                                                                       through ``checkpoint_io``
``csv/metrics.csv``             every logged value (rows after a resumed               ``metrics_csv``
                                checkpoint's step dropped)
``data_split.json``             the validation images held out of a folder without     ``checkpoint_state``, at the
                                ``val/`` (``data=image_folder``; also in checkpoints)  start of each fit
``.lock``                       held by the process writing the run, naming it         ``folder.claiming``
``.hydra/``, ``train.log``      Hydra's composed config, the overrides, the log        Hydra, after
                                (a resume's own in ``.hydra/resumed_<time>/``)         ``folder.RunFolderCheck``
``tensorboard/``, ``wandb/``    those loggers' own files (the W&B run's id is chosen   the loggers; ``wandb_run``
                                once and saved in the config, so a resume reopens it)
``figures/``                    the paper's figures: derived, never read back          alexnet-figures, and
                                                                                       ``tracking.wandb_media``
==============================  =====================================================  ===============================

Modules: ``folder`` (which folder a run writes into, one writer at a time, copied folders re-rooted, the
resolvers that place a run), ``build`` (the run's objects from its config), ``training`` (``train``: claim,
continue, check, save the config, fit, test), ``resume`` (continuing a run in its own folder), ``resume_point``
(when ``last.ckpt`` is written), ``signals`` (stop signals and exit codes), ``checkpoint_state`` (what a checkpoint
carries beyond Lightning's own state), ``checkpoint_io`` (checkpoints written whole), ``metrics_csv`` (the CSV log
that survives a resume), ``wandb_run`` (the W&B run's identity).
"""

from alexnet.run.build import Run, build
from alexnet.run.training import train

__all__ = ["Run", "build", "train"]
