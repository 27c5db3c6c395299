"""The console scripts as a user runs them: output, run folders, and one clear message per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli


def test_summary_reports_the_paper_numbers(tmp_path: Path) -> None:
    result = run_cli("alexnet-summary", "model=paper", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "parameters: 60,965,224" in result.stdout and "neurons: 659,272" in result.stdout
    assert "96x55x55" in result.stdout and "256x6x6" in result.stdout
    assert list(tmp_path.iterdir()) == []  # a summary leaves no output folder behind


def test_train_writes_a_run_folder(tmp_path: Path, fashion_root: Path) -> None:
    result = run_cli(
        "alexnet-train", "debug=limit", f"data.root={fashion_root}", "data.download=false", "data.batch_size=4",
        "data.val_size=40", "trainer=cpu", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    for name in ("config_resolved.yaml", ".hydra/config.yaml", ".hydra/overrides.yaml", "train.log",
                 "checkpoints/last.ckpt", "csv/metrics.csv", "csv/hparams.yaml"):  # fmt: skip
        assert (run / name).is_file(), name
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_step", "val/acc_top1", "val/acc_top5", "test/acc_top1", "lr-SGD"} <= set(header)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model=alexnet"], "Could not find 'model/alexnet'\n\nAvailable options in 'model':\n\td2l\n\tpaper"),
        (["model.lrm=true"], "Could not override 'model.lrm'"),
        (["model=paper", "model.groups=3"], "error: model.groups=3: conv2 has 96 input and 256 output channels"),
        (["model.input_size=32"], "error: model.input_size=32 is too small"),
        (["model.lrn=maybe"], "error: model.lrn='maybe': must be true or false."),
        (["data.root=/nonexistent/fmnist", "data.download=false"], "error: Fashion-MNIST is not under data.root"),
        (["-m", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], "inside a local Hydra multirun"),
    ],
    ids=["unknown-variant", "unknown-key", "groups-3", "input-too-small", "bad-bool", "missing-data", "multirun-ddp"],
)
def test_bad_overrides_end_in_one_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("alexnet-train", *args, cwd=tmp_path, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output[-3000:]
    assert "Traceback" not in output
