"""What ``alexnet-bench bench=inference`` measures: inference images/s and latency (median, p99) of one net at
batch 1 and batch 64 along every path a trained net can be served by: eager float32, eager with the fast paths
(channels_last, bf16 autocast, ``torch.compile`` where the machine can compile), ONNX Runtime and the
``torch.export`` program, on the GPU when there is one (ONNX Runtime: the providers its installed package has).

Each call is timed alone (synchronised on a GPU), after ``warmup`` untimed calls; a path that cannot run here
(``torch.compile`` without a C++ compiler, bf16 on a GPU without it) is recorded with its reason, not fatal. The
input is random: speed does not depend on the pixels.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alexnet.bench.training_paths import gpu_name, synchronize
from alexnet.errors import UserError
from alexnet.export.onnx_file import write_onnx
from alexnet.export.program_file import write_program
from alexnet.models.exported import ExportedModel, require_export_packages

log = logging.getLogger(__name__)

PATHS = {
    "eager_fp32": "eager fp32",
    "channels_last": "eager fp32, channels_last",
    "bf16_autocast": "eager, bf16 autocast",
    "compile": "torch.compile (inductor)",
    "onnxruntime": "ONNX Runtime",
    "torch_export": "torch.export program",
}


def latencies(call: Callable[[], Any], device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    synchronize(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float], batch: int) -> dict[str, float]:
    median = float(np.median(times))
    return {
        "images_per_sec": batch / median,
        "latency_ms_median": 1e3 * median,
        "latency_ms_p99": 1e3 * float(np.percentile(times, 99)),
        "calls": len(times),
    }


class PathUnavailable(RuntimeError):
    """A path this machine does not run natively: recorded with the reason, not timed."""


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU that says so, a CPU with AVX512-BF16 or AMX
    (oneDNN's check). Elsewhere oneDNN emulates it, several times slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def path_calls(
    net: torch.nn.Module, device: torch.device, folder: Path, size: tuple[int, ...], emulated_bf16: bool
) -> dict[str, Any]:
    """For each path, a function from a batch (on ``device``, NCHW float32) to a callable that runs it once."""
    example = torch.randn(2, *size)

    def eager(x: torch.Tensor) -> Callable[[], Any]:
        return lambda: net(x)

    def channels_last(x: torch.Tensor) -> Callable[[], Any]:
        nhwc_net = _copy(net).to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        return lambda: nhwc_net(x)

    def bf16(x: torch.Tensor) -> Callable[[], Any]:
        if not emulated_bf16 and not native_bf16(device):
            raise PathUnavailable(
                "no native bfloat16 on this device (oneDNN would emulate it); bench.inference.emulated_bf16=true "
                "times it anyway"
            )

        def run() -> Any:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return net(x)

        return run

    compiled: dict[str, Any] = {}

    def compile_(x: torch.Tensor) -> Callable[[], Any]:
        if "net" not in compiled:
            compiled["net"] = torch.compile(_copy(net), dynamic=False)
        start = time.perf_counter()
        compiled["net"](x)  # compiles for this shape; the first call's time is reported apart
        synchronize(device)
        compiled.setdefault("compile_s", {})[int(x.shape[0])] = time.perf_counter() - start
        return lambda: compiled["net"](x)

    exported: dict[str, Any] = {}

    def onnxruntime(x: torch.Tensor) -> Callable[[], Any]:
        if "onnx" not in exported:
            require_export_packages("The ONNX Runtime path")
            write_onnx(net.cpu(), example, folder / "model.onnx")
            net.to(device)
            exported["onnx"] = ExportedModel(folder / "model.onnx")
        x_host = x.cpu()
        return lambda: exported["onnx"](x_host)  # ONNX Runtime's CPU provider: the installed package's

    def program(x: torch.Tensor) -> Callable[[], Any]:
        if "program" not in exported:
            write_program(net.cpu(), example, folder / "model.pt2")
            net.to(device)
            exported["program"] = torch.export.load(str(folder / "model.pt2")).module().to(device)  # written here
        return lambda: exported["program"](x)

    return {
        "eager_fp32": eager,
        "channels_last": channels_last,
        "bf16_autocast": bf16,
        "compile": compile_,
        "onnxruntime": onnxruntime,
        "torch_export": program,
        "_compiled": compiled,
    }


def _copy(net: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(net)


def inference_benchmark(cfg: DictConfig) -> dict[str, Any]:
    """Every path at every batch size; returns what ``bench.json`` holds and writes it."""
    settings = cfg.bench.inference
    unknown = [p for p in settings.paths if p not in PATHS]
    if unknown:
        raise UserError(
            f"bench.inference.paths: unknown {', '.join(map(str, unknown))}; choose from {', '.join(PATHS)}."
        )
    folder = Path(cfg.paths.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if settings.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if settings.device == "auto" else settings.device))  # fmt: skip
    torch.manual_seed(cfg.seed or 0)
    model_cfg = OmegaConf.merge(cfg.model, {"compile": False, "channels_last": False, "weights": None})
    net = instantiate(model_cfg).eval().to(device)
    size = (net.in_channels, net.input_size, net.input_size)
    calls = path_calls(net, device, folder, size, bool(settings.emulated_bf16))
    results: dict[str, dict[str, Any]] = {}
    for key in settings.paths:
        results[key] = {}
        for batch in settings.batch_sizes:
            steps = max(settings.min_steps, math.ceil(settings.timed_images / batch))
            x = torch.randn(batch, *size, device=device)
            try:
                with torch.no_grad():
                    call = calls[key](x)
                    measured = summary(latencies(call, device, settings.warmup, steps), batch)
            except UserError:
                raise
            except Exception as error:  # a path this machine cannot run: recorded, the others go on
                measured = {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"}
                log.warning("%s at batch %d: %s", PATHS[key], batch, measured["error"])
            results[key][str(batch)] = measured
            log.info("%s, batch %d: %s", PATHS[key], batch, measured)
    result = {
        "suite": "inference",
        "device": str(device),
        "device_name": gpu_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "onnxruntime_providers": _onnx_providers(),
        "model_config": OmegaConf.to_container(model_cfg, resolve=True),
        "parameters": sum(p.numel() for p in net.parameters()),
        "batch_sizes": list(settings.batch_sizes),
        "warmup": settings.warmup,
        "paths": results,
        "compile_seconds_first_call": calls["_compiled"].get("compile_s", {}),
    }
    (folder / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _onnx_providers() -> list[str] | None:
    import importlib.util

    # What ExportedModel asks for, whatever else the installed package offers.
    return ["CPUExecutionProvider"] if importlib.util.find_spec("onnxruntime") else None


def format_inference_table(result: dict[str, Any]) -> str:
    batches = result["batch_sizes"]
    header = f"{'path':<28}" + "".join(f"{f'batch {b}: images/s':>20}{'median ms':>11}{'p99 ms':>9}" for b in batches)
    lines = [
        f"device: {result['device']} ({result['device_name']}), {result['model_config']['input_size']} px, "
        f"{result['parameters']:,} parameters, {result['threads']} threads",
        header,
    ]
    for key, per_batch in result["paths"].items():
        row = f"{PATHS[key]:<28}"
        for b in batches:
            m = per_batch[str(b)]
            if "error" in m:
                row += f"{'not run':>20}{'-':>11}{'-':>9}"
            else:
                row += f"{m['images_per_sec']:>20.1f}{m['latency_ms_median']:>11.2f}{m['latency_ms_p99']:>9.2f}"
        lines.append(row)
    errors = [f"{PATHS[k]}: {m[str(b)]['error']}" for k, m in result["paths"].items() for b in batches
              if "error" in m[str(b)]]  # fmt: skip
    return "\n".join(lines + [f"not run: {e}" for e in dict.fromkeys(errors)])
