"""CUDA paths: run with ``pytest --gpu -m gpu`` on a machine with a GPU (skipped elsewhere).

The default suite hides GPUs (tests/conftest.py) so that its exact CPU comparisons hold on any
machine; these tests check what changes on a GPU: bf16 autocast stays close to the CPU's float32,
training runs and its outputs load on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from draco_em.infer.denoise import Denoiser
from draco_em.io.mrc import write_mrc
from draco_em.model.weights import BUNDLED_DENOISER, load_model
from draco_em.runtime import resolve_device
from tests.pick.conftest import blob_image
from tests.pick.conftest import tiny_config as tiny_detector
from tests.train.conftest import TINY, write_dataset

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: run `pytest --gpu -m gpu` on a GPU machine")


def test_auto_device_is_the_gpu() -> None:
    assert resolve_device("auto").type == "cuda"


def test_bundled_denoiser_in_bf16_on_the_gpu_matches_float32_on_the_cpu(rng) -> None:
    model, _, meta = load_model("bundled", bundled=BUNDLED_DENOISER)
    image = rng.normal(10.0, 3.0, size=(512, 384)).astype(np.float32)
    outs = []
    for device, bf16 in ((torch.device("cpu"), False), (torch.device("cuda"), True)):
        den = Denoiser(model.to(device).eval(), meta.get("pixel_size"), device=device, bf16=bf16)
        outs.append(den.denoise_image(image, 1.0)[0].astype(np.float64))
    cpu, gpu = outs
    assert np.isfinite(gpu).all()
    # measured on an H200: 7e-4 on simulated micrographs (benchmarks/gpu_check.sh)
    assert np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu) < 5e-3


def test_pretraining_on_the_gpu_with_bf16_writes_a_checkpoint_the_cpu_loads(tmp_path) -> None:
    from draco_em.train.config import PretrainConfig
    from draco_em.train.pretrain import run_pretrain

    data = write_dataset(tmp_path / "data", n=4)
    cfg = PretrainConfig(data=data, out_dir=tmp_path / "run", preset="tiny", model_overrides=TINY,
                         crop_size=64, epochs=2, batch_size=4, crops_per_micrograph=4,
                         val_fraction=0.25, warmup_epochs=1, workers=0, device="cuda", amp=True,
                         progress=False, save_every_steps=0)  # fmt: skip
    result = run_pretrain(cfg)
    assert all(np.isfinite(v) for v in result["metrics"].values() if isinstance(v, float))
    model, _, _ = load_model(tmp_path / "run")  # a run folder, on the CPU
    assert next(model.parameters()).device.type == "cpu"


def test_picker_trains_on_the_gpu_and_predicts_on_the_cpu(tmp_path) -> None:
    from draco_em.io.coords import make_coords, write_relion_coords
    from draco_em.pick.config import PickTrainConfig
    from draco_em.pick.model_io import load_picker
    from draco_em.pick.train import train_picker

    rng = np.random.default_rng(1)
    for sub in ("mics", "coords"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        img, xy = blob_image(rng, (192, 192), 16.0, 8)
        write_mrc(tmp_path / "mics" / f"blob_{i}.mrc", img, pixel_size=1.0)
        write_relion_coords(tmp_path / "coords" / f"blob_{i}.star",
                            make_coords(f"blob_{i}", xy[:, 0], xy[:, 1]))  # fmt: skip
    cfg = PickTrainConfig(micrographs=[tmp_path / "mics"], coords=[tmp_path / "coords"],
                          diameter=32.0, outdir=tmp_path / "run", epochs=2, crops_per_epoch=16,
                          crop=64, device="cuda")  # fmt: skip
    path = train_picker(cfg, detector_config=tiny_detector())
    img, _ = blob_image(rng, (192, 192), 16.0, 8)
    on_cpu = load_picker(path, device="cpu").pick_image(img, 1.0, "t", threshold=0.01)
    on_gpu = load_picker(path, device="cuda").pick_image(img, 1.0, "t", threshold=0.01)
    assert len(on_gpu) == len(on_cpu) > 0
    np.testing.assert_allclose(on_gpu["score"], on_cpu["score"], atol=1e-3)
