"""alexnet-prepare and data=imagenet_prepared: patches equal to data=imagenet's, a manifest, reruns that finish
what an interrupted run left, decoding on the device, exact mid-epoch resume, DDP counts and S3 streaming."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import logging
import math
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from litdata import StreamingDataset
from torchvision.io import decode_jpeg, read_file

from alexnet.analysis.scored_net import net_from_checkpoint
from alexnet.analysis.scoring import evaluate, predict
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.data.imagenet.prepared_reader import PreparedImageNetDataModule
from alexnet.data.imagenet.prepared_writer import PatchSettings, list_split, prepare
from alexnet.errors import UserError
from alexnet.models.checkpoint_files import read_checkpoint
from alexnet.models.lit_alexnet import LitAlexNet
from alexnet.run.build import build
from alexnet.run.training import train
from conftest import (
    BIN,
    WNIDS,
    column,
    compose_config,
    make_prepared,
    make_quirky_imagenet,
    read_metrics,
    run_cli,
    run_env,
    train_config,
)

TINY_NET = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32"]
TINY = [*TINY_NET, "data.num_workers=0", "data.pin_memory=false"]

TRUNCATED = [f"{split}/{WNIDS[0]}/{WNIDS[0]}_0.JPEG" for split in ("train", "val")]


def stored_samples(root: Path, split: str) -> dict[str, dict]:
    """Every sample of a prepared split, by source file, with its image copied out of the chunk."""
    samples = {}
    for sample in StreamingDataset(str(root / split)):
        image = sample["image"]
        sample["image"] = image.clone() if isinstance(image, torch.Tensor) else bytes(image)
        samples[sample["file"]] = sample
    return samples


def prepared_module(root: Path, **settings: object) -> PreparedImageNetDataModule:
    options = {"num_classes": 3, "batch_size": 4, "num_workers": 0, "pin_memory": False, **settings}
    return PreparedImageNetDataModule(root=str(root), **options)


def test_patches_equal_those_of_data_imagenet(quirky_imagenet: Path, prepared_jpeg: Path, prepared_raw: Path) -> None:
    folder = ImageNetDataModule(root=str(quirky_imagenet), num_classes=3, num_workers=0, pin_memory=False)
    for split in ("train", "val"):
        files = sorted(p.relative_to(quirky_imagenet).as_posix() for p in (quirky_imagenet / split).rglob("*.JPEG"))
        readable = [f for f in files if f not in TRUNCATED]
        raw, jpeg = stored_samples(prepared_raw, split), stored_samples(prepared_jpeg, split)
        assert sorted(raw) == sorted(jpeg) == readable  # CMYK, grey and PNG-named-.JPEG files included
        for file in readable:
            expected = folder.read_image(str(quirky_imagenet / file))  # data=imagenet's 256x256 patch
            wnid = file.split("/")[1]
            for sample in (raw[file], jpeg[file]):
                assert (sample["wnid"], sample["label"]) == (wnid, WNIDS.index(wnid))
            assert torch.equal(raw[file]["image"], expected), file
            decoded = decode_jpeg(torch.frombuffer(bytearray(jpeg[file]["image"]), dtype=torch.uint8))
            assert decoded.shape == expected.shape == (3, 256, 256)
            assert (decoded.float() - expected.float()).abs().mean() <= 2.0, file  # JPEG q90's error


def test_manifest_holds_classes_counts_settings_and_skipped_files(prepared_jpeg: Path, prepared_raw: Path) -> None:
    manifest = json.loads((prepared_jpeg / "manifest.json").read_text())
    assert manifest["classes"] == list(WNIDS)
    assert (manifest["format"], manifest["jpeg_quality"], manifest["resize_size"]) == ("jpeg", 90, 256)
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    assert (train["images"], train["per_class"], train["source_files"]) == (11, [3, 4, 4], 12)
    assert (val["images"], val["per_class"], val["source_files"]) == (8, [2, 3, 3], 9)
    assert [s["file"] for s in manifest["skipped"]] == TRUNCATED
    assert all("truncated" in s["reason"] for s in manifest["skipped"])
    report = (prepared_jpeg / "skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in report] == TRUNCATED
    raw = json.loads((prepared_raw / "manifest.json").read_text())
    assert raw["source_fingerprint"] == manifest["source_fingerprint"] and len(manifest["source_fingerprint"]) == 64
    assert (raw["format"], raw["jpeg_quality"]) == ("raw", None)
    # raw: a 12-byte tensor header, then 3 x 256 x 256 bytes, per image (plus the names); JPEG patches are far smaller
    assert raw["splits"]["val"]["bytes"] > 8 * 196_608 > 5 * manifest["splits"]["val"]["bytes"]


def test_preparing_a_finished_output_again_does_nothing(
    prepared_jpeg: Path, quirky_imagenet: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = {p: p.stat().st_mtime_ns for p in prepared_jpeg.rglob("*")}
    with caplog.at_level(logging.INFO):
        manifest = prepare(str(quirky_imagenet), str(prepared_jpeg), PatchSettings(), num_workers=1)
    assert f"{prepared_jpeg} is already prepared (11 train, 8 val images); nothing to do." in caplog.text
    assert manifest == json.loads((prepared_jpeg / "manifest.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in prepared_jpeg.rglob("*")} == before
    with pytest.raises(UserError, match=r"holds a finished set prepared differently \(format, jpeg_quality\)"):
        prepare(str(quirky_imagenet), str(prepared_jpeg), PatchSettings(format="raw"), num_workers=1)


def test_a_source_image_replaced_by_another_of_the_same_size_is_seen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_quirky_imagenet(tmp_path / "source", {"train": 2, "val": 2})
    out = make_prepared(tmp_path / "out", source)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint_rule"] == manifest["splits"]["val"]["fingerprint_rule"] == "path, size, mtime_ns"
    photo = source / "val" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG"
    size, pixels, data = photo.stat().st_size, decode_jpeg(read_file(str(photo))), bytearray(photo.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # the same length, other entropy-coded pixels
    photo.write_bytes(bytes(data))
    assert photo.stat().st_size == size and not torch.equal(decode_jpeg(read_file(str(photo))), pixels)
    with pytest.raises(UserError, match=r"prepared differently \(source files \(names, sizes or modification"):
        make_prepared(out, source)

    # A set written before modification times counted (no fingerprint_rule) is still taken for unchanged.
    former = tmp_path / "former"
    shutil.copytree(out, former)
    listings = {s: list_split(source, s) for s in ("train", "val")}
    old = json.loads((former / "manifest.json").read_text())
    old.pop("fingerprint_rule")
    old["source_fingerprint"] = hashlib.sha256(
        "".join(listings[s].former_fingerprint for s in ("train", "val")).encode()
    ).hexdigest()
    (former / "manifest.json").write_text(json.dumps(old))
    with caplog.at_level(logging.INFO):
        make_prepared(former, source)
    assert "nothing to do" in caplog.text


@pytest.mark.parametrize(
    "record", ['{"images": 1', '["not", "a record"]', '{"images": "many"}'], ids=["cut", "list", "edited"]
)
def test_a_damaged_split_record_is_written_again_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record: str
) -> None:
    source = make_quirky_imagenet(tmp_path / "source", {"train": 2, "val": 2})
    out = make_prepared(tmp_path / "out", source)
    finished = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").unlink()  # an interrupted run, whose train.json a disk fault or a hand then damaged
    (out / "train.json").write_text(record)
    with caplog.at_level(logging.INFO):
        again = make_prepared(out, source)
    assert "train.json cannot be read as a finished split's record" in caplog.text
    assert "val/ was completed by an earlier run: kept" in caplog.text
    assert json.loads((again / "manifest.json").read_text()) == finished
    assert len(stored_samples(out, "train")) == finished["splits"]["train"]["images"]


def test_an_interrupted_prepare_keeps_finished_splits_and_writes_the_rest_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_quirky_imagenet(tmp_path / "source", {"train": 2, "val": 2})
    out = make_prepared(tmp_path / "out", source)
    finished = json.loads((out / "manifest.json").read_text())
    train_files = {p: p.stat().st_mtime_ns for p in (out / "train").iterdir()}
    # Killed while writing val/: no manifest, no val.json, a half-written chunk and no index.
    (out / "manifest.json").unlink()
    (out / "val.json").unlink()
    (out / "val" / "index.json").unlink()
    chunk = next((out / "val").glob("chunk-*.bin"))
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(UserError, match="no finished prepared set"):
        prepared_module(out).setup("fit")
    with caplog.at_level(logging.INFO):
        again = make_prepared(out, source)
    assert "train/ was completed by an earlier run: kept" in caplog.text
    assert "val/ is from an unfinished or different run: writing it again from scratch" in caplog.text
    assert json.loads((again / "manifest.json").read_text()) == finished
    assert {p: p.stat().st_mtime_ns for p in (out / "train").iterdir()} == train_files
    assert len(stored_samples(out, "val")) == finished["splits"]["val"]["images"] == 5

    (source / "val" / WNIDS[1] / "extra.JPEG").write_bytes(
        (source / "val" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG").read_bytes()
    )
    with pytest.raises(UserError, match=r"prepared differently \(source files \(names, sizes or modification"):
        make_prepared(out, source)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("not a prepared set")
    with pytest.raises(UserError, match=r"holds files alexnet-prepare did not write \(notes.txt\)"):
        make_prepared(tmp_path / "busy", source)


def test_decoding_on_the_device_gives_the_batches_workers_decode(prepared_jpeg: Path) -> None:
    cpu, device = prepared_module(prepared_jpeg, decode="cpu"), prepared_module(prepared_jpeg, decode="device")
    assert not cpu.decodes_on_device() and device.decodes_on_device()
    for module in (cpu, device):
        module.setup("fit")
    for split in ("train", "val"):
        torch.manual_seed(0)
        on_cpu = [cpu.on_before_batch_transfer(b, 0) for b in cpu._loader(split)]
        torch.manual_seed(0)
        encoded = list(device._loader(split))
        assert all(isinstance(images, list) and images[0].dim() == 1 for images, _ in encoded), "workers sent bytes"
        on_device = [device.on_before_batch_transfer(b, 0) for b in encoded]  # decode_jpeg(list, device="cpu")
        assert len(on_cpu) == len(on_device) == 2  # 11 training images: 2 full batches; 8 validation images
        for (a, labels_a), (b, labels_b) in zip(on_cpu, on_device, strict=True):
            assert a.dtype == b.dtype == torch.uint8 and torch.equal(a, b) and torch.equal(labels_a, labels_b)
    assert not prepared_module(prepared_jpeg, decode="auto").decodes_on_device()  # no trainer on CUDA here


def test_both_imagenet_modules_share_one_input_pipeline(quirky_imagenet: Path, prepared_jpeg: Path) -> None:
    folder = ImageNetDataModule(root=str(quirky_imagenet), num_classes=3, input_size=227, lighting_std=0.1)
    prepared = prepared_module(prepared_jpeg, input_size=227, lighting_std=0.1)
    images = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8)
    for stage in ("train", "val", "test"):
        torch.manual_seed(3)
        a = folder.model_input(images, stage)
        torch.manual_seed(3)
        assert torch.equal(a, prepared.model_input(images, stage)), stage
    assert prepared.class_names() == folder.class_names() == ["n01440764 tench", "n01443537 goldfish",
                                                             "n01484850 great white shark"]  # fmt: skip
    path = str(quirky_imagenet / "val" / WNIDS[1] / f"{WNIDS[1]}_2.JPEG")  # a CMYK file
    assert torch.equal(prepared.read_image(path), folder.read_image(path))


def test_paper_normalization_subtracts_the_mean_of_the_prepared_patches(
    tmp_path: Path, quirky_imagenet: Path, prepared_raw: Path, prepared_jpeg: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = ImageNetDataModule(root=str(shutil.copytree(quirky_imagenet, tmp_path / "source")), num_classes=3,
                                num_workers=0, normalization="paper")  # fmt: skip
    folder.prepare_data()
    raw = prepared_module(prepared_raw, normalization="paper")
    raw.prepare_data()
    assert torch.equal(raw.normalization.mean_image, folder.normalization.mean_image), "the same 19 patches"
    assert (prepared_raw / "mean_image_train_256px.pt").is_file()
    jpeg = prepared_module(prepared_jpeg, normalization="paper")
    jpeg.prepare_data()
    assert (jpeg.normalization.mean_image - folder.normalization.mean_image).abs().mean() < 1.0  # JPEG's error
    with caplog.at_level(logging.INFO):  # the cached mean is no foreign file to alexnet-prepare
        prepare(str(quirky_imagenet), str(prepared_raw), PatchSettings(format="raw"), num_workers=1)
    assert "nothing to do" in caplog.text


def test_wrong_settings_are_one_clear_error(tmp_path: Path, prepared_jpeg: Path) -> None:
    with pytest.raises(UserError, match=r"holds no finished prepared set \(no manifest.json\)\. Write one with"):
        prepared_module(tmp_path).setup("fit")
    with pytest.raises(UserError, match="has 3 classes but the model has 1000 outputs; set data.num_classes=3"):
        prepared_module(prepared_jpeg, num_classes=1000).setup("fit")
    with pytest.raises(UserError, match="data.decode='gpu': must be one of cpu, device, auto"):
        prepared_module(prepared_jpeg, decode="gpu")
    with pytest.raises(UserError, match="model.input_size=300 is larger than the prepared patches' resize_size=256"):
        prepared_module(prepared_jpeg, input_size=300).setup("validate")
    with pytest.raises(UserError, match="format='png'"):
        PatchSettings(format="png")
    with pytest.raises(UserError, match="overlaps source"):
        prepare(str(tmp_path), str(tmp_path / "out"), PatchSettings())


def test_paper_recipe_trains_on_prepared_patches(tmp_path: Path, prepared_jpeg: Path) -> None:
    cfg = train_config(
        tmp_path,
        prepared_jpeg,
        ["experiment=paper_imagenet", "data=imagenet_prepared", "debug=fdr", "data.num_classes=3",
         "data.batch_size=2", "data.num_workers=0", "data.pin_memory=false", "++callbacks.checkpoint=null",
         "++callbacks.best_checkpoint=null"],
        fashion=False,
    )  # fmt: skip
    assert (cfg.model.input_size, cfg.model.groups, cfg.model.lrn, cfg.trainer.max_epochs) == (227, 2, True, 90)
    run = build(cfg)
    assert isinstance(run.datamodule, PreparedImageNetDataModule)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert math.isfinite(float(run.trainer.callback_metrics["val/loss"]))


def test_each_rank_reads_its_own_shard_and_validation_counts_every_image_once(
    prepared_jpeg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # litdata reads the rank from WORLD_SIZE / GLOBAL_RANK when no process group is running.
    seen: dict[str, list[list[int]]] = {"train": [], "val": []}
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        module = prepared_module(prepared_jpeg, batch_size=2, decode="device")  # bytes: cheap to collect
        module.setup("fit")
        for split in ("train", "val"):
            files = [hash(bytes(image.numpy())) for images, _ in module._loader(split) for image in images]
            seen[split].append(files)
    train, val = seen["train"], seen["val"]
    assert len(train[0]) == len(train[1]) == 4 and not set(train[0]) & set(train[1])  # 11 images: 2 batches each
    assert sorted(val[0] + val[1]) == sorted(set(val[0] + val[1])) and len(val[0] + val[1]) == 8  # all, once each


@pytest.fixture(scope="module")
def streaming_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """23 training and 23 validation images (8 files a class, one truncated in class 0), prepared as JPEG."""
    root = tmp_path_factory.mktemp("streaming")
    return make_prepared(root / "prepared", make_quirky_imagenet(root / "source", {"train": 8, "val": 8}))


@pytest.mark.slow
def test_prepare_then_train_eval_and_predict(tmp_path: Path, quirky_imagenet: Path) -> None:
    prepared = tmp_path / "prepared"
    result = run_cli("alexnet-prepare", f"source={quirky_imagenet}", f"output={prepared}", "format=raw",
                     f"paths.log_dir={tmp_path}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (prepared / "skipped.txt").read_text().count(".JPEG\t") == 2
    train(train_config(tmp_path, prepared, ["data=imagenet_prepared", *TINY, "data.num_classes=3",
                                            "trainer.max_epochs=2", "test=false"], fashion=False))  # fmt: skip
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"

    scored = evaluate(compose_config("eval", [f"paths.output_dir={tmp_path / 'eval'}", f"ckpt_path={checkpoint}",
                                              "data.test_crops=10", "trainer.accelerator=cpu"]))  # fmt: skip
    assert scored["crops"] == 10 and scored["top5_error"] == 0.0  # 3 classes: the top 5 always hold the truth
    # Raw patches are data=imagenet's exactly: the same checkpoint scores the same on the ImageFolder copy.
    folder = ImageNetDataModule(
        root=str(quirky_imagenet),
        num_classes=3,
        input_size=67,
        channels=1,
        batch_size=4,
        num_workers=0,
        pin_memory=False,
    )  # fmt: skip (the default d2l net reads grey)
    module = LitAlexNet(net=net_from_checkpoint(read_checkpoint(checkpoint), checkpoint), optimizer=torch.optim.SGD)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (direct,) = trainer.test(module, datamodule=folder, verbose=False)
    assert scored["top1_error"] == pytest.approx(1 - direct["test/acc_top1"], abs=1e-7)
    assert scored["loss"] == pytest.approx(direct["test/loss"], rel=1e-5)

    images = quirky_imagenet / "val" / WNIDS[1]
    results = predict(compose_config("predict", [f"ckpt_path={checkpoint}", f"images=[{images}]"]))
    assert len(results) == 3
    for _, top in results:  # names from the prepared set's manifest
        assert sorted(name for name, _ in top) == ["n01440764 tench", "n01443537 goldfish",
                                                   "n01484850 great white shark"]  # fmt: skip


@pytest.mark.slow
def test_killed_mid_epoch_run_resumes_to_the_same_weights(tmp_path: Path, streaming_set: Path) -> None:
    n = 16  # 5 batches of 4 an epoch: the run crosses epoch boundaries and validations after the kill
    args = ["data=imagenet_prepared", f"data.root={streaming_set}", "data.num_classes=3", *TINY_NET,
            "data.batch_size=4", "data.num_workers=1", "data.pin_memory=false", "test=false", "trainer=cpu",
            "++callbacks.progress_bar=null", "trainer.deterministic=true", f"trainer.max_steps={n}",
            "trainer.limit_val_batches=2", "callbacks.checkpoint.every_n_train_steps=2"]  # fmt: skip
    straight = tmp_path / "straight"  # in this process: the same config, one command start saved
    train(train_config(straight, streaming_set, [args[0], *args[2:]], fashion=False))
    killed = tmp_path / "killed"
    log = (tmp_path / "killed.log").open("w")
    process = subprocess.Popen([str(BIN / "alexnet-train"), *args, f"hydra.run.dir={killed}"], cwd=tmp_path,
                               env=run_env(), stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # nothing is saved on the way out; its loader worker may outlive it a while
    process.wait(timeout=30)
    stopped_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert stopped_at < n and stopped_at % 5 != 0, "killed mid-epoch, after a mid-epoch checkpoint (steps 2, 4, 6...)"
    loader_state = torch.load(last, map_location="cpu", weights_only=False)["loops"]["fit_loop"]["state_dict"]
    assert loader_state["combined_loader"][0]["num_samples_yielded"] == 4 * (stopped_at % 5)

    result = run_cli("alexnet-train", f"resume={killed}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a = torch.load(straight / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(last, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == n
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), "bit-identical"


@pytest.mark.slow
def test_ddp_counts_each_prepared_validation_image_once_like_one_process(tmp_path: Path, streaming_set: Path) -> None:
    settings = ["data=imagenet_prepared", "data.num_classes=3", *TINY, "data.batch_size=8", "trainer.max_epochs=1",
                "trainer.limit_train_batches=2", "test=false", "trainer.log_every_n_steps=1"]  # fmt: skip
    run_dir = tmp_path / "ddp"
    # 23 validation images, 4 a batch on each rank: 8 on rank 0, 15 on rank 1; nothing padded or repeated.
    result = run_cli("alexnet-train", "trainer=ddp_cpu", "trainer.devices=2", f"data.root={streaming_set}",
                     *settings, "++callbacks.progress_bar=null", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                     timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ddp_top1 = column(read_metrics(run_dir / "csv" / "metrics.csv"), "val/acc_top1")[-1]
    ddp_top5 = column(read_metrics(run_dir / "csv" / "metrics.csv"), "val/acc_top5")[-1]

    run = build(train_config(tmp_path / "single", streaming_set, [*settings, "logger=none", "callbacks=none"],
                             fashion=False))  # fmt: skip
    (single,) = run.trainer.validate(run.module, datamodule=run.datamodule,
                                     ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"), verbose=False)  # fmt: skip
    assert single["val/acc_top1"] == pytest.approx(ddp_top1, abs=1e-6)
    assert single["val/acc_top5"] == pytest.approx(ddp_top5, abs=1e-6)
    assert round(ddp_top1 * 23) == pytest.approx(ddp_top1 * 23, abs=1e-4), "a whole number of the 23 images"


def write_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 it signed: (CA, certificate, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 (3.10 has no datetime.UTC)
    pem = serialization.Encoding.PEM

    def certificate(subject: str, issuer: str, public_key, signing_key, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)  # sign certificates
            builder = builder.add_extension(usage, critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(certificate("test CA", "test CA", ca_key.public_key(), ca_key, True).public_bytes(pem))
    paths[1].write_bytes(certificate("127.0.0.1", "test CA", key.public_key(), ca_key, False).public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


@pytest.fixture
def s3_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a free loopback port, over TLS with a private CA, for at most the test's duration.

    TLS because litdata moves chunks with obstore, which refuses plain http:// endpoints (its ``allow_http``
    client option cannot be passed through litdata 0.2.76, and ``AWS_ALLOW_HTTP`` is overridden by the client
    options litdata sets); the CA is trusted through ``AWS_CA_BUNDLE`` (boto3) and ``SSL_CERT_FILE`` (obstore).
    """
    ca, cert, key = write_tls_files(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "moto.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port), "-c",
                               str(cert), "-k", str(key)], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    endpoint = f"https://127.0.0.1:{port}"
    settings = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_CA_BUNDLE": str(ca), "SSL_CERT_FILE": str(ca)}  # fmt: skip
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "moto.log").read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "moto's server did not start within 60 s"
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.slow
def test_streams_the_prepared_set_from_an_s3_compatible_server(
    tmp_path: Path, quirky_imagenet: Path, prepared_jpeg: Path, s3_server: str
) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="imagenet")
    result = run_cli("alexnet-prepare", f"source={quirky_imagenet}", "output=s3://imagenet/prepared",
                     "num_workers=1", f"paths.log_dir={tmp_path}", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="imagenet")["Contents"]}
    assert {"prepared/manifest.json", "prepared/train/index.json", "prepared/val/index.json"} <= keys
    manifest = boto3.client("s3").get_object(Bucket="imagenet", Key="prepared/manifest.json")["Body"].read()
    assert json.loads(manifest) == json.loads((prepared_jpeg / "manifest.json").read_text())  # same as on disk

    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    result = run_cli("alexnet-train", "data=imagenet_prepared", "data.root=s3://imagenet/prepared",
                     f"data.cache_dir={cache}", "data.num_classes=3", *TINY, "data.batch_size=4", "trainer=cpu",
                     "trainer.max_epochs=1", "++callbacks.progress_bar=null", f"hydra.run.dir={run_dir}",
                     cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.relative_to(cache).parts[0] for p in cache.rglob("chunk-*.bin")} == {"train", "val"}, "cached here"
    streamed_top1 = column(read_metrics(run_dir / "csv" / "metrics.csv"), "test/acc_top1")[-1]
    # The same checkpoint on the local copy of the same set scores the same: the bucket served every image.
    local = evaluate(compose_config("eval", [f"paths.output_dir={tmp_path / 'eval'}", f"data.root={prepared_jpeg}",
                                             f"ckpt_path={run_dir / 'checkpoints' / 'epoch_000.ckpt'}",
                                             "trainer.accelerator=cpu"]), ["data.root"])  # fmt: skip
    assert 1 - local["top1_error"] == pytest.approx(streamed_top1, abs=1e-6)
