"""The speed switches (channels_last, compile, bf16, on-device data, throughput logging) give the plain results."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from alexnet.data.device_batches import DeviceBatches
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.models.alexnet import AlexNet
from alexnet.run import build
from alexnet.tracking import throughput
from conftest import column, read_metrics, train_config

TINY = {"channels": (8, 16, 16, 16, 16), "hidden_size": 32, "num_classes": 10, "input_size": 67}


def step(net: AlexNet, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    net.zero_grad()
    logits = net(x)
    F.cross_entropy(logits, y).backward()
    return logits.detach(), [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"groups": 1}, {"channels": (64, 192, 384, 256, 256), "groups": 1, "adaptive_pool": 6, "input_size": 224},
     {"in_channels": 1, "num_classes": 10, "input_size": 224, "conv1_padding": 1, "groups": 1, "lrn": False},
     {"overlapping_pool": False}],
)  # fmt: skip
def test_forward_flops_match_torch_flop_counter(kwargs: dict) -> None:
    net = AlexNet(**kwargs).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(2, net.in_channels, net.input_size, net.input_size))
    assert 2 * net.forward_flops() == counter.get_total_flops()


def test_paper_net_forward_flops() -> None:
    # conv1..5 + fc6..8 multiply-adds of the 227-px two-tower net: 724,406,816 MACs, 2 FLOPs each.
    assert AlexNet().forward_flops() == 1_448_813_632


def test_channels_last_gives_the_plain_results_and_plain_weights() -> None:
    torch.manual_seed(0)
    plain = AlexNet(**TINY, dropout=0)
    fast = AlexNet(**TINY, dropout=0, channels_last=True)
    fast.load_state_dict(plain.state_dict())
    assert fast.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert list(fast.state_dict()) == list(plain.state_dict())
    x, y = torch.randn(4, 3, 67, 67), torch.tensor([0, 1, 2, 3])
    (logits_a, grads_a), (logits_b, grads_b) = step(plain, x, y), step(fast, x, y)
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


@pytest.mark.slow  # inductor compiles C++ kernels on the CPU: about half a minute
def test_compile_in_place_matches_eager_and_keeps_checkpoint_keys() -> None:
    torch.manual_seed(0)
    eager = AlexNet(**TINY, dropout=0)
    compiled = AlexNet(**TINY, dropout=0, compile=True)
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no `_orig_mod.` prefixes
    x, y = torch.randn(4, 3, 67, 67), torch.tensor([0, 1, 2, 3])
    (logits_a, grads_a), (logits_b, grads_b) = step(eager, x, y), step(compiled, x, y)
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1, "the forward really went through dynamo"


def test_bf16_mixed_trains_in_bfloat16_close_to_fp32(tmp_path: Path, fashion_root: Path) -> None:
    results = {}
    for precision in ("32-true", "bf16-mixed"):
        cfg = train_config(
            tmp_path / precision,
            fashion_root,
            ["model=d2l", "model.input_size=96", "model.dropout=0", "debug=fdr", f"trainer.precision={precision}",
             "++callbacks.checkpoint=null", "++callbacks.best_checkpoint=null"],
        )  # fmt: skip
        run = build(cfg)
        dtypes: list[torch.dtype] = []
        run.module.net.features[0].register_forward_hook(lambda m, i, o, seen=dtypes: seen.append(o.dtype))
        run.trainer.fit(run.module, datamodule=run.datamodule)
        results[precision] = (dtypes, float(run.trainer.callback_metrics["val/loss"]))
    assert set(results["32-true"][0]) == {torch.float32}
    assert set(results["bf16-mixed"][0]) == {torch.bfloat16}
    assert results["bf16-mixed"][1] == pytest.approx(results["32-true"][1], rel=0.02)


def test_device_batches_shuffle_per_epoch_and_shard_without_repeats() -> None:
    images, labels = torch.arange(50).view(50, 1, 1, 1), torch.arange(50)
    train = DeviceBatches(images, labels, batch_size=8, shuffle=True, seed=3)
    train.sampler.set_epoch(0)
    epoch0 = torch.cat([y for _, y in train])
    train.sampler.set_epoch(1)
    epoch1 = torch.cat([y for _, y in train])
    assert len(train) == 7 and sorted(epoch0.tolist()) == list(range(50)) and not torch.equal(epoch0, epoch1)
    again = DeviceBatches(images, labels, batch_size=8, shuffle=True, seed=3)
    again.sampler.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in again]), epoch1), "same seed and epoch, same order (resume)"
    for x, y in train:
        assert torch.equal(x.flatten(), y)  # images and labels stay paired
    ranks = [DeviceBatches(images, labels, 8, shuffle=True, seed=3, rank=r, world_size=3) for r in range(3)]
    shares = [torch.cat([y for _, y in r]).tolist() for r in ranks]
    assert [len(s) for s in shares] == [16, 16, 16] and len(set(sum(shares, []))) == 48
    evals = [DeviceBatches(images, labels, 8, shuffle=False, rank=r, world_size=3) for r in range(3)]
    seen = sorted(sum((torch.cat([y for _, y in e]).tolist() for e in evals), []))
    assert seen == list(range(50)), "evaluation sees every sample exactly once across ranks"


def test_on_device_data_gives_the_loader_results(tmp_path: Path, fashion_root: Path) -> None:
    metrics = {}
    for on_device in ("true", "false"):
        cfg = train_config(
            tmp_path / on_device,
            fashion_root,
            ["model=d2l", "model.input_size=96", f"data.on_device={on_device}", "logger=none", "callbacks=none"],
        )
        run = build(cfg)
        run.datamodule.trainer = run.trainer
        run.datamodule.setup("fit")
        loader = run.datamodule.val_dataloader()
        assert isinstance(loader, DeviceBatches if on_device == "true" else DataLoader)
        metrics[on_device] = run.trainer.validate(run.module, datamodule=run.datamodule, verbose=False)[0]
    assert metrics["true"] == pytest.approx(metrics["false"], rel=1e-5)


def test_throughput_is_logged_and_mfu_follows_the_flop_count(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peak = 1e12  # pretend the CPU has a known peak, as Lightning knows for GPUs
    monkeypatch.setattr(throughput, "get_available_flops", lambda device, dtype: peak)
    cfg = train_config(
        tmp_path,
        fashion_root,
        ["model=d2l", "model.input_size=96", "trainer.max_steps=6", "trainer.limit_val_batches=0",
         "trainer.log_every_n_steps=1", "callbacks.throughput.window=3", "++callbacks.checkpoint=null",
         "++callbacks.best_checkpoint=null",
         "test=false"],
    )  # fmt: skip
    run = build(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    rows = read_metrics(tmp_path / "run" / "csv" / "metrics.csv")
    rates, mfus = column(rows, "train/images_per_sec"), column(rows, "train/mfu")
    assert len(rates) == 4 and all(r > 0 for r in rates)  # steps 3..6 fill the 3-step window
    flops_per_image = 3 * run.module.net.forward_flops()
    for rate, mfu in zip(rates, mfus, strict=True):
        assert mfu == pytest.approx(rate * flops_per_image / peak, rel=1e-4)


def test_imagenet_loader_prefetches_with_pinned_persistent_workers(imagenet_root: Path) -> None:
    dm = ImageNetDataModule(str(imagenet_root), num_classes=3, batch_size=4, num_workers=2, prefetch_factor=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert (loader.num_workers, loader.prefetch_factor, loader.pin_memory, loader.persistent_workers) == (
        2, 3, True, True,
    )  # fmt: skip
