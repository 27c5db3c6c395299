"""The catalogue of inputs a user can get wrong, across every entry point: each gives one clear line, no traceback.

Each case runs the installed command as a user would and checks its exit status, the message, and that no
Python traceback reached the terminal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexnet.model import AlexNet
from alexnet.run import build
from conftest import run_cli, train_config

TINY_NET = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> dict[str, Path]:
    """Broken and valid inputs, written once: checkpoints, weights, images, dataset files."""
    root = tmp_path_factory.mktemp("bad_input")
    run = build(train_config(root / "ok", fashion_root, [*TINY_NET, "debug=fdr", "logger=none"]))
    run.trainer.fit(run.module, datamodule=run.datamodule)
    good = root / "good.ckpt"
    run.trainer.save_checkpoint(good)
    truncated = root / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:5000])
    foreign = root / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    paper_weights = root / "paper.pth"
    torch.save(AlexNet(num_classes=10).state_dict(), paper_weights)
    not_an_image = root / "notes.jpg"
    not_an_image.write_text("this is text, not a JPEG")
    corrupt = root / "corrupt_fashion"
    raw = corrupt / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes(b"\x00\x00\x08\x03garbage")
    a_file = root / "a_file"
    a_file.write_text("")
    empty_dir = root / "empty"
    empty_dir.mkdir()
    broken_sweep = root / "broken_sweep"
    (broken_sweep / "0" / ".hydra").mkdir(parents=True)
    (broken_sweep / "0" / ".hydra" / "overrides.yaml").write_text("- model.lrn=true\n")
    (broken_sweep / "0" / "csv").mkdir()
    (broken_sweep / "0" / "csv" / "metrics.csv").write_bytes(b"epoch,step,val/acc_top1\n0,9,\xff\xfe\n")
    return {"good": good, "truncated": truncated, "foreign": foreign, "paper_weights": paper_weights,
            "not_an_image": not_an_image, "corrupt": corrupt, "a_file": a_file, "empty_dir": empty_dir,
            "data": fashion_root, "missing": root / "missing", "broken_sweep": broken_sweep}  # fmt: skip


# (command, arguments with {placeholders} from `files`, exit status, text the message must hold)
CASES = [
    ("alexnet-train", ["model=alexnet"], 1, "Could not find 'model/alexnet'"),
    ("alexnet-train", ["model.lrm=true"], 1, "Could not override 'model.lrm'"),
    ("alexnet-train", ["model.groups=3"], 2, "model.groups=3: conv2 has 96 input and 256 output channels"),
    ("alexnet-train", ["model.input_size=32"], 2, "This net needs model.input_size>="),
    ("alexnet-train", ["model.lrn=maybe"], 2, "model.lrn='maybe': must be true or false."),
    ("alexnet-train", ["model.dropout=1.5"], 2, "model.dropout=1.5: must be a probability in [0, 1)."),
    ("alexnet-train", ["model.activation=gelu"], 2, "model.activation='gelu': choose one of relu, tanh."),
    ("alexnet-train", ["data.root={data}", "data.batch_size=0"], 2, "data.batch_size=0: must be a positive integer."),
    ("alexnet-train", ["data.root={data}", "data.val_size=100000"], 2, "data.val_size=100000 leaves no training"),
    ("alexnet-train", ["data.root={missing}", "data.download=false"], 2, "Fashion-MNIST is not under data.root="),
    ("alexnet-train", ["data.root={corrupt}"], 2, "Could not read the Fashion-MNIST IDX files"),
    ("alexnet-train", ["module.nonfinite_loss=ignore"], 2, "module.nonfinite_loss='ignore': choose one of stop, skip."),
    ("alexnet-train", ["data.normalization=foo"], 2, "data.normalization='foo': choose paper (raw 0-255 pixels"),
    ("alexnet-train", ["resume={empty_dir}"], 2, "no run to continue"),
    ("alexnet-train", ["data.root={data}", "ckpt_path={missing}"], 2, "no such file"),
    ("alexnet-train", ["data.root={data}", "ckpt_path={truncated}"], 2, "is not a readable Lightning checkpoint"),
    ("alexnet-train", ["paths.log_dir={a_file}/out"], 2, "cannot write to the output folder"),
    ("alexnet-train", ["-m", "trainer=ddp", "trainer.devices=2"], 2, "cannot run inside a local Hydra multirun"),
    ("alexnet-eval", ["ckpt_path={missing}"], 2, "no such file"),
    ("alexnet-eval", ["ckpt_path={truncated}"], 2, "is not a readable checkpoint"),
    ("alexnet-eval", ["ckpt_path={foreign}"], 2, "was not written by alexnet-train"),
    ("alexnet-eval", ["model=d2l", "model.weights={paper_weights}"], 2, "does not fit this net"),
    ("alexnet-eval", ["ckpt_path={good}", "data.test_crops=10"], 2, "(FashionMNISTDataModule) has no such setting"),
    ("alexnet-predict", ["ckpt_path={good}", "images=[{not_an_image}]"], 2, "Unreadable image"),
    ("alexnet-predict", ["ckpt_path={good}", "images=[{missing}]"], 2, "is neither a file nor a folder"),
    ("alexnet-predict", ["ckpt_path={good}"], 2, "Give the images to classify"),
    ("alexnet-summary", ["model.groups=5"], 2, "model.groups=5"),
    ("alexnet-bench", ["bench.steps=0"], 2, "bench.steps=0: must be a positive integer."),
    ("alexnet-report", ["{missing}"], 2, "no such folder. Give a multirun folder"),
    ("alexnet-report", ["{empty_dir}"], 2, "holds no job folders"),
    ("alexnet-report", ["{broken_sweep}"], 2, "metrics.csv is not a readable metrics file (UnicodeDecodeError"),
    ("alexnet-figures", ["ckpt_path={missing}"], 2, "no such file"),
]


@pytest.mark.parametrize(
    ("command", "args", "status", "message"), CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES]
)
def test_bad_input_gives_one_clear_message(
    tmp_path: Path, files: dict[str, Path], command: str, args: list[str], status: int, message: str
) -> None:
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags (-m) come before the overrides
    overrides = [a.format(**files) for a in args if not a.startswith("-")]
    # summary writes nothing; report takes a folder, not Hydra overrides
    log_dir = [] if command in ("alexnet-summary", "alexnet-report") else [f"paths.log_dir={tmp_path}"]
    result = run_cli(command, *flags, *log_dir, *overrides, cwd=tmp_path)
    assert result.returncode == status, result.stderr[-2000:]
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout


def test_the_catalogue_has_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20 and len({(c[0], tuple(c[1])) for c in CASES}) == len(CASES)
