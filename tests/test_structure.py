"""The code's shape that the rest relies on: a folder per concern, imports only downwards, thin entry points that
never import each other, Hydra's global state read only in ``main()``, a run folder's state written only by
``alexnet.run``, and the interfaces the entry points share."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alexnet
from alexnet.config.invocation import Invocation
from alexnet.models.alexnet import AlexNet, Ensemble, log_mean_softmax
from alexnet.run.training import train
from conftest import compose_config, train_config

PACKAGE = Path(alexnet.__file__).parent
CLI = PACKAGE / "cli"
MODULES = sorted(PACKAGE.rglob("*.py"))
# Each folder's floor: a module imports from its own folder and from folders on lower floors, never upwards.
FLOORS = {
    "errors": 0,
    "config": 1,
    "models": 2,
    "optim": 2,
    "data": 2,
    "run": 3,
    "analysis": 4,
    "tracking": 5,
    "export": 5,  # alexnet.export: ONNX and torch.export files of a trained net (alexnet-export)
    "search": 5,  # alexnet.search: the Optuna sweeper's logic (hydra_plugins/ holds only the Hydra plugin)
    "bench": 6,
    "cli": 7,
    "model": 8,  # alexnet.model: the re-export users import AlexNet from
}


def concern(module: str) -> str:
    """``alexnet.run.folder`` -> ``run``; ``alexnet.errors`` -> ``errors``."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def entry_point_modules() -> set[str]:
    import tomllib

    scripts = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    return {target.split(":")[0] for target in scripts.values()}


def test_the_package_is_a_folder_per_concern() -> None:
    top_level = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top_level) <= 8 and top_level == ["__init__.py", "errors.py", "model.py"], top_level
    folders = {p.parent.relative_to(PACKAGE).parts[0] for p in MODULES if p.parent != PACKAGE}
    assert folders == {name for name in FLOORS if name not in ("errors", "model")}, folders


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_only_downwards(path: Path) -> None:
    name = module_name(path)
    if name == "alexnet":
        return
    floor = FLOORS[concern(name)]
    for imported in imported_modules(ast.parse(path.read_text())):
        if imported.startswith("alexnet."):
            other = concern(imported)
            assert other == concern(name) or FLOORS[other] < floor, f"{name} imports {imported} from a floor above"


def test_the_model_file_imports_only_torch() -> None:
    """Torch and the standard library."""
    imported = imported_modules(ast.parse((PACKAGE / "models" / "alexnet.py").read_text()))
    assert {m.split(".")[0] for m in imported} <= {"__future__", "math", "os", "collections", "torch"}, imported


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_an_entry_point(path: Path) -> None:
    imported = imported_modules(ast.parse(path.read_text()))
    assert not entry_point_modules() & imported


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_tests_reach_commands_through_the_library_or_as_commands(path: Path) -> None:
    """Tests run a command as a user does (``run_cli``, ``run_main`` by its script name) or call the library."""
    imported = imported_modules(ast.parse(path.read_text()))
    assert not entry_point_modules() & imported


def test_entry_points_are_the_console_scripts_and_stay_thin() -> None:
    modules = entry_point_modules()
    assert {m.rsplit(".", 1)[0] for m in modules} == {"alexnet.cli"}
    assert {f"alexnet.cli.{p.stem}" for p in CLI.glob("*.py")} - modules == {
        "alexnet.cli.__init__",
        "alexnet.cli.command",
    }
    for name in modules:
        tree = ast.parse((CLI / f"{name.rsplit('.', 1)[1]}.py").read_text())
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        assert {f.name for f in functions} <= {"main"}, f"{name} holds logic"
        assert all(len(f.body) <= 5 for f in functions), f"{name}: parse and call, nothing more"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_hydra_global_config_is_read_only_in_main(path: Path) -> None:
    tree = ast.parse(path.read_text())
    mains = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "main"]
    inside_main = {id(node) for m in mains for node in ast.walk(m)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "HydraConfig":
            assert id(node) in inside_main, f"{path.name}:{node.lineno} reads HydraConfig outside main()"


class WriteRecorder:
    """An audit hook (``sys.addaudithook``) that records, while on, every file written, renamed, created or removed
    under ``folder``, with the innermost frame of this package's code on the stack at that moment."""

    WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def __init__(self) -> None:
        self.folder: str | None = None
        self.writes: list[tuple[str, str]] = []  # (path relative to the folder, module of this package)

    def __call__(self, event: str, args: tuple) -> None:
        if self.folder is None:
            return
        if event == "open":
            path, mode, flags = args
            writing = any(c in (mode or "") for c in "wax+") if mode else bool((flags or 0) & self.WRITING)
            paths = [path] if writing else []
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree"):
            paths = [args[0], args[1]] if event == "os.rename" else [args[0]]
        else:
            return
        for path in paths:
            if isinstance(path, str | bytes | os.PathLike) and not isinstance(path, int):
                path = os.path.abspath(os.fsdecode(path))
                if path.startswith(self.folder + os.sep):
                    self.writes.append((os.path.relpath(path, self.folder), self._innermost()))

    @staticmethod
    def _innermost() -> str:
        frame = sys._getframe(2)
        package = str(PACKAGE) + os.sep
        while frame is not None:
            if frame.f_code.co_filename.startswith(package):
                return module_name(Path(frame.f_code.co_filename))
            frame = frame.f_back
        return "(no alexnet frame)"


# What a run resumes and is scored from: written by alexnet.run alone.
STATE_FILES = ("config_resolved.yaml", "checkpoints/", "csv/", ".lock")


def record_training_writes(tmp_path: Path, data: Path) -> list[tuple[str, str]]:
    """Train a tiny run for an epoch, resume it for a second, and return what the audit hook saw written into its
    folder. Run in a subprocess: an audit hook cannot be removed, and would slow every later test."""
    recorder = WriteRecorder()
    sys.addaudithook(recorder)
    tiny = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32", "data.batch_size=8",
            "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
            "trainer.limit_test_batches=1", "logger=[csv,tensorboard]"]  # fmt: skip
    folder = tmp_path / "run"
    recorder.folder = str(folder)
    train(train_config(tmp_path, data, [*tiny, "trainer.max_epochs=1"]), Invocation())
    resumed = [f"resume={folder}", "trainer.max_epochs=2"]
    train(train_config(tmp_path, data, [*tiny, *resumed]), Invocation(overrides=tuple(resumed)))
    recorder.folder = None
    return recorder.writes


def test_only_the_run_package_writes_a_run_folders_state(tmp_path: Path, fashion_root: Path) -> None:
    script = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_structure; "
        f"from pathlib import Path; "
        f"print('WRITES', json.dumps(test_structure.record_training_writes(Path({str(tmp_path)!r}), "
        f"Path({str(fashion_root)!r}))))"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    line = next(line for line in ran.stdout.splitlines() if line.startswith("WRITES "))
    writes = [tuple(w) for w in json.loads(line.removeprefix("WRITES "))]
    state = [(path, module) for path, module in writes if path.startswith(STATE_FILES)]
    for name in STATE_FILES:
        assert any(path.startswith(name) for path, _ in state), f"{name} was never written: the hook saw nothing"
    outside = sorted({(path, module) for path, module in state if concern(module) != "run"})
    assert not outside, f"run state written from outside alexnet.run: {outside}"


def test_invocation_carries_what_hydra_knows() -> None:
    from hydra import compose, initialize_config_dir

    from alexnet.config.location import CONFIG_DIR

    overrides = ["model.lrn=false", "data.root=/data", "model.groups=1", "experiment=d2l_fashion_mnist"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        hydra = compose("train", overrides, return_hydra_config=True).hydra
    invocation = Invocation.from_hydra(hydra)
    assert invocation.overrides == tuple(overrides) and not invocation.multirun
    assert invocation.job_name == "experiment=d2l_fashion_mnist,model.groups=1,model.lrn=false"  # no paths
    assert invocation.run_group == "d2l_fashion_mnist"
    assert invocation.typed_keys("data.") == ["data.root"]
    sweep = Invocation(overrides=("model.lrn=true",), multirun=True, sweep_dir="/o/multirun/2026-11-25_10-00-00")
    assert sweep.run_group == "sweep-2026-11-25_10-00-00"


def test_crops_and_ensembles_average_softmax_the_same_way() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 7) * 5
    expected = logits.softmax(-1).mean(1).log()
    torch.testing.assert_close(log_mean_softmax(logits, dim=1), expected)
    tiny = {"channels": (8, 16, 16, 16, 16), "hidden_size": 32, "num_classes": 5, "input_size": 67}
    nets = [AlexNet(**tiny).eval(), AlexNet(**tiny).eval()]
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        mean = torch.stack([net(x).softmax(-1) for net in nets]).mean(0)
        torch.testing.assert_close(Ensemble(nets)(x).exp(), mean)


def test_a_confident_prediction_keeps_a_finite_log_probability() -> None:
    logits = torch.tensor([[[200.0, 0.0, -200.0]]])
    assert torch.isfinite(log_mean_softmax(logits, dim=1)).all()


def test_composed_configs_no_longer_carry_unused_module_keys() -> None:
    cfg = compose_config("train", ["paths.root_dir=/tmp", "paths.output_dir=/tmp/run"])
    assert {"net", "optimizer", "scheduler"}.isdisjoint(cfg.module)
