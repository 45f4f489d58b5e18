"""CLAN: its maths on fixed tensors, and two training iterations checked against a hand-written
statement of the official step (two explicit classifiers, official losses, one SGD step)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dada.config import load_config
from dada.methods import METHODS
from dada.methods.clan import (
    CLAN,
    adaptive_bce,
    clan_schedule,
    focal_cross_entropy,
    prediction_discrepancy,
    weight_discrepancy,
)
from dada.models import build_segmenter


def test_focal_cross_entropy_values():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[-1.0, 3.0]]]])  # 1×3×1×2
    labels = torch.tensor([[[0, 255]]])
    p0 = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    expected = -(1 - p0) ** 2 * math.log(p0)  # the ignored pixel does not count
    assert focal_cross_entropy(logits, labels, 2.0).item() == pytest.approx(expected, rel=1e-6)
    assert focal_cross_entropy(logits, labels, 0.0).item() == pytest.approx(-math.log(p0), rel=1e-6)
    assert focal_cross_entropy(logits, torch.full((1, 1, 2), 255), 2.0).item() == 0.0


def test_discrepancies_values():
    one_hot = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    other = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)
    assert prediction_discrepancy(one_hot, other).item() == pytest.approx(1.0)
    assert prediction_discrepancy(one_hot, one_hot).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)
    assert prediction_discrepancy(one_hot, half).item() == pytest.approx(1 - 1 / math.sqrt(2))
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0])
    assert weight_discrepancy([a, b], [a, b]).item() == pytest.approx(2.0)
    assert weight_discrepancy([a, b], [-a, -b]).item() == pytest.approx(0.0, abs=1e-6)
    value = weight_discrepancy([torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 1.0])]).item()
    assert value == pytest.approx(1.0)


def test_adaptive_bce_and_schedule_values():
    logits = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    weights = torch.tensor([0.5, 0.0]).view(1, 1, 1, 2)
    expected = ((0.4 + 10 * 0.5) * math.log(2) + 0.4 * math.log(1 + math.exp(2))) / 2
    assert adaptive_bce(logits, 0, weights, 0.4, 10.0).item() == pytest.approx(expected, rel=1e-6)
    assert clan_schedule(0, 100, 5, 0.9) == (0.0, 1.0)
    assert clan_schedule(2, 100, 5, 0.9) == pytest.approx((0.4, 0.98))
    assert clan_schedule(10, 100, 5, 0.9) == pytest.approx((0.9 ** 0.9, 0.9))


def _aspp(features, params, rates):
    """An ASPP classifier from explicit (weight, bias) pairs: the sum of the dilated convs."""
    return sum(F.conv2d(features, w, b, padding=r, dilation=r)
               for (w, b), r in zip(params, rates, strict=True))


def _official_objective(model, discriminator, w1, w2, rates, source, target, iteration, cfg):
    """The official CLAN_train.py generator-side objective with two explicit classifiers, written out
    from the paper and the code (no code shared with dada.methods.clan)."""
    method, train = cfg.method, cfg.train
    preheat = int(train.max_iters / 20)
    damping = 1 - iteration / train.max_iters
    size = source["image"].shape[-2:]

    def up(x):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    def focal(logits, labels):
        logp = F.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
        return (-(1 - logp.exp()) ** 2 * logp).mean()

    f_src, f_trg = model.backbone(source["image"]), model.backbone(target["image"])
    p1s, p2s = up(_aspp(f_src, w1, rates)), up(_aspp(f_src, w2, rates))
    p1t, p2t = up(_aspp(f_trg, w1, rates)), up(_aspp(f_trg, w2, rates))
    seg1, seg2 = focal(p1s, source["label"]), focal(p2s, source["label"])
    weight_map = 1 - F.cosine_similarity(p1t.softmax(1), p2t.softmax(1), dim=1).unsqueeze(1)
    d_out = up(discriminator((p1t + p2t).softmax(1)))
    bce = F.binary_cross_entropy_with_logits(d_out, torch.zeros_like(d_out), reduction="none")
    adv = ((0.4 + 10.0 * weight_map) * bce).mean() if iteration > preheat else bce.mean()
    flat1 = torch.cat([t.reshape(-1) for pair in w1 for t in pair])
    flat2 = torch.cat([t.reshape(-1) for pair in w2 for t in pair])
    weight = F.cosine_similarity(flat1, flat2, dim=0) + 1
    objective = seg1 + seg2 + adv * 0.001 * damping + weight * 0.01 * damping * 2
    assert method.clan_lambda_local == 10.0 and method.clan_epsilon == 0.4  # the constants used above
    return objective, {"seg_src_1": seg1, "seg_src_2": seg2, "adv_trg": adv, "weight_discrepancy": weight}


def test_clan_two_iterations_match_the_official_step():
    torch.manual_seed(0)
    cfg = load_config("benchmark_clan", ["train.max_iters=40", "model.num_classes=5"])
    model = build_segmenter(arch="tiny", num_classes=5, depth_head=False, feature_fusion=False)
    method = METHODS["clan"](cfg, model, torch.device("cpu"))
    assert isinstance(method, CLAN) and method.needs_target
    rates = [conv.dilation[0] for conv in model.layer6.conv2d_list]
    generator = torch.Generator().manual_seed(1)
    for iteration in (2, 3):  # pre-heat = 40/20 = 2: plain BCE at 2, the adaptive loss at 3
        source = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40,
                  "label": torch.randint(0, 5, (2, 32, 64), generator=generator)}
        target = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40}
        # the explicit classifiers: W2 as the method holds it, W1 = S − W2
        second = method.extra_modules["classifier2"].conv2d_list
        w2 = [(c.weight.detach().clone().requires_grad_(), c.bias.detach().clone().requires_grad_())
              for c in second]
        w1 = [((s.weight - c.weight).detach().clone().requires_grad_(),
               (s.bias - c.bias).detach().clone().requires_grad_())
              for s, c in zip(model.layer6.conv2d_list, second, strict=True)]
        reference_model = copy.deepcopy(model)
        reference_d = copy.deepcopy(method.discriminators["softmax"])
        objective, expected = _official_objective(reference_model, reference_d, w1, w2, rates, source, target,
                                                  iteration, cfg)
        objective.backward()
        losses = method.train_step(source, target, iteration)
        for name, value in expected.items():
            assert losses[name].item() == pytest.approx(value.item(), rel=1e-5), name
        # one official SGD step of each classifier (first step: momentum buffer = gradient + decay; later:
        # buffer = 0.9·buffer + ...): compare W1 = S − W2 and W2 after the step
        factor, _ = clan_schedule(iteration, 40, 2, 0.9)
        lr = 10 * cfg.train.lr * factor
        if iteration == 2:
            buffers = {}
        for index, (sum_conv, conv) in enumerate(zip(model.layer6.conv2d_list, second, strict=True)):
            pairs = zip(w1[index], w2[index], strict=True)
            for kind, (p1, p2) in zip(("weight", "bias"), pairs, strict=True):
                for tag, ref in (("w1", p1), ("w2", p2)):
                    step = ref.grad + cfg.train.weight_decay * ref.detach()
                    key = (index, kind, tag)
                    buffers[key] = step if key not in buffers else 0.9 * buffers[key] + step
                new1 = p1.detach() - lr * buffers[(index, kind, "w1")]
                new2 = p2.detach() - lr * buffers[(index, kind, "w2")]
                ours2 = getattr(conv, kind).detach()
                ours1 = getattr(sum_conv, kind).detach() - ours2
                assert torch.allclose(ours2, new2, atol=1e-7, rtol=1e-4), (index, kind)
                assert torch.allclose(ours1, new1, atol=1e-7, rtol=1e-4), (index, kind)


def test_clan_segmenter_outputs_the_sum_of_both_classifiers():
    torch.manual_seed(0)
    cfg = load_config("benchmark_clan", ["model.num_classes=4"])
    model = build_segmenter(arch="tiny", num_classes=4, depth_head=False, feature_fusion=False)
    first = copy.deepcopy(model.layer6)
    method = CLAN(cfg, model, torch.device("cpu"))
    image = torch.randn(1, 3, 32, 32)
    features = model.backbone(image)
    expected = first(features) + method.extra_modules["classifier2"](features)
    assert torch.allclose(model(image).seg, expected, atol=1e-5)
    # the state round-trips (second classifier, discriminator, both optimizers)
    state = method.state_dict()
    other = CLAN(cfg, copy.deepcopy(model), torch.device("cpu"))
    other.load_state_dict(state)
    assert torch.equal(other.extra_modules["classifier2"].conv2d_list[0].weight,
                       method.extra_modules["classifier2"].conv2d_list[0].weight)
