"""AlexNet against the numbers in the paper, torchvision and d2l."""

from __future__ import annotations

import pytest
import torch
import torchvision
from hydra.utils import instantiate
from torch import nn

from alexnet.models.alexnet import AlexNet, ArchitectureError
from alexnet.models.layer_summary import format_summary, layer_rows, neuron_count
from conftest import compose_config


def build(*overrides: str) -> AlexNet:
    return instantiate(compose_config("summary", list(overrides)).model)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def convs(model: AlexNet) -> list[nn.Conv2d]:
    return [m for m in model.features if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=paper"], 60_965_224),
        (["model=paper", "model.groups=1"], 62_378_344),
        (["model=paper", "model.input_size=224"], 60_965_224),
        (["model=torchvision"], 61_100_840),
        (["model=d2l"], 46_764_746),
    ],
)
def test_parameter_counts(overrides: list[str], expected: int) -> None:
    assert n_params(build(*overrides)) == expected


def test_paper_neuron_count_and_summary() -> None:
    model = build("model=paper")
    assert neuron_count(model) == 659_272
    text = format_summary(model)
    assert "parameters: 60,965,224" in text and "neurons: 659,272" in text


@pytest.mark.parametrize(
    ("overrides", "conv1", "flat"),
    [
        (["model=paper"], 55, 9216),  # 227, padding 0
        (["model=paper", "model.input_size=224"], 55, 9216),  # 224, padding 2
        (["model=paper", "model.input_size=224", "model.conv1_padding=0"], 54, 6400),
        (["model=torchvision"], 55, 9216),
        (["model=torchvision", "model.input_size=227"], 55, 9216),
        (["model=d2l"], 54, 6400),
        (["model=d2l", "model.input_size=227"], 55, 9216),
        (["model=paper", "model.overlapping_pool=false"], 55, 9216),
    ],
)
def test_shapes_follow_input_size(overrides: list[str], conv1: int, flat: int) -> None:
    model = build(*overrides)
    rows = {r.name: r.shape for r in layer_rows(model)}
    assert rows["features.0"][1:] == (conv1, conv1)
    assert model.classifier[[isinstance(m, nn.Linear) for m in model.classifier].index(True)].in_features == flat
    x = torch.randn(2, model.in_channels, model.input_size, model.input_size)
    assert model(x).shape == (2, model.classifier[-1].out_features)


def test_lrn_matches_paper_formula() -> None:
    """b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2)^beta with k=2, n=5, alpha=1e-4, beta=0.75."""
    model = build("model=paper", "model.lrn_across_towers=true")  # one window over all 96 maps
    lrn = next(m for m in model.features if isinstance(m, nn.LocalResponseNorm))
    a = torch.rand(2, 96, 5, 5) * 30
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    expected = torch.empty_like(a)
    for i in range(96):
        window = a[:, max(0, i - n // 2) : min(96, i + n // 2 + 1)]
        expected[:, i] = a[:, i] / (k + alpha * (window**2).sum(1)) ** beta
    torch.testing.assert_close(lrn(a), expected, rtol=1e-5, atol=1e-6)
    for towers in ("true", "false"):
        layers = build("model=paper", "model.hidden_size=32", f"model.lrn_across_towers={towers}").features
        kinds = [type(m).__name__ for m in layers]
        assert all(isinstance(layers[i], nn.LocalResponseNorm) for i in (2, 6))  # after ReLU, before pooling
        assert [kinds[i] for i in (0, 1, 3, 4, 5, 7)] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d"]
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in build("model=paper", "model.lrn=false").modules())


def test_two_towers_only_meet_at_conv3() -> None:
    model = build("model=paper").eval()
    conv1, conv2, conv3, conv4, conv5 = convs(model)
    assert [c.groups for c in (conv1, conv2, conv3, conv4, conv5)] == [1, 2, 1, 2, 2]
    x = torch.randn(1, 96, 27, 27)
    y = x.clone()
    y[:, :48] += 1.0  # change tower 1's input only
    assert torch.equal(conv2(x)[:, 128:], conv2(y)[:, 128:])  # tower 2 does not see it
    assert not torch.equal(conv2(x)[:, :128], conv2(y)[:, :128])


def test_torchvision_state_dict_gives_identical_logits() -> None:
    reference = torchvision.models.alexnet(weights=None).eval()
    ours = build("model=torchvision")
    ours.load_state_dict(reference.state_dict())  # strict: every name matches
    ours.eval()
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))


def test_paper_init() -> None:
    model = build("model=paper")
    c = convs(model)
    fc = [m for m in model.classifier if isinstance(m, nn.Linear)]
    for layer, bias in zip([*c, *fc], [0, 1, 0, 1, 1, 1, 1, 0], strict=True):
        assert torch.all(layer.bias == bias)
    assert fc[0].weight.mean().abs() < 1e-4
    assert fc[0].weight.std().item() == pytest.approx(0.01, rel=0.01)
    assert torch.all(build("model=paper", "model.init_bias=0.1").classifier[0].bias == 0.1)


def test_options_change_the_net() -> None:
    tanh = build("model=paper", "model.activation=tanh")
    assert any(isinstance(m, nn.Tanh) for m in tanh.modules()) and not any(
        isinstance(m, nn.ReLU) for m in tanh.modules()
    )
    pools = [m for m in build("model=paper", "model.overlapping_pool=false").features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3
    after = [type(m).__name__ for m in build("model=paper").classifier]
    before = [type(m).__name__ for m in build("model=torchvision").classifier]
    assert after == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert before == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert build("model=paper", "model.dropout=0").classifier[2].p == 0
    grey = build("model=paper", "model.in_channels=1", "model.num_classes=10")
    assert convs(grey)[0].in_channels == 1 and grey.classifier[-1].out_features == 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groups": 3}, "model.groups=3: conv2 has 96 input and 256 output channels"),
        ({"groups": 0}, "model.groups=0: must be a positive integer"),
        ({"input_size": 32}, "model.input_size=32 is too small"),
        ({"input_size": 62}, "needs model.input_size>=63"),
        ({"activation": "gelu"}, "model.activation='gelu': choose one of relu, tanh"),
        ({"init": "he"}, "model.init='he': choose one of paper, default, xavier"),
        ({"dropout": 1.5}, "model.dropout=1.5: must be a probability"),
        ({"lrn": "yes"}, "model.lrn='yes': must be true or false"),
        ({"in_channels": 0}, "model.in_channels=0: must be a positive integer"),
        ({"channels": [96, 256]}, "model.channels=[96, 256]: give five positive integers"),
        ({"dropout_position": "middle"}, "choose one of before, after"),
    ],
)
def test_bad_arguments_say_what_to_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ArchitectureError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AlexNet(**kwargs)


def test_input_of_the_wrong_shape_is_named() -> None:
    with pytest.raises(ArchitectureError, match=r"expects a batch of shape \(N, 3, 227, 227\), got \(1, 3, 224, 224\)"):
        AlexNet()(torch.zeros(1, 3, 224, 224))


def test_lrn_stays_inside_each_tower() -> None:
    """With groups=2 each of the paper's GPUs normalised only its own kernel maps (48 after conv1)."""
    torch.manual_seed(0)
    per_tower = build("model=paper", "model.hidden_size=32").eval()
    across = build("model=paper", "model.hidden_size=32", "model.lrn_across_towers=true").eval()
    across.load_state_dict(per_tower.state_dict())
    image = torch.rand(1, 3, 227, 227) * 510 - 255  # the paper's pixel scale, where the LRN term matters
    with torch.no_grad():
        a = per_tower.features[:2](image)  # conv1's output after its ReLU: LRN's input
        b = a.clone()
        b[:, 48] += 50.0  # tower 2's first map
        lrn, lrn_across = per_tower.features[2], across.features[2]
        assert torch.equal(lrn(a)[:, :48], lrn(b)[:, :48]), "tower 1 does not see tower 2's maps"
        assert not torch.equal(lrn(a)[:, 48:51], lrn(b)[:, 48:51])
        moved = (lrn_across(a) != lrn_across(b)).flatten(2).any(-1)[0]
        assert moved[:48].nonzero().flatten().tolist() == [46, 47], "one window over both towers reaches 46, 47"

    # b_i = a_i / (k + alpha * sum of a_j^2 over the 5-map window, clipped to the tower) ^ beta, each tower alone
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    for layer, channels in ((per_tower.features[2], 96), (per_tower.features[6], 256)):
        x = torch.rand(2, channels, 3, 3, dtype=torch.float64) * 300
        expected = torch.empty_like(x)
        half = channels // 2
        for start in (0, half):
            tower = x[:, start : start + half]
            for i in range(half):
                window = tower[:, max(0, i - n // 2) : min(half, i + n // 2 + 1)]
                expected[:, start + i] = tower[:, i] / (k + alpha * (window**2).sum(1)) ** beta
        torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
        assert (alpha * (x**2)[:, :5].sum(1)).mean() > 1, "the squared sum is not negligible next to k at this scale"


def test_per_tower_lrn_keeps_the_state_dict() -> None:
    """LRN has no parameters: the switch changes no key, and weights load both ways (and torchvision's still do)."""
    small = ("model=paper", "model.hidden_size=32")
    per_tower, across = build(*small), build(*small, "model.lrn_across_towers=true")
    assert list(per_tower.state_dict()) == list(across.state_dict())
    across.load_state_dict(per_tower.state_dict())
    per_tower.load_state_dict(across.state_dict())
    tv = ("model=torchvision", "model.lrn=true", "model.groups=2", "model.hidden_size=32")
    assert list(build(*tv).state_dict()) == list(build(*tv, "model.lrn_across_towers=true").state_dict())
    assert "towers=2" in format_summary(per_tower)
    assert "towers" not in format_summary(build(*small, "model.groups=1"))
