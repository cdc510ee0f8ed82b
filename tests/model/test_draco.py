"""DRACO model: masking invariants, the loss against a hand computation, inference, bf16."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from draco_em.errors import DracoInputError
from draco_em.model.draco import DracoConfig, DracoMAE, PixelRefiner
from draco_em.model.vit import resample_pos_embed, sincos_2d_pos_embed

P = 16


def small_config(**overrides: object) -> DracoConfig:
    """A few-thousand-parameter model on 64×64 crops (4×4 tokens): fast enough for any test."""
    sizes = {"preset": "custom", "img_size": 64, "patch_size": P, "embed_dim": 32, "depth": 2,
             "num_heads": 2, "decoder_embed_dim": 32, "decoder_depth": 1,
             "decoder_num_heads": 2, "decoder_neck_dim": 16}  # fmt: skip
    return DracoConfig(**{**sizes, **overrides})


@pytest.fixture
def model() -> DracoMAE:
    torch.manual_seed(0)
    return DracoMAE(small_config())


def triplet(b: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    full = torch.randn(b, 1, h, w, generator=g)
    odd = full + 0.5 * torch.randn(b, 1, h, w, generator=g)
    even = full + 0.5 * torch.randn(b, 1, h, w, generator=g)
    return full, odd, even


@pytest.mark.parametrize(("gamma", "length"), [(0.5, 16), (0.625, 16), (0.75, 16), (0.9, 49)])
def test_masks_are_disjoint_with_exact_counts(model: DracoMAE, gamma: float, length: int) -> None:
    odd_idx, even_idx = model.draw_masks(5, length, gamma, torch.device("cpu"))
    masks = model._masks_from_indices(5, length, odd_idx, even_idx)
    n_vis = length - int(gamma * length)
    odd, even, both = masks["odd_visible"], masks["even_visible"], masks["both_masked"]
    assert (odd.sum(1) == n_vis).all() and (even.sum(1) == n_vis).all()
    assert (both.sum(1) == length - 2 * n_vis).all()
    assert not (odd & even).any() and not (odd & both).any() and not (even & both).any()
    assert (odd | even | both).all()
    assert (odd_idx.diff(dim=1) > 0).all()  # raster order kept


def test_forward_masks_differ_per_sample_and_follow_generator(model: DracoMAE) -> None:
    full, odd, even = triplet(b=4)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    loss_a, pred_a, masks_a = model(full, odd, even, generator=gen())
    loss_b, pred_b, masks_b = model(full, odd, even, generator=gen())
    assert torch.equal(masks_a["odd_visible"], masks_b["odd_visible"])
    assert torch.equal(pred_a, pred_b) and loss_a.item() == loss_b.item()
    assert len({tuple(r.tolist()) for r in masks_a["odd_visible"]}) > 1  # not one mask for all
    assert pred_a.shape == (4, 16, P * P)


def test_encoder_only_sees_each_views_visible_patches(model: DracoMAE) -> None:
    full, odd, even = triplet()
    _, pred, masks = model(full, odd, even, generator=torch.Generator().manual_seed(1))

    def pixels(mask: torch.Tensor) -> torch.Tensor:  # bool [B, L] → 0/1 image [B, 1, 64, 64]
        return model.unpatchify(mask.float()[..., None].expand(-1, -1, P * P), 64, 64)

    hidden_odd, hidden_even = pixels(~masks["odd_visible"]), pixels(~masks["even_visible"])
    # Changing pixels the encoder must not see (and the full sum, a target only) changes nothing.
    _, pred2, _ = model(full * 5, odd + 9 * hidden_odd, even - 9 * hidden_even,
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    torch.testing.assert_close(pred, pred2)
    _, pred3, _ = model(full, odd + 9 * (1 - hidden_odd), even,
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert not torch.allclose(pred, pred3)


def test_loss_equals_hand_computation(model: DracoMAE) -> None:
    model.config.recon_weight = 0.5
    full, odd, even = triplet()
    loss, pred, masks = model(full, odd, even, generator=torch.Generator().manual_seed(3))
    y = pred.detach().numpy()
    tf, to, te = (model.patchify(t).numpy() for t in (full, odd, even))
    n2n_sq, n2n_n, rec_sq, rec_n = 0.0, 0, 0.0, 0
    for b in range(y.shape[0]):
        for i in range(y.shape[1]):
            if masks["odd_visible"][b, i]:  # Eq. 8, first case: target = even patch
                n2n_sq += ((y[b, i] - te[b, i]) ** 2).sum()
                n2n_n += y.shape[2]
            elif masks["even_visible"][b, i]:  # Eq. 8, second case: target = odd patch
                n2n_sq += ((y[b, i] - to[b, i]) ** 2).sum()
                n2n_n += y.shape[2]
            else:  # Eq. 9: masked in both, target = full sum
                rec_sq += ((y[b, i] - tf[b, i]) ** 2).sum()
                rec_n += y.shape[2]
    n2n, recon = n2n_sq / n2n_n, rec_sq / rec_n
    assert model.last_losses["n2n"] == pytest.approx(n2n, rel=1e-5)
    assert model.last_losses["recon"] == pytest.approx(recon, rel=1e-5)
    assert loss.item() == pytest.approx(n2n + 0.5 * recon, rel=1e-5)  # Eq. 10


def test_gamma_half_has_empty_recon_set_and_finite_loss(model: DracoMAE) -> None:
    full, odd, even = triplet()
    loss, _, masks = model(full, odd, even, mask_ratio=0.5)
    assert not masks["both_masked"].any()
    assert model.last_losses["recon"] == 0.0
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_every_trainable_parameter_gets_a_gradient(model: DracoMAE) -> None:
    # DDP fails on parameters that a forward leaves unused, so both passes must reach all.
    for run in (lambda: model(*triplet())[0], lambda: model.forward_mae(triplet()[0])[0]):
        model.zero_grad()
        run().backward()
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        assert all(p.grad is not None for p in trainable.values())
        # Non-zero except inside the neck, whose zero-initialised last norm blocks the gradient
        # at initialisation (it starts as the identity, §1.2).
        zero = {n for n, p in trainable.items() if p.grad.abs().sum() == 0}
        assert zero <= {n for n in trainable if n.startswith("decoder_neck.")}
        assert "mask_token" not in zero and "decoder_neck.7.weight" not in zero
    assert not model.pos_embed.requires_grad  # fixed sin-cos, as MAE (paper §8 gap 8)


@pytest.mark.parametrize("gamma", [0.3, 0.49, 1.0, 1.2])
def test_bad_mask_ratio_is_a_user_error(model: DracoMAE, gamma: float) -> None:
    with pytest.raises(DracoInputError, match="mask ratio"):
        model(*triplet(), mask_ratio=gamma)
    if gamma < 0.5:  # one view (MAE) takes any γ in [0, 1); the config records it as is
        assert small_config(mask_ratio=gamma).mask_ratio == gamma
        return
    with pytest.raises(DracoInputError, match="mask ratio"):
        small_config(mask_ratio=gamma)
    with pytest.raises(DracoInputError, match="mask ratio"):
        model.forward_mae(triplet()[0], mask_ratio=gamma)


def test_forward_mae_scores_masked_patches_only(model: DracoMAE) -> None:
    image = triplet()[0]
    loss, pred, mask = model.forward_mae(image, generator=torch.Generator().manual_seed(0))
    assert (mask.sum(1) == 12).all()  # 16 - (16 - int(0.75 * 16)) masked
    err = (pred - model.patchify(image)).pow(2).mean(-1)
    assert loss.item() == pytest.approx(err[mask].mean().item(), rel=1e-5)
    assert model.forward_mae(image, mask_ratio=0.0)[0].item() == 0.0


def test_patchify_is_row_major_and_inverts() -> None:
    m = DracoMAE(small_config())
    img = torch.arange(2 * 48 * 80, dtype=torch.float32).reshape(2, 1, 48, 80)
    x = m.patchify(img)
    assert x.shape == (2, 15, P * P)
    torch.testing.assert_close(x[:, 1], img[:, 0, :P, P : 2 * P].reshape(2, -1))  # next column
    torch.testing.assert_close(x[:, 5], img[:, 0, P : 2 * P, :P].reshape(2, -1))  # next row
    torch.testing.assert_close(m.unpatchify(x, 48, 80), img)


def test_sincos_layout_is_official() -> None:
    dim, g = 16, 5
    emb = sincos_2d_pos_embed(g, dim)
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim // 4))
    for i, j in [(0, 0), (1, 3), (4, 2)]:
        # built on the (row, col) grid, then H and W transposed: entry [i, j] is row j, col i.
        want = np.concatenate([np.sin(j * omega), np.cos(j * omega),
                               np.sin(i * omega), np.cos(i * omega)])  # fmt: skip
        np.testing.assert_allclose(emb[0, i, j].numpy(), want, atol=1e-6)


def test_pos_embed_resampling(model: DracoMAE) -> None:
    assert resample_pos_embed(model.pos_embed, (4, 4)) is model.pos_embed
    out = resample_pos_embed(model.pos_embed, (3, 5))
    assert out.shape == (1, 3, 5, 32) and torch.isfinite(out).all()


def test_denoise_non_square_and_bad_size(model: DracoMAE) -> None:
    img = torch.randn(2, 1, 48, 80)
    out = model.denoise(img)
    assert out.shape == img.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not out.requires_grad
    with pytest.raises(DracoInputError, match="multiple of the patch"):
        model.denoise(torch.randn(1, 1, 50, 64))


def test_bf16_autocast_cpu_is_finite(model: DracoMAE) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = model(*triplet())
        out = model.denoise(torch.randn(1, 1, 64, 96))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def blob_triplets(rng: np.random.Generator, b: int) -> list[torch.Tensor]:
    """b fresh 64×64 blob images with two Poisson draws each, as the ``blob_pair`` fixture."""
    yy, xx = np.mgrid[:64, :64]
    out = []
    for _ in range(b):
        clean = np.zeros((64, 64))
        for cy, cx in rng.uniform(8, 56, size=(6, 2)):
            clean += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
        lam = 2.0 + 3.0 * clean
        odd, even = rng.poisson(lam), rng.poisson(lam)
        out.append(np.stack([(odd + even) / 2, odd, even]))
    return [normalise(torch.tensor(np.stack(out)[:, k : k + 1])) for k in range(3)]


def normalise(x: torch.Tensor) -> torch.Tensor:
    return ((x - 2.5) / 1.5).float()  # one fixed affine for every image keeps N2N targets unbiased


def test_short_training_denoises_blob_pair(blob_pair: tuple[np.ndarray, ...]) -> None:
    """A small model trained briefly with the DRACO loss denoises a held-out N2N pair.

    It must beat the raw full sum and also the best constant image (so it learnt structure).
    """
    torch.manual_seed(0)
    sizes = {"embed_dim": 96, "depth": 4, "num_heads": 3, "decoder_embed_dim": 128,
             "decoder_depth": 2, "decoder_num_heads": 4, "decoder_neck_dim": 64}  # fmt: skip
    model = DracoMAE(small_config(**sizes))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    rng, gen = np.random.default_rng(1), torch.Generator().manual_seed(0)
    for _ in range(120):
        loss, _, _ = model(*blob_triplets(rng, 8), generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    clean, odd, even = (torch.from_numpy(a)[None, None].double() for a in blob_pair)
    clean, full = normalise(clean), normalise((odd + even) / 2)
    mse = lambda a: float((a - clean).pow(2).mean())  # noqa: E731
    denoised = model.denoise(full)
    assert mse(denoised) < 0.5 * mse(full), (mse(denoised), mse(full))
    assert mse(denoised) < 0.8 * mse(clean.mean()), (mse(denoised), mse(clean.mean()))


# ---------------------------------------------------------------- denoising fine-tune (N2N, γ = 0)
def test_forward_n2n_equals_hand_computation(model: DracoMAE) -> None:
    """Both directions, every patch visible: mean of MSE(f(odd), even) and MSE(f(even), odd)."""
    _, odd, even = triplet()
    loss, pred, masks = model.forward_n2n(odd, even)
    f_odd, f_even = model.denoise(odd), model.denoise(even)
    hand = 0.5 * ((f_odd - even).pow(2).mean() + (f_even - odd).pow(2).mean())
    torch.testing.assert_close(loss, hand)
    torch.testing.assert_close(pred, torch.cat([f_odd, f_even]).detach())
    assert masks == {} and model.last_losses["n2n"] == pytest.approx(loss.detach().item())


def test_refiner_is_optional_starts_as_identity_and_has_no_patch_grid() -> None:
    torch.manual_seed(0)
    plain = DracoMAE(small_config())
    assert plain.refiner is None and not any(k.startswith("refiner.") for k in plain.state_dict())
    refined = DracoMAE(small_config(refiner_channels=8))
    fresh = {k: v for k, v in refined.state_dict().items() if k.startswith("refiner.")}
    refined.load_state_dict(plain.state_dict() | fresh)
    img = torch.randn(2, 1, 64, 96)
    torch.testing.assert_close(refined.denoise(img), plain.denoise(img))  # zero last conv

    # Once trained it is a translation-equivariant correction: a shift of the input by a few
    # pixels (not a multiple of the patch) shifts its contribution the same way.
    torch.nn.init.normal_(refined.refiner.net[-1].weight, std=0.1)
    coarse = torch.randn(1, 1, 64, 64)
    shifted = refined.refiner(coarse.roll(3, -1), img[:1, :, :, :64].roll(3, -1))
    base = refined.refiner(coarse, img[:1, :, :, :64]).roll(3, -1)
    torch.testing.assert_close(shifted[..., 20:-20], base[..., 20:-20])


def test_refiner_gets_gradients_from_the_n2n_loss() -> None:
    torch.manual_seed(0)
    model = DracoMAE(small_config(refiner_channels=8))
    _, odd, even = triplet()
    model.forward_n2n(odd, even)[0].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.refiner.parameters())  # fmt: skip


def test_refiner_receptive_field_is_what_its_docstring_says() -> None:
    """Counted, not assumed: the pixels one output pixel depends on (it said 31 px; QA)."""
    refiner = PixelRefiner(4)
    for conv in refiner.net:
        if isinstance(conv, torch.nn.Conv2d):  # positive weights: no gradient cancels out
            torch.nn.init.constant_(conv.weight, 0.1)
            torch.nn.init.zeros_(conv.bias)
    image = torch.ones(1, 1, 81, 81, requires_grad=True)
    refiner(torch.zeros(1, 1, 81, 81), image)[0, 0, 40, 40].backward()
    assert image.grad is not None
    seen = image.grad[0, 0, 40].nonzero().flatten()
    width = int(seen.max() - seen.min()) + 1
    assert width == 35
    assert f"receptive field {width} px" in (PixelRefiner.__doc__ or "")
