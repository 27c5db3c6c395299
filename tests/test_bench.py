"""alexnet-bench: the three training paths and both data pipelines, measured in one run, as JSON and a table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli


def bench(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[dict, str]:
    result = run_cli("alexnet-bench", f"paths.log_dir={tmp_path}", *args, cwd=tmp_path, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    (written,) = (tmp_path / "bench").glob("*/bench.json")
    return json.loads(written.read_text()), result.stdout


def test_bench_reports_consistent_rates_and_ratios(tmp_path: Path) -> None:
    report, table = bench(
        tmp_path, "model.input_size=96", "data.batch_size=8", "bench.warmup=1", "bench.steps=2", "bench.data_batches=3"
    )
    rates, ms = report["images_per_sec"], report["step_ms"]
    for key in ("a_lightning", "b_plain_pytorch", "c_model_only"):
        assert rates[key] == pytest.approx(8 / (ms[key] / 1e3))
    assert report["ratio_a_over_b"] == pytest.approx(rates["a_lightning"] / rates["b_plain_pytorch"])
    assert report["ratio_a_over_c"] == pytest.approx(rates["a_lightning"] / rates["c_model_only"])
    data = report["data_images_per_sec"]
    assert data["a_on_device_batch_resize"] > 0 and data["b_pil_per_sample"] > 0
    assert report["data_ratio_a_over_b"] == pytest.approx(data["a_on_device_batch_resize"] / data["b_pil_per_sample"])
    assert (report["device"], report["precision_a_c"], report["on_device_data_a"]) == ("cpu", "32-true", True)
    assert report["channels_last_a_c"] is False and report["compile_a_c"] is False  # fast_paths=auto on a CPU
    assert report["gpu_utilisation_percent"] == {"a_lightning": None, "b_plain_pytorch": None, "c_model_only": None}
    assert report["model_config"]["input_size"] == 96 and report["batch_size"] == 8
    assert "(a) alexnet-train step" in table and f"a/b = {report['ratio_a_over_b']:.3f}" in table


def test_bench_rejects_zero_steps(tmp_path: Path) -> None:
    result = run_cli("alexnet-bench", f"paths.log_dir={tmp_path}", "bench.steps=0", cwd=tmp_path)
    assert result.returncode == 2 and "error: bench.steps=0: must be a positive integer." in result.stderr
