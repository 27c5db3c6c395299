"""Every file under conf/ is composed here, and what it selects is built."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alexnet.config.location import CONFIG_DIR
from alexnet.config.rules import RULES, check_settings
from alexnet.data.fashion_mnist import FashionMNISTDataModule
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.data.imagenet.prepared_reader import PreparedImageNetDataModule
from alexnet.data.imagenet.prepared_writer import PatchSettings
from alexnet.errors import UserError
from alexnet.models.alexnet import AlexNet, ArchitectureError
from alexnet.models.lit_alexnet import LitAlexNet
from alexnet.optim.paper_plateau import PaperPlateau
from alexnet.optim.paper_sgd import PaperSGD
from alexnet.run.build import instantiate_group
from conftest import compose_config

CONFIG_FILES = sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.rglob("*.yaml"))


def compose_file(path: Path, tmp_path: Path, *extra: str) -> DictConfig:
    overrides = [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'run'}", *extra]
    if path.parent == Path("."):
        return compose_config(path.stem, overrides if path.stem == "train" else list(extra))
    if path.parent == Path("bench"):  # options of alexnet-bench, not of alexnet-train
        return compose_config("bench", [f"bench={path.stem}", *overrides])
    return compose_config("train", [f"{path.parent}={path.stem}", *overrides])


def test_the_tree_has_the_documented_groups() -> None:
    groups = {p.parts[0] for p in CONFIG_FILES if len(p.parts) > 1}
    assert groups == {"model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks", "paths",
                      "experiment", "debug", "hparams_search", "hydra", "bench"}  # fmt: skip
    assert {"train.yaml", "summary.yaml"} <= {str(p) for p in CONFIG_FILES}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=str)
def test_every_config_file_composes_and_builds(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    group = path.parts[0] if len(path.parts) > 1 else None
    # GPU trainers are built on the CPU here; their GPU settings are checked below.
    cpu = ["trainer.accelerator=cpu", f"trainer.devices={2 if path.stem == 'ddp' else 1}"] if group == "trainer" else []
    cfg = compose_file(path, tmp_path, *cpu)
    if OmegaConf.select(cfg, "model.weights") == "IMAGENET1K_V1":  # offline: torchvision's weights in torch's cache
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        cache = tmp_path / "torch" / "hub" / "checkpoints"
        cache.mkdir(parents=True)
        torch.save(torchvision.models.alexnet().state_dict(), cache / "alexnet-owt-7be5be79.pth")
    check_settings(cfg)  # every shipped option keeps to the rules a user's overrides are held to
    if group in (None, "model", "experiment", "debug", "bench") and path.stem != "prepare":
        model = instantiate(cfg.model)
        assert isinstance(model, AlexNet)
    if path.stem == "prepare":  # alexnet-prepare builds no model: its defaults are valid patch settings
        assert PatchSettings(cfg.format, cfg.jpeg_quality, cfg.resize_size).format == "jpeg"
    if group == "data":
        assert isinstance(instantiate(cfg.data), L.LightningDataModule)
    if group in ("optimizer", "scheduler"):
        optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        assert isinstance(optimizer, torch.optim.Optimizer)
        if cfg.scheduler:
            instantiate(cfg.scheduler)(optimizer)
    if group == "trainer":
        assert isinstance(instantiate(cfg.trainer), L.Trainer)
    if group in ("logger", "callbacks"):
        built = instantiate_group(cfg[group])
        assert len(built) == len(cfg[group] or {})
    if group == "paths":
        assert cfg.paths.output_dir == str(tmp_path / "run")


def test_gpu_trainers_ask_for_gpus(tmp_path: Path) -> None:
    gpu = compose_file(Path("trainer/gpu.yaml"), tmp_path).trainer
    ddp = compose_file(Path("trainer/ddp.yaml"), tmp_path).trainer
    assert (gpu.accelerator, gpu.devices) == ("gpu", 1)
    assert (ddp.accelerator, ddp.strategy, ddp.devices) == ("gpu", "ddp", -1)


def test_experiment_pins_the_d2l_recipe(tmp_path: Path) -> None:
    cfg = compose_file(Path("experiment/d2l_fashion_mnist.yaml"), tmp_path)
    assert cfg.model.in_channels == 1 and cfg.model.input_size == 224 and cfg.model.num_classes == 10
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.01, 0.0, 0.0)
    assert (cfg.data.batch_size, cfg.trainer.max_epochs) == (128, 10)
    assert cfg.scheduler == {}
    assert (cfg.data.val_size, cfg.test_weights) == (0, "last")  # all 60,000 images; the final epoch reported


def test_defaults_are_the_paper_optimizer_and_schedule(tmp_path: Path) -> None:
    cfg = compose_file(Path("train.yaml"), tmp_path)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.01, 0.9, 5e-4)
    assert (cfg.scheduler.mode, cfg.scheduler.factor) == ("max", 0.1)
    assert cfg.module.scheduler_monitor == "val/acc_top1"
    assert cfg.callbacks.best_checkpoint.monitor == "val/acc_top1"
    assert cfg.callbacks.checkpoint._target_ == "alexnet.run.resume_point.ResumePoint"  # writes last.ckpt
    assert cfg.data.input_size == cfg.model.input_size == 224
    assert compose_file(Path("train.yaml"), tmp_path, "model=paper").data.channels == 3


# The model configs as composed before torchvision.yaml and d2l.yaml were made to inherit from paper.yaml (plus
# model.lrn_across_towers, added since).
PAPER = {"_target_": "alexnet.models.pretrained.alexnet", "channels": [96, 256, 384, 384, 256], "in_channels": 3,
         "num_classes": "${oc.select:data.num_classes,1000}", "input_size": 227, "conv1_padding": None, "groups": 2,
         "lrn": True, "lrn_across_towers": False, "lrn_size": 5, "lrn_alpha": 0.0001, "lrn_beta": 0.75,
         "lrn_k": 2.0, "overlapping_pool": True,
         "activation": "relu", "hidden_size": 4096, "dropout": 0.5, "dropout_position": "after",
         "adaptive_pool": None, "init": "paper", "init_std": 0.01, "init_bias": 1.0, "weights": None,
         "channels_last": False, "compile": False}  # fmt: skip
BEFORE = {
    "paper": PAPER,
    "torchvision": {**PAPER, "channels": [64, 192, 384, 256, 256], "input_size": 224, "groups": 1, "lrn": False,
                    "dropout_position": "before", "adaptive_pool": 6, "init": "default"},
    "d2l": {**PAPER, "in_channels": 1, "num_classes": "${oc.select:data.num_classes,10}", "input_size": 224,
            "conv1_padding": 1, "groups": 1, "lrn": False, "init": "xavier"},
}  # fmt: skip


@pytest.mark.parametrize("variant", sorted(BEFORE))
def test_model_configs_compose_to_the_same_settings_as_before(variant: str, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    cfg = compose_file(Path(f"model/{variant}.yaml"), tmp_path)
    assert OmegaConf.to_container(cfg.model, resolve=False) == BEFORE[variant]


@pytest.mark.parametrize("variant", ["torchvision", "d2l"])
def test_derived_model_configs_state_only_their_differences(variant: str) -> None:
    import yaml

    own = yaml.safe_load((CONFIG_DIR / "model" / f"{variant}.yaml").read_text())
    assert own.pop("defaults") == ["paper"]
    assert own and all(BEFORE[variant][key] != PAPER[key] for key in own), own


def test_every_rule_names_a_setting_that_some_config_has(tmp_path: Path) -> None:
    """A rule for a key no config has (a typo, a renamed setting) would silently check nothing."""
    keys: set[str] = set()

    def collect(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                keys.add(prefix + str(key))
                collect(value, f"{prefix}{key}.")

    for path in CONFIG_FILES:
        if path.parts[0] != "hydra":
            cfg = compose_file(path, tmp_path)
            collect(OmegaConf.to_container(cfg, resolve=False), "")
    assert not set(RULES) - keys, sorted(set(RULES) - keys)


def refusal(config: str, *overrides: str) -> str:
    """The one-line message a user gets for ``overrides``: what the rules table says of the composed config."""
    cfg = compose_config(config, ["paths.root_dir=/tmp", "paths.output_dir=/tmp/run", *overrides])
    with pytest.raises(UserError) as refused:
        check_settings(cfg)
    return str(refused.value)


PARAMETER = [torch.nn.Parameter(torch.zeros(1))]
# A class the configs build, given one value the table refuses, and the override that gives a user that value.
CONSTRUCTORS = {
    "PaperSGD momentum": (lambda: PaperSGD(PARAMETER, momentum=1.5), "train", "optimizer=paper_sgd",
                          "optimizer.momentum=1.5"),
    "PaperSGD lr": (lambda: PaperSGD(PARAMETER, lr=-1), "train", "optimizer=paper_sgd", "optimizer.lr=-1"),
    "PaperPlateau max_drops": (lambda: PaperPlateau(PaperSGD(PARAMETER), max_drops=-1), "train",
                               "scheduler=paper_plateau", "scheduler.max_drops=-1"),
    "PaperPlateau patience": (lambda: PaperPlateau(PaperSGD(PARAMETER), patience=-2), "train",
                              "scheduler=paper_plateau", "scheduler.patience=-2"),
    "LitAlexNet nonfinite_loss": (lambda: LitAlexNet(AlexNet(num_classes=10), torch.optim.SGD, nonfinite_loss="x"),
                                  "train", "module.nonfinite_loss=x"),
    "LitAlexNet label_smoothing": (lambda: LitAlexNet(AlexNet(num_classes=10), torch.optim.SGD, label_smoothing=2),
                                   "train", "module.label_smoothing=2"),
    "ImageNetDataModule test_crops": (lambda: ImageNetDataModule("/nowhere", test_crops=5), "train", "data=imagenet",
                                      "data.test_crops=5"),
    "ImageNetDataModule channels": (lambda: ImageNetDataModule("/nowhere", channels=2), "train", "data=imagenet",
                                    "model.in_channels=2"),
    "ImageNetDataModule normalization": (lambda: ImageNetDataModule("/nowhere", normalization="foo"), "train",
                                         "data=imagenet", "data.normalization=foo"),
    "FashionMNISTDataModule channels": (lambda: FashionMNISTDataModule("/nowhere", channels=2), "train",
                                        "model.in_channels=2"),
    "PreparedImageNetDataModule decode": (lambda: PreparedImageNetDataModule("/nowhere", decode="gpu"), "train",
                                          "data=imagenet_prepared", "data.decode=gpu"),
    "PatchSettings format": (lambda: PatchSettings("png"), "prepare", "format=png"),
    "PatchSettings jpeg_quality": (lambda: PatchSettings(jpeg_quality=0), "prepare", "jpeg_quality=0"),
    "PatchSettings resize_size": (lambda: PatchSettings(resize_size=0), "prepare", "resize_size=0"),
}  # fmt: skip


@pytest.mark.parametrize("case", CONSTRUCTORS)
def test_a_class_refuses_what_the_table_refuses_with_the_same_message(case: str) -> None:
    """Each setting's rule lives once, in config/rules.py: a class used from Python says what a user's override
    gets (before this, PaperSGD took momentum=1.5 that the table refused)."""
    make, config, *overrides = CONSTRUCTORS[case]
    expected = refusal(config, *overrides)
    with pytest.raises(UserError) as refused:
        make()
    assert str(refused.value) == expected


def test_the_net_checks_its_own_settings_and_the_table_none_of_them() -> None:
    """AlexNet's file imports only torch, so the model.* rules are its own; the table must not restate them."""
    assert not [key for key in RULES if key.startswith("model.")]
    for name, value, message in (("lrn_k", -1, "must be a finite number >= 0."), ("init_std", 0, "> 0.")):
        with pytest.raises(ArchitectureError, match=re.escape(f"model.{name}={value!r}: ") + ".*" + re.escape(message)):
            AlexNet(**{name: value})


def test_every_listed_trainer_argument_can_be_set_and_others_added(tmp_path: Path) -> None:
    """conf/trainer/default.yaml's comment is true: a listed argument is set with trainer.<name>=, any other
    Trainer argument added with +trainer.<name>=."""
    cfg = compose_file(Path("trainer/default.yaml"), tmp_path, "trainer.accumulate_grad_batches=4",
                       "+trainer.overfit_batches=2", "trainer.accelerator=cpu")  # fmt: skip
    check_settings(cfg)
    trainer = instantiate(cfg.trainer)
    assert trainer.accumulate_grad_batches == 4 and trainer.overfit_batches == 2
    defaults = instantiate(compose_file(Path("trainer/default.yaml"), tmp_path, "trainer.accelerator=cpu").trainer)
    lightning = L.Trainer(accelerator="cpu", devices=1, logger=False)
    for name in ("num_sanity_val_steps", "val_check_interval", "accumulate_grad_batches", "gradient_clip_algorithm"):
        assert getattr(defaults, name, None) == getattr(lightning, name, None), f"trainer.{name} is not Lightning's"
