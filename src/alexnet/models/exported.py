"""A net that ``alexnet-export`` wrote, run without this project's training code: an ONNX file through ONNX Runtime
on the CPU, or a ``torch.export`` program archive (``.pt2``). Both read as a callable from a torch batch to logits.

An exported file is input from anyone, like a checkpoint. ONNX files hold a protobuf graph of standard operators
(ONNX Runtime runs no Python). A ``.pt2`` archive is a zip of JSON and tensor bytes, but ``torch.export.load``
warns that it "uses pickle under the hood ... Never load data from an untrusted source": its sample inputs are read
with ``torch.load(weights_only=True)`` *and, when that fails, again with weights_only=False*; weights and
constants marked ``use_pickle`` are read with weights_only=False, custom and opaque objects unpickled. So
``check_program_archive`` reads the archive first and refuses anything torch would unpickle beyond plain tensors,
and only then is it loaded.
"""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.export.pt2_archive import constants as pt2  # the archive's folder and file names

from alexnet.errors import UserError

FORMATS = {".onnx": "onnx", ".pt2": "torch_export"}
# What torch.onnx.export(dynamo=True) and ONNX Runtime need: pyproject.toml's optional extra [export].
EXPORT_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


def require_export_packages(purpose: str) -> None:
    """Refuse, in one line, to go on without the ``[export]`` extra."""
    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"{purpose} needs the optional packages {', '.join(missing)}, which are not installed: "
            "pip install -e '.[export]' (or pip install onnx onnxruntime onnxscript)."
        )


def spec_path(model_path: str | Path) -> Path:
    """The input description written beside an exported model: ``model.onnx`` -> ``model.onnx.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def read_spec(model_path: str | Path) -> dict:
    """The JSON ``alexnet-export`` wrote beside ``model_path`` (plain data: json never runs code)."""
    path = spec_path(model_path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"model_path={model_path}: no {path.name} beside it; an exported model is used with the description "
            "alexnet-export writes next to it (export again with alexnet-export ckpt_path=...)."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not a readable export description ({type(error).__name__}).") from error
    if not isinstance(spec, dict) or not {"input", "class_names", "run_config"} <= set(spec):
        raise UserError(f"{path} was not written by alexnet-export (input, class_names or run_config missing).")
    return spec


def _pickles(data: bytes) -> bool:
    """Whether torch.load's weights-only unpickler refuses ``data``: it would need arbitrary classes."""
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        return True
    return False


def check_program_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive that ``torch.export.load`` would unpickle anything but tensors from (see the
    module's docstring), before it is loaded. Checked against torch 2.14's archive layout (torch/export/pt2_archive):
    ``models/<name>.json``, ``data/weights|constants/<name>_*_config.json`` and raw payloads, sample inputs as a
    weights-only torch file."""

    def refuse(reason: str) -> UserError:
        return UserError(
            f"model_path={path} is not a program archive alexnet-export writes ({reason}); it is not loaded, since "
            "torch.export.load may run code from such a file. Export the checkpoint again with alexnet-export."
        )

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            roots = {name.split("/", 1)[0] for name in names}
            if len(roots) != 1:
                raise refuse("not one archive folder")
            root = roots.pop() + "/"
            inside = {name[len(root) :]: name for name in names}
            if "archive_format" not in inside or not any(n.startswith("models/") for n in inside):
                raise refuse("no archive_format or models/: an older or foreign zip")
            payloads = (pt2.WEIGHTS_DIR, pt2.CONSTANTS_DIR)
            for name, full in inside.items():
                if name.endswith("_config.json") and name.startswith(payloads):
                    entries = json.loads(archive.read(full)).get("config", {})
                    for fqn, payload in entries.items():
                        raw = (pt2.WEIGHT_FILENAME_PREFIX, pt2.TENSOR_CONSTANT_FILENAME_PREFIX)
                        if payload.get("use_pickle") or not str(payload.get("path_name", "")).startswith(raw):
                            raise refuse(f"{fqn} is a pickled or custom object")
                elif name.endswith(".pt") and name.startswith(payloads):
                    raise refuse(f"{name} is a pickled legacy payload")
                elif name.startswith(pt2.SAMPLE_INPUTS_DIR) and _pickles(archive.read(full)):
                    raise refuse(f"{name} holds more than tensors")
                elif name.startswith((pt2.AOTINDUCTOR_DIR, pt2.EXTRA_DIR)) or name.endswith((".so", ".dll")):
                    raise refuse(f"{name} is compiled code or an extra file")
    except UserError:
        raise
    except Exception as error:  # not a zip, a truncated one, JSON that does not parse
        raise refuse(f"{type(error).__name__}: {str(error)[:200]}") from error


class ExportedModel:
    """An exported net as a callable: a float (or, with the graph's own preprocessing, uint8) torch batch in,
    float32 logits (N, classes) out, on the CPU."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.format = FORMATS.get(self.path.suffix)
        if self.format is None:
            raise UserError(f"model_path={self.path}: give an .onnx file or a .pt2 program that alexnet-export wrote.")
        if not self.path.is_file():
            raise UserError(f"model_path={self.path}: no such file.")
        if self.format == "onnx":
            require_export_packages("An ONNX model")
            import onnxruntime

            try:
                self._session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            except Exception as error:  # InvalidProtobuf, Fail: a damaged or foreign file
                raise UserError(
                    f"model_path={self.path} is not a readable ONNX model ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:200]})."
                ) from error
            self._input = self._session.get_inputs()[0].name
        else:
            check_program_archive(self.path)
            try:
                self._program = torch.export.load(str(self.path)).module()
            except Exception as error:
                raise UserError(
                    f"model_path={self.path} is not a readable torch.export program ({type(error).__name__})."
                ) from error

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.format == "onnx":
            (logits,) = self._session.run(None, {self._input: np.ascontiguousarray(x.detach().cpu().numpy())})
            return torch.from_numpy(logits)
        with torch.no_grad():
            return self._program(x.detach().cpu())
