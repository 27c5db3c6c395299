"""``alexnet-report outputs/multirun/<date>``: a finished sweep as a Markdown table (each job's settings, final and
best validation top-1/top-5, test top-1/top-5, epochs), a PNG bar plot, and for an ablation sweep the paper's
published effects beside the measured ones; read from the job folders' CSV or TensorBoard files (no W&B needed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet.analysis.sweep_report import report
from alexnet.errors import reported_user_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="alexnet-report", description=__doc__)
    parser.add_argument("folder", type=Path, help="an alexnet-train -m folder, e.g. outputs/multirun/<date>")
    with reported_user_errors():
        table, plot = report(parser.parse_args(sys.argv[1:] if argv is None else argv).folder)
    print(f"{table.read_text()}\nwritten: {table}\nwritten: {plot}")
