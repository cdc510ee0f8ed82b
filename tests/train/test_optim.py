"""The lr scaling rule, warm-up + cosine schedule and AdamW parameter groups."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from draco_em.model.draco import DracoConfig, DracoMAE
from draco_em.train.optim import WarmupCosine, build_optimizer, param_groups, scaled_lr


def test_lr_scaling_rule() -> None:
    assert scaled_lr(1.5e-4, 4096) == pytest.approx(2.4e-3)  # the paper's batch, MAE's blr
    assert scaled_lr(1e-3, 256) == pytest.approx(1e-3)
    assert scaled_lr(1e-3, 8 * 16 * 2) == pytest.approx(1e-3)


def test_warmup_then_cosine() -> None:
    f = WarmupCosine(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert f(0) == 0 and f(5) == pytest.approx(0.5) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert WarmupCosine(0, 10)(0) == 1.0  # no warm-up


def test_scheduler_drives_the_optimizer_and_survives_state_dict() -> None:
    model = torch.nn.Linear(4, 4)
    opt, sched = build_optimizer(model, 1e-3, 0.05, (0.9, 0.95), warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3])
    expected = 1e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 16))  # step 7
    assert lrs[-1] == pytest.approx(expected)
    opt2, sched2 = build_optimizer(model, 1e-3, 0.05, (0.9, 0.95), 4, 20)
    sched2.load_state_dict(sched.state_dict())
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)


def test_no_weight_decay_on_biases_norms_and_tokens() -> None:
    model = DracoMAE(
        DracoConfig.from_preset(
            "tiny",
            embed_dim=32,
            depth=1,
            num_heads=2,
            decoder_embed_dim=32,
            decoder_depth=1,
            decoder_num_heads=2,
            decoder_neck_dim=16,
        )
    )
    no_decay, decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == 0.05
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "mask_token" in nd and "norm.weight" in nd and "decoder_pred.bias" in nd
    assert "pos_embed" not in nd | {names[id(p)] for p in decay["params"]}  # frozen: not trained
    assert {names[id(p)] for p in decay["params"]} >= {
        "decoder_pred.weight",
        "blocks.0.attn.qkv.weight",
    }
