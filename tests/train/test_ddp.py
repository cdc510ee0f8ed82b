"""DDP on CPU (gloo): 2 processes × batch B train the same weights as 1 process × batch 2B."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.train.checkpoint import checkpoint_path, load_checkpoint
from draco_em.train.config import PretrainConfig
from draco_em.train.pretrain import run_pretrain
from tests.train.conftest import TINY

pytestmark = pytest.mark.dist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config: PretrainConfig) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    result = run_pretrain(config)
    if not config.fsdp:  # FSDP2 ranks hold shards; the checkpoint has the full weights
        torch.save(result["model"].state_dict(), config.out_dir / f"rank{rank}.pt")


def test_two_processes_match_one_process_with_double_batch(tiny_config) -> None:
    ddp = tiny_config(batch_size=2, epochs=2)
    mp.spawn(_worker, args=(2, _free_port(), ddp), nprocs=2, join=True)
    rank0 = torch.load(ddp.out_dir / "rank0.pt")
    rank1 = torch.load(ddp.out_dir / "rank1.pt")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"replicas differ in {name}"

    single = tiny_config(batch_size=4, epochs=2, out_dir=ddp.out_dir.parent / "single")
    result = run_pretrain(single)
    assert result["state"].global_step == 6  # the same steps: 12 crops / (2 × 2) per epoch
    torch.manual_seed(single.seed)  # the initial weights of both runs
    initial = DracoMAE(DracoConfig.from_preset("tiny", img_size=64, **TINY)).state_dict()
    moved = 0.0
    for name, value in result["model"].state_dict().items():
        a, b = rank0[name], value
        if name.endswith("attn.qkv.bias"):
            # Softmax ignores a bias added to every key, so the key bias's gradient is pure
            # rounding noise (~1e-10) that Adam's normalisation turns into ±lr·1e-2 steps: the
            # only place summation order shows. Compare the query and value biases.
            third = a.shape[0] // 3
            a, b = torch.cat([a[:third], a[2 * third :]]), torch.cat([b[:third], b[2 * third :]])
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
        moved = max(moved, float((value - initial[name]).abs().max()))
    assert moved > 1e-3  # training changed the weights, so the match is not trivial
    ddp_ckpt = load_checkpoint(checkpoint_path(ddp.out_dir, "latest"))
    assert ddp_ckpt["config"]["batch_size"] == 2 and len(ddp_ckpt["rng"]) == 2


@pytest.mark.slow
def test_fsdp2_matches_one_process(tiny_config) -> None:
    sharded = tiny_config(batch_size=2, epochs=1, fsdp=True, save_every_steps=2)
    mp.spawn(_worker, args=(2, _free_port(), sharded), nprocs=2, join=True)
    single = tiny_config(batch_size=4, epochs=1, out_dir=sharded.out_dir.parent / "single")
    reference = run_pretrain(single)["model"].state_dict()
    saved = load_checkpoint(checkpoint_path(sharded.out_dir, "latest"))
    assert saved["global_step"] == 3 and saved["model"].keys() == reference.keys()
    for name, value in saved["model"].items():  # the checkpoint holds the full, unsharded weights
        if not name.endswith("attn.qkv.bias"):  # see the key-bias note above
            torch.testing.assert_close(value, reference[name], rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
    reason="torchrun not installed beside python",
)
def test_torchrun_cli_two_processes(tiny_manifest: Path, tmp_path: Path) -> None:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "run"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "draco_em.cli",
        "pretrain",
        "--data",
        str(tiny_manifest),
        "-o",
        str(out),
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--crops-per-micrograph",
        "4",
        "--crop-size",
        "64",
        "--val-fraction",
        "0.25",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(checkpoint_path(out, "latest"))
    assert ckpt["epoch"] == 1 and len(ckpt["rng"]) == 2
    assert (out / "metrics.jsonl").read_text().count('"kind": "val"') == 1
