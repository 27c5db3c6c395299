"""The paper's update rule and learning-rate schedule against its own formulas, across rate drops and resumes."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from alexnet.config.rules import check_settings
from alexnet.errors import UserError
from alexnet.optim.paper_plateau import PaperPlateau
from alexnet.optim.paper_sgd import PaperSGD
from conftest import compose_config

# Learning rate per step: a /10 drop after step 4, as a schedule makes it (param_groups[i]["lr"] changes).
RATES = [0.1] * 4 + [0.01] * 6
MOMENTUM, DECAY = 0.9, 5e-4


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(8, 4, generator=generator, dtype=torch.float64), torch.randint(0, 3, (8,), generator=generator)


def loss_of(net: nn.Module, step: int) -> torch.Tensor:
    x, y = batch(step)
    return nn.functional.cross_entropy(net(x), y)


def by_hand(decay_biases: bool) -> list[list[torch.Tensor]]:
    """The paper's section 5, written out: v <- 0.9 v - 0.0005 eps w - eps dL/dw; w <- w + v."""
    net = tiny_net()
    weights = [p.detach().clone() for p in net.parameters()]
    velocities = [torch.zeros_like(w) for w in weights]
    history = []
    for step, eps in enumerate(RATES):
        with torch.no_grad():
            for p, w in zip(net.parameters(), weights, strict=True):
                p.copy_(w)
        grads = torch.autograd.grad(loss_of(net, step), list(net.parameters()))
        for i, (w, g) in enumerate(zip(weights, grads, strict=True)):
            decay = DECAY if (decay_biases or w.dim() > 1) else 0.0
            velocities[i] = MOMENTUM * velocities[i] - decay * eps * w - eps * g
            weights[i] = w + velocities[i]
        history.append([w.clone() for w in weights])
    return history


def run_optimizer(
    optimizer_class: type, decay_biases: bool, resume_after: int | None = None
) -> list[list[torch.Tensor]]:
    """Train with ``optimizer_class``, the rate set through a scheduler; optionally save and reload mid-way."""
    net = tiny_net()
    kwargs = {"decay_biases": decay_biases} if optimizer_class is PaperSGD else {}
    optimizer = optimizer_class(net.parameters(), lr=RATES[0], momentum=MOMENTUM, weight_decay=DECAY, **kwargs)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[4], gamma=0.1)  # what Lightning steps
    history = []
    for step in range(len(RATES)):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(RATES[step])
        optimizer.zero_grad()
        loss_of(net, step).backward()
        optimizer.step()
        scheduler.step()
        history.append([p.detach().clone() for p in net.parameters()])
        if step + 1 == resume_after:  # a checkpoint, loaded as Lightning loads it (weights_only=True)
            saved = io.BytesIO()
            torch.save({"net": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict()}, saved)  # fmt: skip
            saved.seek(0)
            state = torch.load(saved, weights_only=True)
            net = tiny_net()
            net.load_state_dict(state["net"])
            optimizer = optimizer_class(net.parameters(), lr=RATES[0], **kwargs)
            optimizer.load_state_dict(state["optimizer"])
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[4], gamma=0.1)
            scheduler.load_state_dict(state["scheduler"])
    return history


@pytest.mark.parametrize("decay_biases", [False, True])
def test_paper_sgd_is_the_papers_formula_across_a_rate_drop(decay_biases: bool) -> None:
    expected = by_hand(decay_biases)
    for step, (ours, hand) in enumerate(zip(run_optimizer(PaperSGD, decay_biases), expected, strict=True)):
        for p, w in zip(ours, hand, strict=True):
            torch.testing.assert_close(p, w, rtol=0, atol=1e-6, msg=f"step {step + 1}")
    # Resuming from a checkpoint in the middle, at the drop itself, changes nothing.
    resumed = run_optimizer(PaperSGD, decay_biases, resume_after=4)
    assert all(
        torch.equal(a, b)
        for x, y in zip(resumed, run_optimizer(PaperSGD, decay_biases), strict=True)
        for a, b in zip(x, y, strict=True)
    )


def test_torch_sgd_matches_only_while_the_rate_is_constant() -> None:
    """What the paper's form fixes: torch's buffer holds no rate, so after a drop its steps shrink at once."""
    hand, torch_sgd = by_hand(decay_biases=True), run_optimizer(torch.optim.SGD, decay_biases=True)
    gap = [
        max(float((p - w).abs().max()) for p, w in zip(ours, h, strict=True))
        for ours, h in zip(torch_sgd, hand, strict=True)
    ]
    assert max(gap[:4]) < 1e-6, "the same update before the drop"
    assert gap[4] > 1e-3, "after the drop torch's step is about 10x smaller"


def test_biases_are_not_decayed_by_default() -> None:
    assert PaperSGD([nn.Parameter(torch.zeros(1))]).defaults["decay_biases"] is False
    bias, weight = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3, 3))
    optimizer = PaperSGD([bias, weight], lr=0.1, weight_decay=0.5)
    bias.grad, weight.grad = torch.zeros(3), torch.zeros(3, 3)
    optimizer.step()
    assert torch.equal(bias.detach(), torch.ones(3)) and torch.allclose(weight.detach(), torch.full((3, 3), 0.95))


def plateau(max_drops: int = 3, patience: int = 1) -> tuple[PaperPlateau, torch.optim.Optimizer]:
    optimizer = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    return PaperPlateau(optimizer, mode="max", factor=0.1, patience=patience, max_drops=max_drops), optimizer


def test_paper_plateau_drops_three_times_then_holds_and_resumes() -> None:
    scheduler, optimizer = plateau()
    rates = []
    for _ in range(20):  # validation never improves after the first epoch
        scheduler.step(0.5)
        rates.append(optimizer.param_groups[0]["lr"])
    assert sorted(set(rates), reverse=True) == pytest.approx([0.01, 0.001, 1e-4, 1e-5])
    assert rates[-1] == pytest.approx(1e-5) and scheduler.drops == 3
    assert rates.index(rates[-1]) < 10, "the third drop came early; the rest of the run held the floor"

    # Stopped after one drop, saved as Lightning saves it, reloaded with weights_only: two drops remain.
    scheduler, optimizer = plateau()
    for _ in range(3):
        scheduler.step(0.5)
    assert scheduler.drops == 1
    saved = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)
    resumed, optimizer = plateau()
    optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    for _ in range(20):
        resumed.step(0.5)
    assert resumed.drops == 3 and optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)

    improving, optimizer = plateau()
    for epoch in range(20):
        improving.step(0.1 * epoch)
    assert improving.drops == 0 and optimizer.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["test_weights=final"], "test_weights='final': must be one of best, last"),
        (["data.normalization=foo"], "data.normalization='foo': must be one of per_channel, paper"),
        (["optimizer=paper_sgd", "optimizer.decay_biases=maybe"], "optimizer.decay_biases='maybe': must be true"),
        (["optimizer=paper_sgd", "optimizer.momentum=-1"], "optimizer.momentum=-1: must be a finite number from 0"),
        (["scheduler=paper_plateau", "scheduler.max_drops=-1"], "scheduler.max_drops=-1: must be a non-negative"),
        (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be a finite number >= 0"),
        (["++scheduler.threshold_mode=bad"], "optimizer/scheduler settings: threshold mode bad is unknown"),
    ],
)
def test_new_settings_are_checked_when_the_run_is_composed(overrides: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_settings(compose_config("train", overrides))


def test_paper_recipe_selects_every_paper_choice() -> None:
    cfg = compose_config("train", ["experiment=paper_imagenet"])
    assert cfg.data.normalization == "paper" and cfg.data.lighting_std == 0.1
    assert (cfg.model.groups, cfg.model.lrn, cfg.model.lrn_across_towers) == (2, True, False)
    assert (cfg.model.init, cfg.model.init_bias, cfg.model.init_std, cfg.model.input_size) == ("paper", 1.0, 0.01, 227)
    assert cfg.optimizer._target_ == "alexnet.optim.paper_sgd.PaperSGD" and not cfg.optimizer.decay_biases
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.01, 0.9, 5e-4)
    assert cfg.scheduler._target_ == "alexnet.optim.paper_plateau.PaperPlateau"
    assert (cfg.scheduler.factor, cfg.scheduler.max_drops, cfg.scheduler.mode) == (0.1, 3, "max")
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.module.scheduler_monitor) == (128, 90, "val/acc_top1")
    modern = compose_config(
        "train", ["experiment=paper_imagenet", "optimizer=sgd", "scheduler=plateau", "data.normalization=per_channel"]
    )
    assert modern.optimizer._target_ == "torch.optim.SGD" and modern.scheduler.patience == 5
    ablation = compose_config("train", ["experiment=ablation_fashion_mnist"])
    assert ablation.data.normalization == "paper" and ablation.optimizer._target_.endswith("PaperSGD")
