"""The losses against values computed by hand, and their gradients."""

import math

import pytest
import torch

from dada import losses
from dada.models import build_discriminator, build_segmenter, upsample


def test_seg_ce_matches_hand_computed_mean_over_valid_pixels():
    # pixel 0: logits (0, 0), label 0 -> ln 2; pixel 1: logits (ln 3, 0), label 1 -> ln 4; pixel 2 ignored
    logits = torch.tensor([[0.0, math.log(3.0), 5.0], [0.0, 0.0, -5.0]]).reshape(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, 255]]])
    assert losses.seg_ce(logits, labels).item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)
    # float labels (as the official loader gives) and negative labels (ignored) behave the same
    labels_float = torch.tensor([[[0.0, 1.0, -1.0]]])
    assert losses.seg_ce(logits, labels_float).item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)


def test_seg_ce_without_valid_pixel_is_zero_with_zero_gradient():
    logits = torch.randn(2, 4, 3, 5, requires_grad=True)
    loss = losses.seg_ce(logits, torch.full((2, 3, 5), 255))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().max() == 0


def test_seg_ce_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="N×H×W"):
        losses.seg_ce(torch.randn(1, 3, 4, 4), torch.zeros(1, 5, 5, dtype=torch.long))


def test_berhu_matches_hand_computed_value_and_c_carries_no_gradient():
    pred = torch.zeros(1, 1, 2, 2, requires_grad=True)
    target = torch.tensor([1.0, 0.1, 0.5, 0.2]).reshape(1, 1, 2, 2)
    # r = 1, .1, .5, .2; c = .2; linear part .1 + .2; quadratic (1 + .04)/.4 + (.25 + .04)/.4
    loss = losses.berhu(pred, target)
    assert loss.item() == pytest.approx((0.3 + 2.6 + 0.725) / 4, rel=1e-6)
    loss.backward()
    # d/dpred: -1 on the linear part, -r/c on the quadratic part, /4 for the mean. A gradient through
    # c = 0.2·max r would change the entry of the maximum residual (pixel 0).
    expected = torch.tensor([-1.0 / 0.2, -1.0, -0.5 / 0.2, -1.0]).reshape(1, 1, 2, 2) / 4
    torch.testing.assert_close(pred.grad, expected)


def test_berhu_zero_residual_is_zero_without_nan():
    pred = torch.ones(2, 1, 3, 3, requires_grad=True)
    loss = losses.berhu(pred, torch.ones(2, 1, 3, 3))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()


def test_berhu_mask_restricts_pixels_and_ignores_nan_targets():
    pred = torch.zeros(1, 1, 1, 4, requires_grad=True)
    target = torch.tensor([1.0, 0.1, float("nan"), 50.0]).reshape(1, 1, 1, 4)
    mask = torch.tensor([True, True, False, False]).reshape(1, 1, 1, 4)
    loss = losses.berhu(pred, target, mask=mask)
    # r = 1, .1 -> c = .2: ((1 + .04)/.4 + .1) / 2
    assert loss.item() == pytest.approx((2.6 + 0.1) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 0, 0, 2:].abs().max() == 0


def test_self_information_and_entropy_match_hand_computed_values():
    p = torch.tensor([0.5, 0.25, 0.25]).reshape(1, 3, 1, 1)
    info = losses.self_information(p)
    torch.testing.assert_close(info.flatten(), torch.full((3,), 0.5 / math.log2(3)))
    assert info.sum().item() == pytest.approx(1.5 / math.log2(3), rel=1e-6)
    # entropy averages over N·H·W: two pixels, one certain (entropy 0)
    p2 = torch.cat([p, torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)], dim=3)
    assert losses.entropy(p2).item() == pytest.approx(1.5 / math.log2(3) / 2, rel=1e-6)
    assert torch.isfinite(losses.self_information(p2)).all()


def test_depth_aware_map_broadcasts_over_classes():
    info = torch.rand(2, 5, 3, 4)
    depth = torch.rand(2, 1, 3, 4)
    out = losses.depth_aware_map(info, depth)
    torch.testing.assert_close(out[:, 3], info[:, 3] * depth[:, 0])
    with pytest.raises(ValueError):
        losses.depth_aware_map(info, torch.rand(2, 2, 3, 4))


def test_adversarial_bce_against_constant_label():
    logits = torch.tensor([0.0, math.log(3.0)]).reshape(1, 1, 1, 2)
    # label 1: -log sigmoid(0) = ln 2, -log sigmoid(ln 3) = ln(4/3)
    expected = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    assert losses.adversarial_bce(logits, losses.TARGET_LABEL).item() == pytest.approx(expected, rel=1e-6)
    # label 0: -log(1 - sigmoid(x)) = ln 2, ln 4
    expected0 = (math.log(2.0) + math.log(4.0)) / 2
    assert losses.adversarial_bce(logits, losses.SOURCE_LABEL).item() == pytest.approx(expected0, rel=1e-6)


def test_depth_aware_adversarial_loss_reaches_the_depth_head():
    """Generator step of DADA: the adversarial gradient flows through the depth-aware map into the depth
    head (here without feature fusion, so the depth output is the only path to the encoder)."""
    net = build_segmenter("tiny", num_classes=4, depth_head=True, feature_fusion=False)
    disc = build_discriminator(num_classes=4)
    for p in disc.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, 3, 64, 64)
    out = net(x)
    prob = torch.softmax(upsample(out.seg, (64, 64)), dim=1)
    d_in = losses.depth_aware_map(losses.self_information(prob), upsample(out.depth, (64, 64)))
    losses.adversarial_bce(disc(d_in), losses.SOURCE_LABEL).backward()
    for name in ("enc4_1", "enc4_2", "enc4_3"):
        grad = getattr(net, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert net.backbone.conv1.weight.grad.abs().sum() > 0
    # detached inputs (discriminator step) leave the segmenter untouched
    net.zero_grad(set_to_none=True)
    for p in disc.parameters():
        p.requires_grad_(True)
    d_in = losses.depth_aware_map(losses.self_information(prob.detach()),
                                  upsample(out.depth, (64, 64)).detach())
    losses.adversarial_bce(disc(d_in), losses.TARGET_LABEL).backward()
    assert all(p.grad is None for p in net.parameters())
    assert disc[0].weight.grad is not None
