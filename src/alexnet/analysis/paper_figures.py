"""The paper's figures for a trained net, and the uint8 pictures they (and the W&B media) are made of.

- Figure 3: conv1's kernels, one block per tower (the paper's 48 + 48 with ``groups=2``).
- Figure 4, left: validation images with their top-5 classes as bars, the true class in red.
- Figure 4, right: for the same images, the training images nearest in FC7 activations.
- Training curves: train/val loss and top-1/top-5 per epoch, learning-rate changes marked.

Kernels are stretched **per kernel**, symmetrically about zero: 0 is mid-grey, the kernel's largest |weight|
is full intensity. The paper's Figure 3 shows every kernel at full contrast; after training, conv1's kernels
differ several-fold in norm, so one scale for the whole layer would leave the weaker half as flat grey
patches, and a min-max stretch per kernel would tint each by its mean. With zero fixed at grey, a kernel's
colour says the sign of its weights (a red blob favours red, a cyan one opposes it), as in the paper's colour
blobs of tower 2.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import torch
from omegaconf import DictConfig, ListConfig
from torch import nn
from torchvision.utils import make_grid

from alexnet.analysis.fc7_neighbours import fc7, nearest, training_features
from alexnet.analysis.run_metrics import RunMetrics, read_run_metrics
from alexnet.analysis.scored_net import build_net_and_data
from alexnet.errors import UserError
from alexnet.run.folder import checkpoint_run_folder

matplotlib.use("Agg")  # render to files; no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

log = logging.getLogger(__name__)
FILES = {
    "kernels": "conv1_kernels.png",
    "predictions": "top5_predictions.png",
    "neighbours": "nearest_neighbours.png",
    "curves": "training_curves.png",
}
TRUE_COLOUR, OTHER_COLOUR = "#d62728", "#7f9fc8"


def conv1_towers(net: nn.Module) -> list[torch.Tensor]:
    """conv1's kernels as uint8 RGB tiles (K, 3, k, k), one tensor per tower: conv1's output channels feed
    conv2's groups in order, so with ``groups=2`` the first half belongs to tower 1, the second to tower 2."""
    conv1, conv2 = [m for m in net.modules() if isinstance(m, nn.Conv2d)][:2]
    weights = conv1.weight.detach().float().cpu()
    if weights.shape[1] != 3:  # a grey net's kernels: shown grey
        weights = weights[:, :1].expand(-1, 3, -1, -1)
    scale = weights.abs().flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1, 1)
    tiles = (weights / scale * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
    return list(tiles.chunk(conv2.groups))


def filter_grid(net: nn.Module, columns: int = 8, zoom: int = 4) -> torch.Tensor:
    """conv1's kernels as one uint8 (3, H, W) picture for W&B: each tower a grid of ``columns`` kernels, the
    towers side by side, white between kernels and a wider white gap between towers; ``zoom`` enlarges each
    weight to a ``zoom`` x ``zoom`` block (an 11 x 11 kernel is otherwise a speck on a dashboard)."""
    grids = [make_grid(tower, nrow=columns, padding=1, pad_value=255) for tower in conv1_towers(net)]
    gap = torch.full((3, grids[0].shape[1], 4), 255, dtype=torch.uint8)
    pieces = [grids[0]]
    for grid in grids[1:]:
        pieces += [gap, grid]
    picture = torch.cat(pieces, dim=2)
    return picture.repeat_interleave(zoom, dim=1).repeat_interleave(zoom, dim=2)


def _image(axes: Any, picture: torch.Tensor, photo: bool = True) -> None:
    # A photo shrunk to a thumbnail is antialiased; kernels, enlarged, keep their weights as square blocks.
    axes.imshow(picture.permute(1, 2, 0).cpu().numpy(), interpolation="antialiased" if photo else "nearest")
    axes.set_xticks([])
    axes.set_yticks([])


def _short(name: str, length: int = 18) -> str:
    """A class name that fits under a thumbnail: without an ImageNet wnid prefix (``n01440764 tench``), cut."""
    if re.fullmatch(r"n\d{8} .+", name):
        name = name.split(" ", 1)[1]
    return name if len(name) <= length else name[: length - 1] + "…"


def kernels_figure(net: nn.Module) -> Figure:
    """Figure 3: conv1's kernels, one block per tower, 16 kernels a row as in the paper."""
    towers = conv1_towers(net)
    columns = min(16, len(towers[0]))
    grids = [make_grid(tower, nrow=columns, padding=1, pad_value=255) for tower in towers]
    kernel = towers[0].shape[-1]
    width = 0.09 * columns * (kernel + 1) / 3 + 0.4
    heights = [grid.shape[1] / grid.shape[2] * (width - 0.4) for grid in grids]
    figure, axes = plt.subplots(len(grids), 1, figsize=(width, sum(heights) + 0.45 * len(grids) + 0.3), squeeze=False)
    total = sum(len(t) for t in towers)
    for number, (ax, grid, tower) in enumerate(zip(axes[:, 0], grids, towers, strict=True), start=1):
        _image(ax, grid, photo=False)
        where = f"tower {number} of {len(towers)}" if len(towers) > 1 else "one tower"
        ax.set_title(f"{where}: {len(tower)} kernels", fontsize=8)
    channels = "x3" if net.in_channels == 3 else f"x{net.in_channels}"
    figure.suptitle(f"conv1: {total} kernels {kernel}x{kernel}{channels}", fontsize=9)
    figure.tight_layout()
    return figure


def predictions_figure(
    pictures: torch.Tensor, probabilities: torch.Tensor, labels: Sequence[int], class_names: Sequence[str], k: int = 5
) -> Figure:
    """Figure 4, left: each image with its top-``k`` classes as bars (probability), the true class red; the true
    class is named under the image and, when it is not among the ``k``, noted below the bars."""
    n = len(pictures)
    columns = min(n, 4)
    rows = math.ceil(n / columns)
    figure = plt.figure(figsize=(2.1 * columns, 3.2 * rows + 0.3))
    heading, body = figure.subfigures(2, 1, height_ratios=[0.3, 3.2 * rows])
    heading.suptitle(f"validation images: top-{k} predictions (true class in red)", fontsize=9, y=0.7)
    cells = body.subfigures(rows, columns, squeeze=False)
    top = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    for i in range(n):
        cell = cells[divmod(i, columns)]
        image_axes, bars = cell.subplots(2, 1, height_ratios=[1.6, 1.0])
        _image(image_axes, pictures[i])
        image_axes.set_title(_short(class_names[labels[i]], 24), fontsize=8, color=TRUE_COLOUR)
        classes = top.indices[i].tolist()
        colours = [TRUE_COLOUR if c == labels[i] else OTHER_COLOUR for c in classes]
        positions = list(range(len(classes)))[::-1]  # most likely at the top
        bars.barh(positions, top.values[i].tolist(), color=colours, height=0.8)
        for position, c in zip(positions, classes, strict=True):
            bars.text(0.02, position, _short(class_names[c], 22), va="center", fontsize=6.5)
        bars.set_xlim(0, 1)
        bars.set_xticks([0, 0.5, 1])
        bars.set_yticks([])
        bars.tick_params(axis="x", labelsize=6)
        if labels[i] not in classes:
            bars.set_xlabel(f"true class not in the top {len(classes)}", fontsize=6.5, color=TRUE_COLOUR)
        cell.subplots_adjust(left=0.06, right=0.94, top=0.9, bottom=0.14, hspace=0.12)
    return figure


def neighbours_figure(
    queries: torch.Tensor,
    query_labels: Sequence[int],
    neighbours: torch.Tensor,
    neighbour_labels: Sequence[Sequence[int]],
    distances: torch.Tensor,
    class_names: Sequence[str],
) -> Figure:
    """Figure 4, right: a validation image in the first column, then the training images nearest to it in FC7
    activations, nearest first, each with its class and distance."""
    n, k = neighbours.shape[:2]
    figure, axes = plt.subplots(n, k + 1, figsize=(1.15 * (k + 1), 1.3 * n + 0.4), squeeze=False)
    for i in range(n):
        _image(axes[i, 0], queries[i])
        axes[i, 0].set_title(_short(class_names[query_labels[i]], 16), fontsize=6.5, color=TRUE_COLOUR)
        for j in range(k):
            _image(axes[i, j + 1], neighbours[i, j])
            name = _short(class_names[neighbour_labels[i][j]], 12)
            axes[i, j + 1].set_title(f"{name} {float(distances[i, j]):.3g}", fontsize=6)
    axes[0, 0].set_ylabel("validation", fontsize=7)
    figure.suptitle(f"the {k} training images nearest in FC7 activations (Euclidean distance)", fontsize=8)
    figure.tight_layout()
    return figure


def training_curves_figure(metrics: RunMetrics) -> Figure:
    """Loss, top-1 and top-5 accuracy per epoch, training dashed and validation solid, with a dotted line
    between the epochs where the learning rate changed."""
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.1))
    panels = (
        ("loss", "train/loss_epoch", "val/loss", 1.0),
        ("top-1 accuracy (%)", "train/acc_top1", "val/acc_top1", 100.0),
        ("top-5 accuracy (%)", "train/acc_top5", "val/acc_top5", 100.0),
    )
    for ax, (title, train_name, val_name, scale) in zip(axes, panels, strict=True):
        for name, style, colour in ((train_name, "--", "#ff7f0e"), (val_name, "-", "#1f77b4")):
            points = metrics.per_epoch(name)
            if points:
                epochs = [epoch + 1 for epoch, _ in points]
                ax.plot(epochs, [scale * v for _, v in points], style, marker="o", markersize=3, color=colour,
                        label=name.split("/")[0])  # fmt: skip
        for completed, old, new in metrics.learning_rate_changes():
            ax.axvline(completed + 0.5, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"lr {old:.2g}→{new:.2g}", (completed + 0.5, 0.97), xycoords=("data", "axes fraction"),
                        fontsize=7, rotation=90, va="top", ha="center", color="dimgrey",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # fmt: skip
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(
        f"training curves ({metrics.logger}: {metrics.source.parent.name}/{metrics.source.name})", fontsize=8
    )
    figure.tight_layout()
    return figure


def save(figure: Figure, path: Path, dpi: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def _validation_examples(dataset: Any, count: int) -> tuple[torch.Tensor, list[int]]:
    """``count`` images spread evenly over the validation set (an ImageFolder is sorted by class, so its first
    images would all be one class), skipping unreadable ones."""
    images, labels = [], []
    step = max(len(dataset) // max(count, 1), 1)
    for index in range(0, len(dataset), step):
        image, label = dataset[index]
        if image is not None:
            images.append(image)
            labels.append(int(label))
        if len(images) == count:
            break
    return torch.stack(images), labels


@torch.inference_mode()
def draw_paper_figures(
    net: nn.Module,
    datamodule: Any,
    out_dir: Path,
    run_dir: Path | None,
    examples: int = 8,
    neighbours: int = 6,
    top_k: int = 5,
    train_images: int | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    dpi: int = 90,
) -> dict[str, Path]:
    """Write the four figures into ``out_dir`` (FC7 features of the training images cached there) and return
    their paths; the training curves come from ``run_dir``'s logged metrics and are left out, with a warning,
    when the run kept none. ``datamodule`` must be set up for ``fit`` (training and validation images)."""
    was_training = net.training
    net.eval()
    try:
        written = {"kernels": save(kernels_figure(net), out_dir / FILES["kernels"], dpi)}
        names = datamodule.class_names()
        images, labels = _validation_examples(datamodule.dataset("val"), examples)
        device = next(net.parameters()).device
        model_input = datamodule.model_input(images.to(device), "val")
        probabilities = net(model_input).softmax(-1).float().cpu()
        pictures = datamodule.picture(model_input).cpu()
        written["predictions"] = save(
            predictions_figure(pictures, probabilities, labels, names, top_k), out_dir / FILES["predictions"], dpi
        )

        train = datamodule.dataset("train")
        cached = training_features(net, train, datamodule.model_input, out_dir, train_images, batch_size, num_workers)
        found, distances = nearest(cached, fc7(net, datamodule.model_input, images), neighbours)
        found_images = torch.stack([train[int(i)][0] for i in found.flatten()])
        found_pictures = datamodule.picture(datamodule.model_input(found_images.to(device), "val")).cpu()
        found_labels = [[int(train[int(i)][1]) for i in row] for row in found]
        figure = neighbours_figure(
            pictures,
            labels,
            found_pictures.view(*found.shape, *found_pictures.shape[1:]),
            found_labels,
            distances,
            names,
        )
        written["neighbours"] = save(figure, out_dir / FILES["neighbours"], dpi)
    finally:
        net.train(was_training)

    metrics = read_run_metrics(run_dir) if run_dir is not None else None
    if metrics is None:
        log.warning("No training curves: %s holds no csv/metrics.csv or tensorboard/ events (logger=none?).", run_dir)
    else:
        written["curves"] = save(training_curves_figure(metrics), out_dir / FILES["curves"], dpi)
    return written


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UserError(f"device={name!r}: use auto, cpu, cuda or cuda:<n>.") from error


def check_figure_settings(cfg: DictConfig) -> None:
    if not cfg.get("ckpt_path") or isinstance(cfg.ckpt_path, ListConfig | list):
        raise UserError("Give one checkpoint: alexnet-figures ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt")
    limit = cfg.get("train_images")  # its value and the others' are config/rules.py's; this is how they relate
    if limit is not None and limit < cfg.neighbours:
        raise UserError(f"train_images={limit!r}: null (all) or at least neighbours={cfg.neighbours}.")


def checkpoint_figures(cfg: DictConfig, data_keys: list[str] = ()) -> dict[str, Path]:
    """alexnet-figures: the figures of ``cfg.ckpt_path``'s net, rebuilt with its data from the checkpoint's saved
    config (``data_keys``: the ``data.*`` keys typed now, which replace saved values), into
    ``cfg.paths.output_dir`` (``<run>/figures/``)."""
    check_figure_settings(cfg)
    device = device_of(str(cfg.device))
    scored = build_net_and_data(cfg, list(data_keys))  # refuses data whose classes differ from the checkpoint's
    net, datamodule = scored.net, scored.datamodule
    datamodule.prepare_data()
    datamodule.setup("fit")
    workers = cfg.num_workers if cfg.get("num_workers") is not None else getattr(datamodule, "num_workers", 0)
    written = draw_paper_figures(
        net.to(device),
        datamodule,
        out_dir=Path(cfg.paths.output_dir),
        run_dir=checkpoint_run_folder(cfg.ckpt_path),
        examples=cfg.examples,
        neighbours=cfg.neighbours,
        top_k=cfg.top_k,
        train_images=cfg.train_images,
        batch_size=cfg.batch_size,
        num_workers=workers,
        dpi=cfg.dpi,
    )
    for path in written.values():
        print(f"written: {path}")
    return written
