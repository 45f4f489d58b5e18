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


def test_dast_resumes_bit_identically(tmp_path):
    from dada.engine.checkpoint import rng_state, set_rng_state
    from dada.methods.dast import DepthAwareSelfTraining

    model, method = _build(DepthAwareSelfTraining, _depth=True)
    straight = _train(model, method, 0, 4)
    reference = method.state_dict()
    model, method = _build(DepthAwareSelfTraining, _depth=True)
    _train(model, method, 0, 2)
    torch.save({"model": model.state_dict(), "method": method.state_dict(), "rng": rng_state()},
               tmp_path / "c.pt")
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    model, method = _build(DepthAwareSelfTraining, saved, _depth=True)
    set_rng_state(saved["rng"])
    second = _train(model, method, 2, 4)
    assert ([float(v) for x in second for v in x.values()]
            == [float(v) for x in straight[2:] for v in x.values()])
    resumed = method.state_dict()
    assert all(torch.equal(v, resumed["extra_modules"][k]) for k, v in reference["extra_modules"].items())
    assert torch.equal(reference["self_training"]["streams"]["margin"],
                       resumed["self_training"]["streams"]["margin"])
