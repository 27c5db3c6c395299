"""alexnet-export: every model variant as ONNX and torch.export, reloaded and checked against its checkpoint on real
validation images; the graph with its own preprocessing; alexnet-predict model_path= against ckpt_path=; and
alexnet-bench bench=inference's JSON. Nets are tiny (8-16 channels, 65-67 px) so an export takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.analysis.scored_net import build_net_and_data
from alexnet.export.validation import RELATIVE_TOLERANCE, validation_images
from alexnet.models.exported import ExportedModel, read_spec
from alexnet.run.build import build
from conftest import compose_config, run_main, train_config

TINY = ["model.channels=[8,16,16,16,16]", "model.hidden_size=32", "debug=fdr", "logger=none", "data.batch_size=4"]
# (overrides, Fashion-MNIST data) per variant: the paper's two towers with per-tower LRN on ImageNet-style JPEG
# folders under the paper's mean-image normalisation; torchvision's net and d2l's 1-channel net on Fashion-MNIST.
VARIANTS = {
    "paper": (
        [
            "model=paper",
            "model.input_size=67",
            "data=imagenet",
            "data.num_classes=3",
            "data.resize_size=80",
            "data.num_workers=0",
            "data.pin_memory=false",
            "data.normalization=paper",
        ],
        False,
    ),  # fmt: skip
    "torchvision": (["model=torchvision", "model.input_size=67"], True),
    "d2l": (["model=d2l", "model.input_size=65"], True),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path, imagenet_root: Path) -> dict[str, Path]:
    """One tiny checkpoint per variant, one training step each."""
    found = {}
    for name, (overrides, fashion) in VARIANTS.items():
        tmp = tmp_path_factory.mktemp(name)
        run = build(train_config(tmp, fashion_root if fashion else imagenet_root, [*overrides, *TINY], fashion))
        run.trainer.fit(run.module, datamodule=run.datamodule)
        found[name] = tmp / f"{name}.ckpt"
        run.trainer.save_checkpoint(found[name])
    return found


def export(tmp_path: Path, checkpoint: Path, *overrides: str) -> tuple[Path, dict]:
    result = run_main("alexnet-export", f"ckpt_path={checkpoint}", f"output={tmp_path / 'export'}", *overrides,
                      cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "top-1 agreement 100.0 %" in result.stdout
    model = next(p for p in (tmp_path / "export").iterdir() if p.suffix in (".onnx", ".pt2"))
    return model, read_spec(model)


def checkpoint_logits(checkpoint: Path) -> tuple[torch.Tensor, torch.Tensor, object]:
    """The checkpoint's own net on its validation images: (model input, logits, data module)."""
    scored = build_net_and_data(compose_config("eval", [f"ckpt_path={checkpoint}"]), [], compare_classes=False)
    scored.datamodule.setup("validate")
    x = scored.datamodule.model_input(validation_images(scored.datamodule, 16), "val")
    with torch.no_grad():
        return x, scored.net(x), scored.datamodule


def assert_within_tolerance(exported: torch.Tensor, reference: torch.Tensor) -> None:
    allowed = RELATIVE_TOLERANCE * reference.abs().clamp(min=1)
    assert ((exported - reference).abs() <= allowed).all(), (exported - reference).abs().max()
    assert torch.equal(exported.argmax(1), reference.argmax(1)), "top-1 agreement 100 %"


SLOW = pytest.mark.slow  # the paper net's ONNX export is the longest here (about 20 s on a loaded 2-core CPU)


@pytest.mark.parametrize("fmt", ["onnx", "torch_export"])
@pytest.mark.parametrize(
    "variant", [pytest.param(v, marks=SLOW) if v == "paper" else v for v in VARIANTS]
)  # fmt: skip
def test_every_variant_exports_and_reloads_with_the_checkpoints_logits(
    tmp_path: Path, checkpoints: dict[str, Path], variant: str, fmt: str
) -> None:
    model, spec = export(tmp_path, checkpoints[variant], f"format={fmt}")
    assert model.name == {"onnx": "model.onnx", "torch_export": "model.pt2"}[fmt]
    x, reference, datamodule = checkpoint_logits(checkpoints[variant])
    assert_within_tolerance(ExportedModel(model)(x), reference)  # reloaded: ONNX Runtime / torch.export.load
    channels = 1 if variant == "d2l" else 3
    assert (
        spec["input"]["shape"] == ["batch", channels, x.shape[-1], x.shape[-1]] and spec["input"]["dtype"] == "float32"
    )
    assert spec["class_names"] == datamodule.class_names()
    check = spec["validation"]
    assert check["passed"] and check["top1_agreement"] == 1.0 and check["images"] == len(x)
    assert check["max_abs_diff"] <= RELATIVE_TOLERANCE * max(1.0, check["max_abs_logit"])
    assert len(spec["checkpoint"]["sha256"]) == 64
    if variant == "paper":  # the paper's normalisation: raw pixels minus the mean image, saved beside
        mean = np.load(model.parent / spec["normalization"]["mean_image"], allow_pickle=False)
        assert spec["normalization"]["kind"] == "paper" and mean.shape == (3, 80, 80)
        torch.testing.assert_close(torch.from_numpy(mean), datamodule.normalization.mean_image, rtol=0, atol=0)
    else:
        assert spec["normalization"]["kind"] == "per_channel" and len(spec["normalization"]["std"]) == channels


def test_an_export_beyond_the_tolerance_stops_with_one_message_and_keeps_no_model(
    tmp_path: Path, checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import alexnet.export.validation

    monkeypatch.setattr(alexnet.export.validation, "RELATIVE_TOLERANCE", -1.0)  # no difference is small enough
    result = run_main("alexnet-export", f"ckpt_path={checkpoints['d2l']}", "format=torch_export",
                      f"output={tmp_path / 'export'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "error: The exported model differs from the checkpoint beyond the tolerance" in result.stderr
    assert not list((tmp_path / "export").glob("model.*")), "nothing kept"


@SLOW
@pytest.mark.parametrize(("variant", "fmt", "layout"), [("paper", "onnx", "nhwc"), ("d2l", "torch_export", "nchw")])
def test_a_graph_with_its_preprocessing_takes_uint8_pixels(
    tmp_path: Path, checkpoints: dict[str, Path], variant: str, fmt: str, layout: str
) -> None:
    model, spec = export(tmp_path, checkpoints[variant], f"format={fmt}", "export.preprocess=true",
                         f"export.layout={layout}")  # fmt: skip
    assert spec["input"]["dtype"] == "uint8" and spec["input"]["channels"] == "RGB"
    x, reference, datamodule = checkpoint_logits(checkpoints[variant])
    pixels = datamodule.picture(x)  # the validation images as uint8 RGB pixels of the input size
    if layout == "nhwc":
        pixels = pixels.permute(0, 2, 3, 1).contiguous()
        assert spec["input"]["shape"] == ["batch", 67, 67, 3]
    logits = ExportedModel(model)(pixels)
    if variant == "paper":  # ImageNet's centre crop of uint8 pixels is exact: the data module's own input
        assert_within_tolerance(logits, reference)
    else:  # Fashion-MNIST's resize gives non-integer pixels, which a uint8 picture rounds
        assert (logits - reference).abs().max() < 0.05


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real photographs: crops of matplotlib's sample photo, as JPEG and PNG."""
    folder = tmp_path_factory.mktemp("photos")
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as photo:
        photo.convert("RGB").crop((0, 0, 300, 260)).save(folder / "a.jpg", quality=90)
        photo.convert("RGB").crop((150, 200, 450, 500)).save(folder / "b.png")
    return [folder / "a.jpg", folder / "b.png"]


def top_classes(stdout: str) -> list[tuple[str, float]]:
    return [(line.split("%", 1)[1].strip(), float(line.split("%")[0])) for line in stdout.splitlines() if "%" in line]


@pytest.mark.parametrize(("variant", "fmt"), [pytest.param("paper", "torch_export", marks=SLOW), ("d2l", "onnx")])
def test_predict_with_an_exported_model_gives_the_checkpoints_top5(
    tmp_path: Path, checkpoints: dict[str, Path], photos: list[Path], variant: str, fmt: str
) -> None:
    """paper: the ImageNet module's 10 crops, each a row of one batch through the exported model, averaged."""
    model, _ = export(tmp_path, checkpoints[variant], f"format={fmt}")
    images = f"images=[{photos[0]},{photos[1]}]"
    from_checkpoint = run_main("alexnet-predict", f"ckpt_path={checkpoints[variant]}", images, cwd=tmp_path)
    from_export = run_main("alexnet-predict", f"model_path={model}", images, cwd=tmp_path)
    assert from_checkpoint.returncode == 0 and from_export.returncode == 0, from_export.stderr[-2000:]
    expected, got = top_classes(from_checkpoint.stdout), top_classes(from_export.stdout)
    assert len(expected) == 2 * min(5, len(read_spec(model)["class_names"])) and str(photos[1]) in from_export.stdout
    assert [name for name, _ in got] == [name for name, _ in expected]
    np.testing.assert_allclose([p for _, p in got], [p for _, p in expected], atol=0.011)  # printed to 0.01 %


def test_bench_inference_writes_its_json(tmp_path: Path) -> None:
    """Tiny: the d2l net at 65 px, batch 1 and 3, two timed calls; torch.compile's minutes of compilation on a
    2-core CPU are left to the real benchmark."""
    paths = "[eager_fp32,channels_last,bf16_autocast,onnxruntime,torch_export]"
    result = run_main("alexnet-bench", "bench=inference", "model=d2l", "model.input_size=65", *TINY[:2],
                      "bench.inference.batch_sizes=[1,3]", "bench.inference.timed_images=2",
                      "bench.inference.min_steps=2", "bench.inference.warmup=1", f"bench.inference.paths={paths}",
                      f"paths.log_dir={tmp_path}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (written,) = tmp_path.glob("bench/*/bench.json")
    bench = json.loads(written.read_text())
    assert list(bench["paths"]) == paths.strip("[]").split(",") and bench["batch_sizes"] == [1, 3]
    for key, per_batch in bench["paths"].items():
        for batch, measured in per_batch.items():
            if key == "bf16_autocast" and "error" in measured:  # a CPU without AVX512-BF16 or AMX, as here
                assert "no native bfloat16 on this device" in measured["error"]
                continue
            assert measured["calls"] == 2, measured
            assert measured["images_per_sec"] == pytest.approx(int(batch) * 1e3 / measured["latency_ms_median"])
            assert measured["latency_ms_p99"] >= measured["latency_ms_median"] > 0
    assert "ONNX Runtime" in result.stdout and "torch.export program" in result.stdout
