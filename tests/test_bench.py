"""alexnet-bench: the three training paths and both data pipelines, measured in one run, as JSON and a table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli


def report_folder(tmp_path: Path) -> Path:
    (written,) = (tmp_path / "bench").glob("*/bench.json")
    return written.parent


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


@pytest.mark.slow
def test_imagenet_bench_compares_the_loaders_per_worker_and_the_training_steps(tmp_path: Path) -> None:
    report, table = bench(tmp_path, "bench=imagenet", "bench.imagenet.images=40", "bench.imagenet.classes=2",
                          "bench.imagenet.batch_size=4", "bench.imagenet.loader_batches=3", "bench.imagenet.warmup=1",
                          "bench.imagenet.steps=2", "bench.imagenet.step_batch_size=4", "bench.imagenet.chunk_items=16",
                          "bench.imagenet.rounds=2", "bench.imagenet.decode_patches=8", "model.input_size=67",
                          "model.channels=[8,16,16,16,16]", "model.hidden_size=32")  # fmt: skip
    loader, step = report["loader_images_per_sec_per_worker"], report["train_step_images_per_sec"]
    assert loader["i_imagefolder"] > 0 and loader["ii_prepared_cpu_decode"] > 0 and loader["prepared_raw"] > 0
    assert report["loader_ratio_ii_over_i"] == pytest.approx(loader["ii_prepared_cpu_decode"] / loader["i_imagefolder"])
    assert report["loader_ratio_raw_over_i"] == pytest.approx(loader["prepared_raw"] / loader["i_imagefolder"])
    assert step["i_imagefolder"] > 0 and step["ii_prepared_cpu_decode"] > 0
    assert report["train_step_ratio_ii_over_i"] == pytest.approx(step["ii_prepared_cpu_decode"] / step["i_imagefolder"])
    # No GPU here: the device-decode path is not measured, and says so.
    assert loader["iii_prepared_device_decode"] is None and step["iii_prepared_device_decode"] is None
    assert report["loader_ratio_iii_over_i"] is None and report["device"] == "cpu"
    images = report["images"]
    assert images["train"] == 40 and images["source_mean_bytes"] > 25_000  # photographs, not flat colours
    assert 196_608 < images["prepared_raw_mean_bytes"] < 197_000 and images["prepared_jpeg_mean_bytes"] < 60_000
    assert report["ilsvrc2012_prepared_bytes_estimate"]["raw"] == pytest.approx(
        images["prepared_raw_mean_bytes"] * (1_281_167 + 50_000)
    )
    assert report["model_config"]["groups"] == 2 and report["model_config"]["lrn"] is True  # model=paper
    assert report["loader_transfer_floor_images_per_sec_per_worker"] > 0
    assert "(ii) prepared JPEG patch, decode=cpu" in table and "decoding alone, one thread" in table
    assert report["prepared_items_per_chunk"] == [16, 16, 8]  # chunk_items a chunk, one writer
    rounds = report["rounds"]
    assert len(rounds) == 2 and report["loader_fraction_of_decode_ii"] == pytest.approx(
        sorted(r["loaders"]["ii_prepared_cpu_decode"] / r["decode"]["simplejpeg"] for r in rounds)[0] / 2
        + sorted(r["loaders"]["ii_prepared_cpu_decode"] / r["decode"]["simplejpeg"] for r in rounds)[1] / 2
    )  # the median of the rounds' ratios
    peers = report["peers_images_per_sec_per_worker"]
    for name in ("webdataset", "mosaicml_streaming"):
        assert peers[name] == "not installed" or peers[name] > 0, name
    assert f"loader_fraction_of_decode_ii = {report['loader_fraction_of_decode_ii']:.3f}" in table
    assert not (Path(report_folder(tmp_path)) / "data").exists(), "the photos and prepared sets are deleted"
