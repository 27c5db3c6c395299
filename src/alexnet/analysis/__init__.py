"""What is learnt from trained nets and finished runs: scores (``scoring.py``: alexnet-eval, alexnet-predict) of
nets rebuilt from their checkpoints (``scored_net.py``), the paper's figures (``paper_figures.py``, with the FC7
search of ``fc7_neighbours.py``), a run's logged metrics read back (``run_metrics.py``) and a sweep's report
(``sweep_report.py``: alexnet-report), with its statistics over seeds (``comparisons.py``: mean and spread,
paired effects, their t intervals and verdicts)."""
