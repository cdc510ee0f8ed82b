import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from draco_em.errors import DracoInputError
from draco_em.evaluate.denoise import EvaluateDenoiseConfig, evaluate_denoise
from draco_em.io.coords import write_relion_coords
from draco_em.io.mrc import write_mrc


@pytest.fixture
def folders(tmp_path, blob_pair):
    clean, odd, _ = blob_pair
    for sub in ("clean", "raw", "good"):
        (tmp_path / sub).mkdir()
    write_mrc(tmp_path / "clean" / "mic_0.mrc", clean, 1.0)
    write_mrc(tmp_path / "raw" / "mic_0.mrc", odd, 1.0)
    # A "denoiser" output in other units, with a suffix and at 2x binning: still matched.
    good = 3 * (clean + 0.05 * (odd - clean)) + 10
    write_mrc(tmp_path / "good" / "mic_0_denoised.mrc", good[::2, ::2], 2.0)
    yy, xx = np.unravel_index(np.argsort(clean.ravel())[-1:], clean.shape)
    coords = pd.DataFrame({"micrograph": ["mic_0"], "x": xx.astype(float), "y": yy.astype(float)})
    write_relion_coords(tmp_path / "coords" / "mic_0.star", coords)
    return tmp_path


def test_better_denoiser_scores_higher(folders):
    raw = evaluate_denoise(EvaluateDenoiseConfig(pred=folders / "raw", clean=folders / "clean",
                                                 coords=folders / "coords", radius=3))  # fmt: skip
    good = evaluate_denoise(EvaluateDenoiseConfig(pred=folders / "good", clean=folders / "clean",
                                                  coords=folders / "coords", radius=3))  # fmt: skip
    assert raw["n"] == good["n"] == 1
    for key in ("psnr_db", "ssim", "frc_mean"):
        assert good["mean"][key] > raw["mean"][key]
    assert "snr_db" in good["mean"]


def test_no_match_is_a_user_error(folders, tmp_path):
    (tmp_path / "other").mkdir()
    write_mrc(tmp_path / "other" / "zzz.mrc", np.ones((4, 4)) + np.eye(4), 1.0)
    with pytest.raises(DracoInputError, match="no prediction"):
        evaluate_denoise(EvaluateDenoiseConfig(pred=tmp_path / "other", clean=folders / "clean"))


def test_cli_json(folders):
    cmd = [sys.executable, "-m", "draco_em", "evaluate", "denoise", "--pred", str(folders / "raw"),
           "--clean", str(folders / "clean"), "--json"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    data = json.loads(res.stdout)
    assert data["n"] == 1 and data["per_micrograph"][0]["micrograph"] == "mic_0"
