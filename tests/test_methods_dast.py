"""Depth-aware self-training (dast): the occlusion rule against DepthMix's code (re-stated), the step,
the ladder's variants, bit-identical resume."""

import pytest
import torch

from dada.methods import selftraining as st
from test_methods_dacs import _batches, _build, _train


def official_depthcomp(own_disp, other_disp, margin, flip, foreground=0.0):
    """lhoyer/improving_segmentation_with_selfsupervised_depth, ssda branch, train.py L753-768 (the
    random.random() > 0.5 draw given as ``flip``)."""
    local_depthcomp_margin = margin
    if flip:
        local_depthcomp_margin *= -1
    foreground_mask = torch.ge(own_disp, other_disp - local_depthcomp_margin).long()
    foreground_mask *= torch.ge(own_disp, foreground).long()
    return foreground_mask


def official_normalise(depths):  # ssda train.py L913-917
    depths = depths.clone()
    for j in range(depths.shape[0]):
        dmin, dmax = torch.min(depths[j]), torch.max(depths[j])
        depths[j] = torch.clamp(depths[j], dmin, dmax)
        depths[j] = (depths[j] - dmin) / (dmax - dmin)
    return depths


def test_depth_order_mask_is_depthmix_rule():
    g = torch.Generator().manual_seed(0)
    source, target = torch.rand(2, 1, 6, 7, generator=g) * 50, torch.rand(2, 1, 6, 7, generator=g) * 3
    ns, nt = st.normalise_depth(source), st.normalise_depth(target)
    assert torch.equal(ns, official_normalise(source)) and torch.equal(nt, official_normalise(target))
    for flip in (False, True):
        margin = -0.03 if flip else 0.03
        ours = st.depth_order_mask(ns, nt, margin)
        for i in range(2):
            assert torch.equal(ours[i].long(), official_depthcomp(ns[i], nt[i], 0.03, flip)[0])
    # nearer source pixels are pasted, farther ones are hidden behind the target
    near = st.depth_order_mask(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 0.03)
    far = st.depth_order_mask(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 0.03)
    assert near.all() and not far.any()


def test_dast_step_supervises_depth_and_orders_the_mix():
    from dada.methods.dast import DepthAwareSelfTraining

    model, method = _build(DepthAwareSelfTraining, _depth=True)
    assert type(method).needs_source_depth(method.cfg.method)
    method.keep_outputs = True
    loss = method.train_step(*_batches(0), 0)
    assert set(loss) == {"seg_src", "depth_src", "seg_mix"} and all(torch.isfinite(v) for v in loss.values())
    assert 0.0 <= method.log_scalars()["mix_removed_by_depth"] <= 1.0
    # the mask is ClassMix ∧ occlusion: recompute both from the streams' saved state
    _, again = _build(DepthAwareSelfTraining, _depth=True)
    source, target = _batches(0)
    teacher_seg, teacher_depth = again.teacher_predict(target["image"])
    state = again.streams.state_dict()
    classes = st.class_mix_masks(source["label"], again.streams["classes"])
    again.streams.load_state_dict(state)
    ordered = again.mix_masks(source, target, teacher_depth)
    assert torch.equal(ordered, ordered & classes) and ordered.sum() < classes.sum()


@pytest.mark.parametrize("depth_mix", ["class", "depth"])
def test_dast_ladder_variants_run(depth_mix):
    from dada.methods.dast import DepthAwareSelfTraining

    model, method = _build(DepthAwareSelfTraining, _depth=True, depth_mix=depth_mix, lambda_depth=0.01)
    loss = method.train_step(*_batches(0), 0)
    assert torch.isfinite(loss["depth_src"])


def test_dast_errors_name_the_key():
    from dada import DadaError
    from dada.methods.dast import DepthAwareSelfTraining

    with pytest.raises(DadaError, match="depth_mix"):
        _build(DepthAwareSelfTraining, _depth=True, depth_mix="cut")
    with pytest.raises(DadaError, match="model.depth_head"):
        _build(DepthAwareSelfTraining, _depth=False)


@pytest.mark.parametrize("options", [{}, {"depth_weighting": True, "lambda_depth_mix": 0.001}],
                         ids=["dast", "dast_corda"])
def test_dast_resumes_bit_identically(tmp_path, options):
    from dada.engine.checkpoint import rng_state, set_rng_state
    from dada.methods.dast import DepthAwareSelfTraining

    model, method = _build(DepthAwareSelfTraining, _depth=True, **options)
    straight = _train(model, method, 0, 4)
    reference = method.state_dict()
    model, method = _build(DepthAwareSelfTraining, _depth=True, **options)
    _train(model, method, 0, 2)
    torch.save({"model": model.state_dict(), "method": method.state_dict(), "rng": rng_state()},
               tmp_path / "c.pt")
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    model, method = _build(DepthAwareSelfTraining, saved, _depth=True, **options)
    set_rng_state(saved["rng"])
    second = _train(model, method, 2, 4)
    assert ([float(v) for x in second for v in x.values()]
            == [float(v) for x in straight[2:] for v in x.values()])
    resumed = method.state_dict()
    assert all(torch.equal(v, resumed["extra_modules"][k]) for k, v in reference["extra_modules"].items())
    assert torch.equal(reference["self_training"]["streams"]["margin"],
                       resumed["self_training"]["streams"]["margin"])


def test_dast_adversarial_term_is_dadas_and_resumes(tmp_path):
    """dast_adv: the fooling term on the student's un-mixed target output and the discriminators' step,
    as DADA's, with the discriminators and their Adam in the checkpoint (bit-identical resume)."""
    from dada import losses
    from dada.engine.checkpoint import rng_state, set_rng_state
    from dada.methods.dast import DepthAwareSelfTraining

    def batches(i):
        return _batches(i, size=(64, 64))

    def _build(cls, state=None, **settings):  # the tiny 5-class model, and a config that says 5 classes
        from dada.models import build_segmenter
        from test_methods_dacs import _method_cfg

        torch.manual_seed(0)
        model = build_segmenter(arch="tiny", num_classes=5, depth_head=True, feature_fusion=True).train()
        cfg = _method_cfg(cls, True, **{k: v for k, v in settings.items() if k != "_depth"})
        cfg.model.num_classes = 5
        method = cls(cfg, model, torch.device("cpu"))
        if state is not None:
            model.load_state_dict(state["model"])
            method.load_state_dict(state["method"])
        return model, method

    model, method = _build(DepthAwareSelfTraining, _depth=True, adversarial=["depth_aware"], ndf=8)
    assert set(method.discriminators) == {"depth_aware"} and "discriminator" in method.optimizers
    before = [p.detach().clone() for p in method.discriminators.parameters()]
    source, target = batches(0)
    # the fooling term as DADA eq. (7) on the student's target output, with the weights before the step
    with torch.no_grad():
        seg, depth = method.model(target["image"])
        seg = torch.nn.functional.interpolate(seg, size=(64, 64), mode="bilinear", align_corners=True)
        depth = torch.nn.functional.interpolate(depth, size=(64, 64), mode="bilinear", align_corners=True)
        expected = losses.adversarial_bce(method.discriminators["depth_aware"](
            losses.depth_aware_map(losses.self_information(torch.softmax(seg, 1)), depth)),
            method.cfg.train.source_label)
    loss = method.train_step(source, target, 0)
    assert set(loss) == {"seg_src", "depth_src", "seg_mix", "adv_trg_depth_aware", "d_depth_aware_src",
                         "d_depth_aware_trg"}
    assert torch.allclose(loss["adv_trg_depth_aware"], expected, atol=1e-5)
    after = list(method.discriminators.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # D learned (eq. 6)

    def train(model, method, start, stop):
        return [method.train_step(*batches(i), i) for i in range(start, stop)]

    model, method = _build(DepthAwareSelfTraining, _depth=True, adversarial=["depth_aware"], ndf=8)
    straight = train(model, method, 0, 3)
    model, method = _build(DepthAwareSelfTraining, _depth=True, adversarial=["depth_aware"], ndf=8)
    train(model, method, 0, 1)
    torch.save({"model": model.state_dict(), "method": method.state_dict(), "rng": rng_state()},
               tmp_path / "c.pt")
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    model, method = _build(DepthAwareSelfTraining, saved, _depth=True, adversarial=["depth_aware"], ndf=8)
    set_rng_state(saved["rng"])
    second = train(model, method, 1, 3)
    assert ([float(v) for x in second for v in x.values()]
            == [float(v) for x in straight[1:] for v in x.values()])


def test_dast_adversarial_names_a_bad_input():
    from dada import DadaError
    from dada.config import load_config

    with pytest.raises(DadaError, match="method.adversarial"):
        load_config("benchmark_dast_adv", ["method.adversarial=[depth_aware,entropy]"])
    cfg = load_config("benchmark_v2_7_dast_adv")
    assert list(cfg.method.adversarial) == ["depth_aware"] and cfg.method.ndf == 16  # the setting's width


def official_corda_weight(dpred, depth_u):
    """qinenergy/corda trainUDA_synthia.py (the weight block after the pseudo-label weight), re-stated with
    ``dpred`` for |dpred_src − dpred_tar|'s first term and 1.0 marking an invalid depth, as CorDA's."""
    diff = torch.abs(dpred - depth_u)
    depth_score = torch.nn.functional.relu(1. - diff / depth_u).detach() + 1e-3
    return torch.clip(depth_score + (depth_u == 1.).float(), 0., 1.).detach()


def test_depth_discrepancy_weight_is_cordas():
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(2, 1, 5, 6, generator=g) * 0.8 + 0.05
    pred = reference * (1 + torch.randn(2, 1, 5, 6, generator=g) * 0.7)
    ours = st.depth_discrepancy_weight(pred, reference)
    assert torch.allclose(ours, official_corda_weight(pred, reference), atol=1e-7)
    # exact depth: weight 1; off by the depth itself or more: the floor; invalid reference: 1
    one = torch.ones(1, 1, 1, 3)
    assert torch.allclose(st.depth_discrepancy_weight(one * 2, one * 2), one)
    assert torch.allclose(st.depth_discrepancy_weight(one * 5, one * 2), one * 1e-3)
    invalid = torch.tensor([0.0, float("inf"), -1.0]).view(1, 1, 1, 3)
    assert torch.equal(st.depth_discrepancy_weight(one, invalid), one)


def test_dast_corda_weighting_and_mixed_depth_loss():
    from dada import losses
    from dada.methods.dast import DepthAwareSelfTraining

    model, method = _build(DepthAwareSelfTraining, _depth=True, depth_weighting=True, lambda_depth_mix=0.001)
    source, target = _batches(0)
    # the step's mixed image and its weights, recomputed from the same state before the step
    _, again = _build(DepthAwareSelfTraining, _depth=True, depth_weighting=True, lambda_depth_mix=0.001)
    mixed = again.mix(source, target)
    expected_depth = torch.where(mixed["mask"][:, None], source["depth"], mixed["teacher_depth"])
    assert torch.equal(mixed["depth"], expected_depth)
    from dada.methods.base import forward_upsampled

    _, depth_mix = forward_upsampled(again.model, mixed["image"])
    w = official_corda_weight(depth_mix, expected_depth)
    expected_weight = mixed["weight"] * w[:, 0] / w.mean()
    assert torch.allclose(again.mix_weight(mixed, depth_mix), expected_weight, atol=1e-6)
    assert not torch.allclose(expected_weight, mixed["weight"])  # the weighting changes something

    loss = method.train_step(source, target, 0)
    assert set(loss) == {"seg_src", "depth_src", "seg_mix", "depth_mix"}
    assert torch.isclose(loss["depth_mix"], losses.berhu(depth_mix, expected_depth).detach(), rtol=1e-5)
    assert 0.0 < method.log_scalars()["mix_depth_weight"] <= 1.0


def test_dast_corda_keys_are_checked():
    from dada import DadaError
    from dada.config import load_config

    with pytest.raises(DadaError, match="lambda_depth_mix"):
        load_config("benchmark_v2_7_dast_corda", ["method.lambda_depth_mix=-1"])
    cfg = load_config("benchmark_v2_7_dast_corda")
    assert cfg.method.depth_weighting and cfg.method.lambda_depth_mix == 0.001
