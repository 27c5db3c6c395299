"""The catalogue of inputs a user can get wrong, across every entry point: each gives one clear line, no traceback.

Each case runs a console script as a user would and checks its exit status, the message, and that no Python
traceback reached the terminal. Most run in this process (``run_main``: the entry point's ``main()`` with
``sys.argv`` set), which costs no Python start; a handful run the installed command in a subprocess.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.models.alexnet import AlexNet
from alexnet.run.build import build
from alexnet.run.training import train
from conftest import WNIDS, make_imagenet, make_photo_folder, run_cli, run_main, train_config

TINY_NET = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32"]


def write_pickling_program(path: Path) -> None:
    """A torch.export archive whose sample inputs are a pickled object (argparse.Namespace, harmless here):
    torch.export.load would unpickle it with weights_only=False after the weights-only read fails."""
    program = torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),))
    torch.export.save(program, path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO()
    torch.save(argparse.Namespace(x=1), buffer)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, buffer.getvalue() if "sample_inputs" in name else data)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> dict[str, Path]:
    """Broken and valid inputs, written once: checkpoints, weights, images, dataset files, run folders."""
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
    scientific = root / "counts.tiff"  # 32-bit integer pixels: no brightness scale
    Image.fromarray(np.arange(64 * 64, dtype=np.int32).reshape(64, 64) * 1000, "I").save(scientific)
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
    # A finished run (one epoch: last.ckpt and the best epoch_000.ckpt), and damaged copies of it.
    finished = root / "finished"
    train(train_config(finished, fashion_root, [*TINY_NET, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                                                "trainer.limit_val_batches=1", "test=false"]))  # fmt: skip
    run_folder = finished / "run"
    bad_config = root / "bad_config_run"
    shutil.copytree(run_folder, bad_config)
    (bad_config / "config_resolved.yaml").write_bytes(b"\xff\xfe\x00 not UTF-8 \x9c")
    damaged = root / "damaged_run"
    shutil.copytree(run_folder, damaged)
    last = damaged / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:4000])
    broken_sweep = root / "broken_sweep"  # an alexnet-train -m folder whose metrics.csv is not UTF-8
    (broken_sweep / "0" / ".hydra").mkdir(parents=True)
    (broken_sweep / "0" / ".hydra" / "overrides.yaml").write_text("- model.lrn=true\n")
    (broken_sweep / "0" / "csv").mkdir()
    (broken_sweep / "0" / "csv" / "metrics.csv").write_bytes(b"epoch,step,val/acc_top1\n0,9,\xff\xfe\n")
    # Prepared sets whose manifest.json is cut short, or edited so that its counts disagree.
    cut_manifest, uneven_manifest = root / "cut_manifest", root / "uneven_manifest"
    for folder in (cut_manifest, uneven_manifest):
        folder.mkdir()
    (cut_manifest / "manifest.json").write_text('{"classes": ["n01440764", ')
    uneven = {"classes": ["a", "b"], "format": "jpeg", "resize_size": 256, "jpeg_quality": 90, "write_order_seed": 0,
              "splits": {"train": {"images": 5, "per_class": [2, 2]}}}  # fmt: skip
    (uneven_manifest / "manifest.json").write_text(json.dumps(uneven))
    # Exported models: a damaged ONNX file, a program archive that would unpickle an object, a file of another kind.
    corrupt_onnx = root / "corrupt.onnx"
    corrupt_onnx.write_bytes(b"\x08\x07\x12\x04this is not a protobuf of an ONNX graph")
    pickling_pt2 = root / "pickling.pt2"
    write_pickling_program(pickling_pt2)
    # ImageNet folders: val/ with fewer classes than train/.
    fewer = make_imagenet(root / "imagenet_fewer", {"train": 1, "val": 1})
    shutil.rmtree(fewer / "val" / WNIDS[2])
    # Your own images: 3 classes of 3 photos, and a copy with an empty class folder; weights that fit no layer.
    photos = make_photo_folder(root / "photos", ["face", "jacket", "sky"], 3)
    empty_class = root / "photos_empty_class"
    shutil.copytree(photos, empty_class)
    (empty_class / "shirt").mkdir()
    no_layer = root / "no_layer.pth"
    torch.save({"encoder.weight": torch.zeros(4, 4)}, no_layer)
    return {"good": good, "truncated": truncated, "foreign": foreign, "paper_weights": paper_weights,
            "not_an_image": not_an_image, "scientific": scientific, "corrupt": corrupt, "a_file": a_file,
            "empty_dir": empty_dir, "data": fashion_root, "missing": root / "missing", "run": run_folder,
            "bad_config": bad_config, "damaged": damaged, "broken_sweep": broken_sweep, "fewer": fewer,
            "cut_manifest": cut_manifest, "uneven_manifest": uneven_manifest, "photos": photos,
            "empty_class": empty_class, "no_layer": no_layer,
            "corrupt_onnx": corrupt_onnx, "pickling_pt2": pickling_pt2}  # fmt: skip


@pytest.fixture(autouse=True)
def empty_torch_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's hub cache without torchvision's weights (model.weights=IMAGENET1K_V1 offline)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


# (command, arguments with {placeholders} from `files`, exit status, text the message must hold)
CASES = [
    # alexnet-train: composition (Hydra's own errors exit with 1)
    ("alexnet-train", ["model=alexnet"], 1, "Could not find 'model/alexnet'"),
    ("alexnet-train", ["model.lrm=true"], 1, "Could not override 'model.lrm'"),
    # alexnet-train: the model
    ("alexnet-train", ["model.groups=3"], 2, "model.groups=3: conv2 has 96 input and 256 output channels"),
    ("alexnet-train", ["model.input_size=32"], 2, "This net needs model.input_size>="),
    ("alexnet-train", ["model.lrn=maybe"], 2, "model.lrn='maybe': must be true or false."),
    ("alexnet-train", ["model.dropout=1.5"], 2, "model.dropout=1.5: must be a probability in [0, 1)."),
    ("alexnet-train", ["model.activation=gelu"], 2, "model.activation='gelu': choose one of relu, tanh."),
    ("alexnet-train", ["model.lrn_k=abc"], 2, "model.lrn_k='abc': must be a finite number >= 0."),
    ("alexnet-train", ["model.init_std=0"], 2, "model.init_std=0: must be a finite number > 0."),
    (
        "alexnet-train",
        ["data=imagenet", "model.num_classes=3"],
        2,
        "model.num_classes=3 but data.num_classes=1000; the net's outputs follow the data's classes: set "
        "data.num_classes=3.",
    ),  # fmt: skip
    # alexnet-train: top-level values
    ("alexnet-train", ["seed=-1"], 2, "seed=-1: must be an integer from 0 to 4294967295 or null."),
    ("alexnet-train", ["seed=abc"], 2, "seed='abc': must be an integer from 0 to 4294967295 or null."),
    ("alexnet-train", ["test=maybe"], 2, "test='maybe': must be true or false."),
    ("alexnet-train", ["test_weights=final"], 2, "test_weights='final': must be one of best, last."),
    # alexnet-train: data
    ("alexnet-train", ["data.root={data}", "data.batch_size=0"], 2, "data.batch_size=0: must be a positive integer."),
    ("alexnet-train", ["data.batch_size=2.5"], 2, "data.batch_size=2.5: must be a positive integer."),
    ("alexnet-train", ["data.root={data}", "data.val_size=100000"], 2, "data.val_size=100000 leaves no training"),
    (
        "alexnet-train",
        ["data.val_size=nan"],
        2,
        "data.val_size=nan: must be a count (a non-negative integer) or a fraction between 0 and 1",
    ),  # fmt: skip
    ("alexnet-train", ["data.split_seed=abc"], 2, "data.split_seed='abc': must be an integer from 0 to"),
    ("alexnet-train", ["data.mean=[0.5,0.5]"], 2, "data.mean=[0.5, 0.5]: must be a list of 1 or 3 finite numbers."),
    ("alexnet-train", ["data.std=[0]"], 2, "data.std=[0]: must be a list of 1 or 3 finite numbers > 0."),
    ("alexnet-train", ["data=imagenet", "data.num_workers=-1"], 2, "data.num_workers=-1: must be a non-negative"),
    ("alexnet-train", ["data=imagenet", "data.test_crops=5"], 2, "data.test_crops=5: must be one of 1, 10."),
    ("alexnet-train", ["data.root={missing}", "data.download=false"], 2, "Fashion-MNIST is not under data.root="),
    ("alexnet-train", ["data.root={corrupt}"], 2, "Could not read the Fashion-MNIST IDX files"),
    (
        "alexnet-train",
        ["data=imagenet", "data.root={fewer}", "data.num_classes=3", *TINY_NET],
        2,
        "must hold the same class folders (2 and 3; only in val/: none; only in train/: n01484850)",
    ),  # fmt: skip
    ("alexnet-train", ["data.normalization=foo"], 2, "data.normalization='foo': must be one of per_channel, paper"),
    # alexnet-train: your own images (data=image_folder) and pretrained weights
    ("alexnet-train", ["data=image_folder", "data.root={missing}"], 2, "ImageFolder: data.root="),
    ("alexnet-train", ["data=image_folder", "data.root={empty_class}", *TINY_NET], 2, "class folders without images"),
    (
        "alexnet-train",
        ["data=image_folder", "data.root={photos}", "data.val_size=8", *TINY_NET],
        2,
        "data.val_size=8 cannot hold out a share of every class of 9 images in 3 classes",
    ),  # fmt: skip
    (
        "alexnet-train",
        ["model=torchvision", "model.weights=IMAGENET1K_V1"],
        2,
        "model.weights=IMAGENET1K_V1: cannot download https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ),  # fmt: skip
    ("alexnet-train", ["model.weights={no_layer}"], 2, "no_layer.pth fits no layer of this net"),
    ("alexnet-train", ["module.freeze_features_epochs=-2"], 2, "module.freeze_features_epochs=-2: must be an integer"),
    ("alexnet-train", ["module.features_lr_scale=-1"], 2, "module.features_lr_scale=-1: must be a finite number >= 0"),
    # alexnet-train: optimizer, scheduler, module, trainer, callbacks
    ("alexnet-train", ["optimizer.lr=-1"], 2, "optimizer.lr=-1: must be a finite number >= 0."),
    ("alexnet-train", ["optimizer.momentum=-1"], 2, "optimizer.momentum=-1: must be a finite number from 0 to 1."),
    ("alexnet-train", ["optimizer.weight_decay=-1"], 2, "optimizer.weight_decay=-1: must be a finite number >= 0."),
    ("alexnet-train", ["scheduler=step", "scheduler.step_size=0"], 2, "scheduler.step_size=0: must be a positive"),
    ("alexnet-train", ["scheduler.factor=1.5"], 2, "scheduler.factor=1.5: must be a finite number > 0 and < 1."),
    ("alexnet-train", ["module.label_smoothing=2"], 2, "module.label_smoothing=2: must be a finite number from 0"),
    ("alexnet-train", ["module.nonfinite_loss=ignore"], 2, "module.nonfinite_loss='ignore': must be one of stop"),
    ("alexnet-train", ["module.scheduler_interval=hour"], 2, "module.scheduler_interval='hour': must be one of epoch"),
    ("alexnet-train", ["trainer.max_epochs=-5"], 2, "trainer.max_epochs=-5: must be an integer >= -1 or null."),
    ("alexnet-train", ["trainer.limit_train_batches=1.5"], 2, "trainer.limit_train_batches=1.5: must be null"),
    ("alexnet-train", ["trainer.log_every_n_steps=0"], 2, "trainer.log_every_n_steps=0: must be a positive integer."),
    ("alexnet-train", ["trainer.precision=bf17"], 2, "trainer.precision='bf17': must be one of transformer-engine,"),
    (
        "alexnet-train",
        ["trainer.accelerator=tpu"],
        2,
        "trainer.accelerator='tpu': must be auto or an accelerator this machine has (cpu).",
    ),  # fmt: skip
    (
        "alexnet-train",
        ["trainer.accumulate_grad_batches=0"],
        2,
        "trainer.accumulate_grad_batches=0: must be a positive",
    ),
    ("alexnet-train", ["lock=maybe"], 2, "lock='maybe': must be true or false."),
    (
        "alexnet-train",
        ["callbacks.checkpoint.every_n_train_steps=-1"],
        2,
        "callbacks.checkpoint.every_n_train_steps=-1: must be a non-negative integer or null.",
    ),  # fmt: skip
    # alexnet-train: checkpoints, run folders, resuming
    ("alexnet-train", ["data.root={data}", "ckpt_path={missing}"], 2, "no such file"),
    ("alexnet-train", ["data.root={data}", "ckpt_path={truncated}"], 2, "is not a readable checkpoint"),
    (
        "alexnet-train",
        ["data.root={data}", "ckpt_path={good}"],
        2,
        "holds another net than these model settings: net.features.0.weight is [8, 1, 11, 11] there and "
        "[96, 1, 11, 11] here (and 14 more)",
    ),  # fmt: skip
    ("alexnet-train", ["ckpt_path=[{good},{good}]", *TINY_NET], 2, "alexnet-train starts from one checkpoint"),
    ("alexnet-train", ["ckpt_path=last"], 2, "ckpt_path=last: no run to continue under"),
    ("alexnet-train", ["resume={empty_dir}"], 2, "no run to continue"),
    ("alexnet-train", ["resume={missing}"], 2, "no run to continue"),
    ("alexnet-train", ["--cfg", "job", "resume={missing}"], 2, "no run to continue"),
    ("alexnet-train", ["resume={bad_config}"], 2, "config_resolved.yaml cannot be read (UnicodeDecodeError"),
    (
        "alexnet-train",
        ["resume={damaged}"],
        2,
        "last.ckpt is damaged (not a readable checkpoint). Intact checkpoints of this run: ",
    ),  # fmt: skip
    ("alexnet-train", ["resume={run}", "model.groups=2"], 2, "model.groups=2: a resumed run keeps its net"),
    ("alexnet-train", ["resume={run}", "model=paper"], 2, "model: a resumed run keeps its configuration"),
    ("alexnet-train", ["resume={run}", "~trainer.max_epochs"], 2, "a resumed run keeps its configuration"),
    ("alexnet-train", ["resume={run}", "data.num_classes=5"], 2, "model.num_classes=10 but data.num_classes=5"),
    ("alexnet-train", ["hydra.run.dir={run}"], 2, "already holds a run (config_resolved.yaml)"),
    ("alexnet-train", ["paths.log_dir={a_file}/out"], 2, "cannot write to the output folder"),
    ("alexnet-train", ["-m", "trainer=ddp_cpu", "trainer.devices=2"], 2, "cannot run inside a local Hydra multirun"),
    # alexnet-eval
    ("alexnet-eval", ["ckpt_path={missing}"], 2, "no such file"),
    ("alexnet-eval", ["ckpt_path={truncated}"], 2, "is not a readable checkpoint"),
    ("alexnet-eval", ["ckpt_path={foreign}"], 2, "was not written by alexnet-train"),
    ("alexnet-eval", ["ckpt_path=[]"], 2, "ckpt_path=[]: must be a checkpoint file, or a non-empty list of them"),
    ("alexnet-eval", ["ckpt_path=[{good},{missing}]"], 2, "no such file"),
    ("alexnet-eval", ["seed=-1"], 2, "seed=-1: must be an integer from 0 to 4294967295 or null."),
    ("alexnet-eval", ["model=d2l", "model.weights={paper_weights}"], 2, "does not fit this net"),
    ("alexnet-eval", ["ckpt_path={good}", "data.test_crops=10"], 2, "(FashionMNISTDataModule) has no such setting"),
    ("alexnet-eval", ["ckpt_path={good}", "data=imagenet"], 2, "was trained on FashionMNISTDataModule data, not Image"),
    # alexnet-predict
    ("alexnet-predict", ["ckpt_path={good}", "images=[{not_an_image}]"], 2, "Unreadable image"),
    ("alexnet-predict", ["ckpt_path={good}", "images=[{scientific}]"], 2, "has no standard brightness range"),
    ("alexnet-predict", ["ckpt_path={good}", "images=[{missing}]"], 2, "is neither a file nor a folder"),
    ("alexnet-predict", ["ckpt_path={good}"], 2, "Give the images to classify"),
    (
        "alexnet-predict",
        ["ckpt_path={good}", "images=[{not_an_image}]", "top_k=-2"],
        2,
        "top_k=-2: must be a positive integer.",
    ),  # fmt: skip
    # alexnet-summary, alexnet-bench, alexnet-report
    ("alexnet-summary", ["model.groups=5"], 2, "model.groups=5"),
    ("alexnet-summary", ["model.lrn_beta=-1"], 2, "model.lrn_beta=-1: must be a finite number >= 0."),
    ("alexnet-summary", ["model.input_size=100000"], 2, "GiB as float32), more than this machine's"),
    ("alexnet-bench", ["bench.steps=0"], 2, "bench.steps=0: must be a positive integer."),
    ("alexnet-bench", ["bench.warmup=-1"], 2, "bench.warmup=-1: must be a positive integer."),
    ("alexnet-report", ["{missing}"], 2, "no such folder. Give a multirun folder"),
    ("alexnet-report", ["{empty_dir}"], 2, "holds no job folders"),
    ("alexnet-report", ["{broken_sweep}"], 2, "metrics.csv is not a readable metrics file (UnicodeDecodeError"),
    ("alexnet-figures", ["ckpt_path={missing}"], 2, "no such file"),
    (
        "alexnet-bench",
        ["bench=imagenet", "bench.imagenet.workers=0"],
        2,
        "bench.imagenet.workers=0: must be a positive integer.",
    ),  # fmt: skip
    # alexnet-export and exported models (alexnet-predict model_path=)
    ("alexnet-export", ["ckpt_path={good}", "format=tflite"], 2, "format='tflite': must be one of onnx, torch_export."),
    ("alexnet-export", ["ckpt_path={good}", "export.layout=hwc"], 2, "export.layout='hwc': must be one of nchw, nhwc."),
    ("alexnet-export", ["ckpt_path={missing}"], 2, "no such file"),
    ("alexnet-export", ["ckpt_path=[{good},{good}]"], 2, "alexnet-export exports one checkpoint"),
    ("alexnet-predict", ["model_path={corrupt_onnx}", "images=[{a_file}]"], 2, "is not a readable ONNX model"),
    (
        "alexnet-predict",
        ["model_path={pickling_pt2}", "images=[{a_file}]"],
        2,
        "is not a program archive alexnet-export writes (data/sample_inputs/model.pt holds more than tensors)",
    ),  # fmt: skip
    ("alexnet-predict", ["model_path={good}", "images=[{a_file}]"], 2, "give an .onnx file or a .pt2 program"),
    ("alexnet-predict", ["model_path={missing}.onnx", "images=[{a_file}]"], 2, "missing.onnx: no such file."),
    (
        "alexnet-predict",
        ["model_path={corrupt_onnx}", "ckpt_path={good}", "images=[{a_file}]"],
        2,
        "Give ckpt_path= or model_path= (an exported model), not both.",
    ),  # fmt: skip
    # the Optuna search (hparams_search=...): refused before any trial starts
    (
        "alexnet-train",
        ["hparams_search=fashion_mnist_optuna", "optimizer.lr=choice([0.1],[0.2])"],
        2,
        "optimizer.lr: Optuna chooses among numbers, strings, booleans or null",
    ),  # fmt: skip
    (
        "alexnet-train",
        ["hparams_search=fashion_mnist_optuna", "hydra.sweeper.direction=up"],
        2,
        "hydra.sweeper.direction=up: must be maximize or minimize.",
    ),  # fmt: skip
    (
        "alexnet-train",
        ["hparams_search=fashion_mnist_optuna", "hydra.sweeper.n_trials=0"],
        2,
        "hydra.sweeper.n_trials=0: must be a positive integer.",
    ),  # fmt: skip
    # alexnet-prepare and data=imagenet_prepared
    ("alexnet-prepare", ["format=png"], 2, "format='png': must be one of jpeg, raw."),
    ("alexnet-prepare", ["source={missing}"], 2, "no such folder. Point it at the ImageFolder copy."),
    ("alexnet-prepare", ["source={empty_dir}", "output={empty_dir}/prepared"], 2, "overlaps source"),
    ("alexnet-train", ["data=imagenet_prepared", "data.decode=gpu"], 2, "data.decode='gpu': must be one of cpu,"),
    (
        "alexnet-train",
        ["data=imagenet_prepared", "data.root={missing}", "data.num_workers=0"],
        2,
        "holds no finished prepared set (no manifest.json). Write one with alexnet-prepare",
    ),  # fmt: skip
    (
        "alexnet-train",
        ["data=imagenet_prepared", "data.root={cut_manifest}", "data.num_workers=0"],
        2,
        "manifest.json is damaged or not alexnet-prepare's: it is not JSON (",
    ),  # fmt: skip
    (
        "alexnet-train",
        ["data=imagenet_prepared", "data.root={uneven_manifest}", "data.num_workers=0", "data.num_classes=2"],
        2,
        "manifest.json is damaged or not alexnet-prepare's: splits.train.per_class sums to 4, not its 5 images. "
        "Write the set again with alexnet-prepare",
    ),  # fmt: skip
]
# A few run the installed command in a subprocess: the console scripts, Hydra's own error path and the exit
# statuses as a shell sees them.
IN_A_SUBPROCESS = {
    ("alexnet-train", "model=alexnet"),
    ("alexnet-train", "seed=-1"),
    ("alexnet-eval", "ckpt_path={truncated}"),
    ("alexnet-predict", "ckpt_path={good} images=[{missing}]"),
    ("alexnet-report", "{missing}"),
}


def case_id(case: tuple) -> str:
    return f"{case[0]} {' '.join(case[1])}"


@pytest.mark.parametrize(("command", "args", "status", "message"), CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_gives_one_clear_message(
    tmp_path: Path, files: dict[str, Path], command: str, args: list[str], status: int, message: str
) -> None:
    flags = [a for a in args if a.startswith("-") or a in ("job", "all")]  # Hydra's flags (-m, --cfg job) first
    overrides = [a.format(**files) for a in args if a not in flags]
    # summary writes nothing; report takes a folder, not Hydra overrides
    log_dir = [] if command in ("alexnet-summary", "alexnet-report") else [f"paths.log_dir={tmp_path}"]
    if (command, " ".join(args)) in IN_A_SUBPROCESS:
        result = run_cli(command, *flags, *log_dir, *overrides, cwd=tmp_path)
    else:
        result = run_main(command, *flags, *log_dir, *overrides, cwd=tmp_path)
    assert result.returncode == status, result.stderr[-2000:]
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout


def test_the_catalogue_has_at_least_fifty_distinct_cases() -> None:
    assert len(CASES) >= 50 and len({case_id(c) for c in CASES}) == len(CASES)
    assert {(c[0], " ".join(c[1])) for c in CASES} >= IN_A_SUBPROCESS


def test_exporting_without_the_export_extra_says_what_to_install(
    tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if onnxruntime were not installed: one line naming the extra, before anything is built."""
    import alexnet.models.exported

    monkeypatch.setattr(alexnet.models.exported, "EXPORT_PACKAGES", ("onnx", "onnxruntime_not_installed"))
    predict = [f"model_path={files['corrupt_onnx']}", f"images=[{files['a_file']}]"]
    for command, args in (("alexnet-export", [f"ckpt_path={files['good']}"]), ("alexnet-predict", predict)):
        result = run_main(command, f"paths.log_dir={tmp_path}", *args, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "needs the optional packages onnxruntime_not_installed, which are not installed: pip install -e " \
               "'.[export]'" in result.stderr  # fmt: skip
