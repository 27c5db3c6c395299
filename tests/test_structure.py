"""The code's shape that the rest relies on: thin entry points that never import each other, Hydra's global
state read only in ``main()``, and the interfaces the entry points share."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import alexnet
from alexnet.config import Invocation
from alexnet.model import AlexNet, Ensemble, log_mean_softmax
from conftest import compose_config

PACKAGE = Path(alexnet.__file__).parent
ENTRY_POINTS = {"train", "evaluate", "predict", "summary", "bench", "report", "figures", "prepare"}
MODULES = sorted(PACKAGE.rglob("*.py"))


def imported_modules(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_an_entry_point(path: Path) -> None:
    imported = imported_modules(ast.parse(path.read_text()))
    assert not {f"alexnet.{name}" for name in ENTRY_POINTS} & imported


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_tests_reach_commands_through_the_library_or_as_commands(path: Path) -> None:
    """Tests run a command as a user does (``run_cli``, ``run_main`` by its script name) or call the library."""
    imported = imported_modules(ast.parse(path.read_text()))
    assert not {f"alexnet.{name}" for name in ENTRY_POINTS} & imported


def test_entry_points_are_the_console_scripts_and_stay_thin() -> None:
    import tomllib

    scripts = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    modules = {target.split(":")[0].removeprefix("alexnet.") for target in scripts.values()}
    assert modules >= ENTRY_POINTS
    for name in modules:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        assert {f.name for f in functions} <= {"main"}, f"{name}.py holds logic"
        assert all(len(f.body) <= 5 for f in functions), f"{name}.py: parse and call, nothing more"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_hydra_global_config_is_read_only_in_main(path: Path) -> None:
    tree = ast.parse(path.read_text())
    mains = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "main"]
    inside_main = {id(node) for m in mains for node in ast.walk(m)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "HydraConfig":
            assert id(node) in inside_main, f"{path.name}:{node.lineno} reads HydraConfig outside main()"


def test_invocation_carries_what_hydra_knows() -> None:
    from hydra import compose, initialize_config_dir

    from alexnet.config import CONFIG_DIR

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
