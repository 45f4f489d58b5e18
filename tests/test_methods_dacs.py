"""DACS piece by piece against the official code (vikolss/DACS cc6a87f, re-stated verbatim below with
only ``.cuda()`` removed) and kornia 0.5.8 (tests/fixtures/kornia058.json): the same tensors in, the same
tensors out. Then the method end to end: a step, the teacher in checkpoints, bit-identical resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dada.methods import selftraining as st


def _fixture() -> dict:
    raw = json.loads((Path(__file__).parent / "fixtures" / "kornia058.json").read_text())
    image, blur_image = (torch.tensor(raw[k]).view(raw["shapes"][k]) for k in ("image", "blur_image"))
    for case in raw["jitter"]:
        case["output"] = torch.tensor(case["output"]).view(image.shape)
    for case in raw["blur"]:
        case["output"] = torch.tensor(case["output"]).view(blur_image.shape)
    return {**raw, "image": image, "blur_image": blur_image}


FIXTURE = _fixture()


# ----------------------------------------------------------- the official code (DACS), verbatim
def official_update_ema_variables(ema_model, model, alpha_teacher, iteration):  # trainUDA.py L111-122
    alpha_teacher = min(1 - 1 / (iteration + 1), alpha_teacher)
    for ema_param, param in zip(ema_model.parameters(), model.parameters(), strict=True):
        ema_param.data[:] = alpha_teacher * ema_param[:].data[:] + (1 - alpha_teacher) * param[:].data[:]
    return ema_model


def official_generate_class_mask(pred, classes):  # utils/transformmasks.py
    pred, classes = torch.broadcast_tensors(pred.unsqueeze(0), classes.unsqueeze(1).unsqueeze(2))
    return pred.eq(classes).sum(0)


def official_one_mix(mask, data=None, target=None):  # utils/transformsgpu.py oneMix
    if data is not None:
        stacked_mask0, _ = torch.broadcast_tensors(mask[0], data[0])
        data = (stacked_mask0 * data[0] + (1 - stacked_mask0) * data[1]).unsqueeze(0)
    if target is not None:
        stacked_mask0, _ = torch.broadcast_tensors(mask[0], target[0])
        target = (stacked_mask0 * target[0] + (1 - stacked_mask0) * target[1]).unsqueeze(0)
    return data, target


def official_pixel_weighted_ce(output, target, weight, ignore_index=255):  # utils/loss.py
    loss = nn.CrossEntropyLoss(ignore_index=ignore_index, reduction="none")(output, target)
    return torch.mean(loss * weight)


# -------------------------------------------------------------------------------------- the pieces
def test_ema_update_matches_the_official_update_bit_for_bit():
    torch.manual_seed(0)
    student, teacher = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
    reference = st.make_teacher(teacher)
    for iteration in (0, 1, 5, 200):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p))
        official_update_ema_variables(reference, student, 0.99, iteration)
        a = st.ema_update_(teacher, student, iteration, 0.99)
        assert a == min(1 - 1 / (iteration + 1), 0.99)
        assert all(torch.equal(x, y)
                   for x, y in zip(teacher.parameters(), reference.parameters(), strict=True))
    assert st.ema_alpha(0, 0.99) == 0.0  # after step 0 the teacher IS the student
    assert st.ema_alpha(10_000, 0.999) == 0.999


def test_ema_leaves_batchnorm_buffers_alone_and_teacher_is_frozen():
    student = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout2d(0.5))
    teacher = st.make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters())
    student[1].running_mean.fill_(3.0)
    st.ema_update_(teacher, student, 5, 0.99)
    assert torch.equal(teacher[1].running_mean, torch.zeros(4))
    st.teacher_mode_(teacher)
    assert teacher.training and teacher[1].training and not teacher[2].training


def test_pseudo_label_weight_is_one_scalar_for_the_batch_as_the_code_computes_it():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 6, 7) * 4
    labels, max_probs, weight = st.pseudo_labels(logits, 0.968)
    # trainUDA.py L421-422, L467
    pseudo_label = torch.softmax(logits.detach(), dim=1)
    official_probs, official_targets = torch.max(pseudo_label, dim=1)
    official = torch.sum(official_probs.ge(0.968).long() == 1).item() / np.size(official_targets.numpy())
    assert torch.equal(labels, official_targets) and torch.equal(max_probs, official_probs)
    assert weight == official and 0 < weight < 1
    w = st.pseudo_weight_map(weight, tuple(labels.shape), labels.device, ignore_top=2, ignore_bottom=1)
    assert (torch.equal(w[:, 2:-1], torch.full((2, 3, 7), weight)) and w[:, :2].eq(0).all()
            and w[:, -1].eq(0).all())


def test_class_mix_matches_the_official_mask_mix_and_weights():
    generator = torch.Generator().manual_seed(0)
    label = torch.tensor([[0, 0, 3, 3], [255, 7, 7, 3], [0, 9, 9, 255]])
    classes = torch.unique(label)  # 0, 3, 7, 9, 255: DACS keeps 255 among the candidates
    chosen = st.choose_classes(classes, torch.Generator().manual_seed(0))
    assert (len(chosen) == 3 and len(set(chosen.tolist())) == 3
            and set(chosen.tolist()) <= set(classes.tolist()))
    mask = st.class_mix_masks(label[None], generator)[0]
    assert torch.equal(mask, st.class_mask(label, chosen))
    assert torch.equal(mask.long(), official_generate_class_mask(label, chosen))
    # image, label, weight mixed as trainUDA.py L454-479 (oneMix with the long mask)
    source_img, target_img = torch.randn(3, 3, 4), torch.randn(3, 3, 4)
    pl, weight = torch.randint(0, 16, (3, 4)), 0.4 * torch.ones(3, 4)
    official_mask = official_generate_class_mask(label, chosen).unsqueeze(0)
    img, _ = official_one_mix(official_mask, data=torch.stack((source_img, target_img)))
    _, lbl = official_one_mix(official_mask, target=torch.stack((label, pl)))
    _, wgt = official_one_mix(official_mask, target=torch.stack((torch.ones(3, 4), weight)))
    assert torch.equal(st.one_mix(mask, source_img, target_img), img[0])
    assert torch.equal(st.one_mix(mask, label, pl), lbl[0].long())
    assert torch.equal(st.one_mix(mask, torch.ones(3, 4), weight), wgt[0])
    # without 255 and from the whole batch (DAFormer get_class_masks)
    masks = st.class_mix_masks(torch.stack([label, torch.full_like(label, 5)]), generator, batch_classes=True,
                               include_ignore=False)
    assert masks.shape == (2, 3, 4) and not masks[0][label == 255].any()


def test_pixel_weighted_ce_is_the_official_loss():
    from dada.methods.dacs import weighted_ce

    torch.manual_seed(2)
    logits, target = torch.randn(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6))
    target[0, 0, :3] = 255
    weight = torch.rand(2, 5, 6)
    assert torch.equal(weighted_ce(logits, target, weight),
                       official_pixel_weighted_ce(logits, target, weight))


def test_color_jitter_matches_kornia_058():
    for case in FIXTURE["jitter"]:
        p = case["params"]
        params = st.JitterParams(p["brightness_factor"][0], p["contrast_factor"][0],
                                 p["saturation_factor"][0],
                                 p["hue_factor"][0], tuple(p["order"]))
        torch.testing.assert_close(st.color_jitter(FIXTURE["image"], params), case["output"],
                                   atol=2e-6, rtol=0)


def test_color_jitter_draws_in_kornia_ranges():
    generator = torch.Generator().manual_seed(3)
    draws = [st.sample_jitter(0.25, generator) for _ in range(300)]
    for name, low, high in (("brightness", 0.75, 1.25), ("contrast", 0.75, 1.25), ("saturation", 0.75, 1.25),
                            ("hue", -0.25, 0.25)):
        values = [getattr(d, name) for d in draws]
        assert low <= min(values) < low + 0.02 and high - 0.02 < max(values) <= high
    assert {d.order for d in draws} == set(__import__("itertools").permutations(range(4)))


def test_gaussian_blur_matches_kornia_058_and_the_dacs_kernel_size():
    assert [st.blur_kernel_size(n) for n in (512, 1024, 30, 52, 128, 256)] == [51, 103, 3, 5, 13, 25]
    for case in FIXTURE["blur"]:
        assert (st.blur_kernel_size(30), st.blur_kernel_size(52)) == tuple(case["kernel"])
        torch.testing.assert_close(st.gaussian_blur(FIXTURE["blur_image"], case["sigma"]), case["output"],
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["caffe", "imagenet", "lite"])
def test_unit_range_round_trip(mode):
    from dada.data.transforms import preprocess_image

    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    image = preprocess_image(rgb, mode)
    unit = st.to_unit(image, mode)
    assert unit.min() >= 0 and unit.max() <= 1
    torch.testing.assert_close(st.from_unit(unit, mode), image, atol=1e-4, rtol=0)
    if mode == "caffe":  # DACS's colorJitter: (data + IMG_MEAN) / 255, BGR kept
        assert torch.allclose(unit[0] * 255, torch.from_numpy(rgb[..., 2]).float(), atol=1e-3)


def test_streams_round_trip_their_state():
    streams = st.Streams(4)
    state = streams.state_dict()
    first = [streams.uniform("jitter"), streams.uniform("blur", 0.15, 1.15)]
    streams.load_state_dict(state)
    assert [streams.uniform("jitter"), streams.uniform("blur", 0.15, 1.15)] == first
    assert st.Streams(4).uniform("classes") != st.Streams(5).uniform("classes")


# ------------------------------------------------------------------------------ the method, one step
def _method_cfg(method_cls, depth=False, **settings):
    from omegaconf import OmegaConf

    from dada.config import load_config

    base = OmegaConf.to_container(load_config("benchmark_source_only"), resolve=True)
    cfg = OmegaConf.create(
        {**base, "method": OmegaConf.to_container(OmegaConf.structured(method_cls.Settings))})
    cfg.method.update(settings)
    cfg.train.max_iters = 10
    cfg.data.preprocess = "caffe"
    cfg.model.depth_head = cfg.model.feature_fusion = depth
    return cfg


def _batches(seed: int, n: int = 2, size=(16, 24), classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, classes, (n, *size), generator=g)
    label[:, :2] = 255
    source = {"image": torch.randn(n, 3, *size, generator=g) * 40, "label": label,
              "depth": torch.rand(n, 1, *size, generator=g) + 0.1}
    return source, {"image": torch.randn(n, 3, *size, generator=g) * 40}


def _build(method_cls, state=None, **settings):
    from dada.models import build_segmenter

    torch.manual_seed(0)
    depth = settings.pop("_depth", False)
    model = build_segmenter(arch="tiny", num_classes=5, depth_head=depth, feature_fusion=depth).train()
    method = method_cls(_method_cfg(method_cls, depth, **settings), model, torch.device("cpu"))
    if state is not None:
        model.load_state_dict(state["model"])
        method.load_state_dict(state["method"])
    return model, method


def _train(model, method, start, stop):
    losses = []
    for i in range(start, stop):
        losses.append(method.train_step(*_batches(i), i))
    return losses


def test_dacs_step_teacher_follows_the_ema_and_the_loss_is_source_plus_mix():
    from dada.methods.dacs import DACS

    model, method = _build(DACS)
    loss = method.train_step(*_batches(0), 0)
    assert set(loss) == {"seg_src", "seg_mix"} and all(torch.isfinite(v) for v in loss.values())
    teacher = method.extra_modules["teacher"]
    # a_0 = 0: after the first step the teacher is the student
    assert all(torch.equal(t, s) for t, s in zip(teacher.parameters(), model.parameters(), strict=True))
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p is not t for group in method.optimizers["segmenter"].param_groups for p in group["params"]
               for t in teacher.parameters())
    before = [t.clone() for t in teacher.parameters()]
    method.train_step(*_batches(1), 1)  # a_1 = 0.5
    for b, t, s in zip(before, teacher.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * s)
    assert 0.0 <= method.log_scalars()["pseudo_weight"] <= 1.0
    assert method.evaluation_network() is model


def test_dacs_images_scalars_and_teacher_evaluation():
    from dada.methods.dacs import DACS

    model, method = _build(DACS, eval_model="teacher")
    method.keep_outputs = True
    method.train_step(*_batches(0), 0)
    images = method.log_images()
    assert set(images) == {"mix/image", "mix/label", "mix/mask", "mix/pseudo_weight"}
    mask, weight = images["mix/mask"].bool(), images["mix/pseudo_weight"]
    assert weight[mask].eq(1).all() and weight[~mask].eq(method.pl_weight).all()
    assert method.evaluation_network() is method.extra_modules["teacher"]
    with pytest.raises(Exception, match="eval_model"):
        _build(DACS, eval_model="both")


def test_dacs_mixing_needs_matching_batches():
    from dada import DadaError
    from dada.methods.dacs import DACS

    _, method = _build(DACS)
    source, target = _batches(0)
    with pytest.raises(DadaError, match="data.source.size"):
        method.train_step(source, {"image": target["image"][:, :, :8]}, 0)


@pytest.mark.parametrize("settings", [{}, {"ema_after_step": False, "batch_classes": True,
                                           "pl_ignore_top": 2}])
def test_dacs_resumes_bit_identically_from_its_state(settings, tmp_path):
    """N iterations straight vs N/2, a checkpoint through torch.save, a fresh process's objects, N/2."""
    from dada.engine.checkpoint import rng_state, set_rng_state
    from dada.methods.dacs import DACS

    model, method = _build(DACS, **settings)
    straight = _train(model, method, 0, 6)
    reference = {"model": model.state_dict(), "method": method.state_dict()}

    model, method = _build(DACS, **settings)
    first = _train(model, method, 0, 3)
    torch.save({"model": model.state_dict(), "method": method.state_dict(), "rng": rng_state()},
               tmp_path / "c.pt")
    torch.manual_seed(123)  # the resumed process starts elsewhere
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    model, method = _build(DACS, saved, **settings)
    set_rng_state(saved["rng"])
    second = _train(model, method, 3, 6)
    assert [{k: float(v) for k, v in x.items()} for x in first + second] == \
           [{k: float(v) for k, v in x.items()} for x in straight]
    resumed = method.state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reference["model"].items())
    teacher = reference["method"]["extra_modules"]
    assert any(k.startswith("teacher.") for k in teacher)
    assert all(torch.equal(v, resumed["extra_modules"][k]) for k, v in teacher.items())
    assert resumed["self_training"]["ema_steps"] == 6
    for name, state in reference["method"]["self_training"]["streams"].items():
        assert torch.equal(state, resumed["self_training"]["streams"][name]), name


def _daformer_downscale_label_ratio(gt, scale_factor, min_ratio, n_classes, ignore_index=255):
    """DAFormer mmseg/utils/utils.py ``downscale_label_ratio``, re-stated (N×1×H×W in)."""
    import torch.nn.functional as F

    out = gt.clone()
    out[out == ignore_index] = n_classes
    out = F.one_hot(out.squeeze(1), num_classes=n_classes + 1).permute(0, 3, 1, 2)
    out = F.avg_pool2d(out.float(), kernel_size=scale_factor)
    gt_ratio, out = torch.max(out, dim=1, keepdim=True)
    out[out == n_classes] = ignore_index
    out[gt_ratio < min_ratio] = ignore_index
    return out


def test_downscale_label_ratio_matches_daformer():
    g = torch.Generator().manual_seed(3)
    label = torch.randint(0, 4, (2, 1, 16, 24), generator=g)
    label[:, :, :4] = 255
    label[0, 0, 8:, :8] = 2  # a pure block: its cells keep class 2
    ours = st.downscale_label_ratio(label, 4, 0.75, 16)
    assert torch.equal(ours, _daformer_downscale_label_ratio(label, 4, 0.75, 16)[:, 0])
    assert (ours[0, 2:, :2] == 2).all() and (ours[:, 0] == 255).all()


def test_feature_distance_and_warmup_are_daformer_keys_off_by_default():
    from dada import DadaError
    from dada.methods.dacs import DACS

    model, method = _build(DACS)
    assert method.imnet is None and method.cfg.method.fd_lambda == 0 and method.cfg.method.warmup_iters == 0
    with pytest.raises(DadaError, match="model.pretrained"):  # FD needs ImageNet weights to stay near
        _build(DACS, fd_lambda=0.005)

    torch.manual_seed(0)
    from dada.models import build_segmenter

    net = build_segmenter(arch="tiny", num_classes=16, depth_head=False, feature_fusion=False).train()
    cfg = _method_cfg(DACS, fd_lambda=0.005, warmup_iters=4)
    cfg.model.num_classes, cfg.model.pretrained = 16, "imagenet-weights.pth"  # FD only checks it is set
    fd = DACS(cfg, net, torch.device("cpu"))
    assert fd.fd_ignored == ["truck", "train"] and fd.fd_ids == [6, 7, 10, 11, 12, 13, 14, 15]
    before = {k: v.clone() for k, v in fd.imnet.state_dict().items()}
    source, target = _batches(0, classes=16)
    source["label"][:, 8:, :] = 12  # car cells: the distance is taken there
    loss = fd.train_step(source, target, 0)
    assert "feat_dist" in loss and float(loss["feat_dist"]) == 0.0  # step 0: the student is the copy
    loss = fd.train_step(*_batches(1, classes=16), 1)
    assert all(torch.equal(before[k], v) for k, v in fd.imnet.state_dict().items())  # frozen
    # warm-up: iteration 1 of 4 runs at poly · (1 − (1 − 1/4)(1 − 1e-6)) of the rate
    poly = 2.5e-4 * (1 - 1 / 10) ** 0.9
    assert fd.optimizers["segmenter"].param_groups[0]["lr"] == pytest.approx(poly * (1 - 0.75 * (1 - 1e-6)))


def test_rare_class_sampling_statistics_distribution_and_resumable_order(tmp_path):
    from dada.methods.dacs import DACS, rare_class_statistics, rcs_distribution

    class Labels:
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.labels = [torch.zeros(8, 8, dtype=torch.long) for _ in range(6)]
            self.labels[2][:4] = 3  # class 3: rare, only in images 2 and 5
            self.labels[5][:2] = 3
            self.labels[4][0, 0] = 255
            self.noise = torch.rand(6, generator=g)

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"label": self.labels[i]}

    stats = rare_class_statistics(Labels(), 5, tmp_path / "rcs_stats.json")
    assert stats["counts"][2] == [32, 0, 0, 32, 0] and stats["counts"][4][0] == 63  # 255 not counted
    class Unreadable(Labels):  # the cache is reused: no label is read again
        def __getitem__(self, i):
            raise AssertionError("read again")

    assert rare_class_statistics(Unreadable(), 5, tmp_path / "rcs_stats.json")["counts"] == stats["counts"]
    probabilities, candidates = rcs_distribution(stats, 0.01, 10)
    assert candidates[3] == [2, 5] and candidates[1] == []  # > 10 pixels of class 3: images 2 and 5
    assert probabilities[1] == 0 and probabilities[3] > 0.99  # the rare class dominates at T = 0.01
    # DAFormer's formula over the classes present (0 and 3)
    counts = torch.tensor(stats["counts"], dtype=torch.float64).sum(0)
    freq = counts[[0, 3]] / counts[[0, 3]].sum()
    expected = torch.softmax((1 - freq) / 0.01, 0)
    assert probabilities[[0, 3]] == pytest.approx(expected.numpy())

    model, method = _build(DACS, rcs_temperature=0.01, rcs_min_pixels=10)
    with pytest.raises(Exception, match="prepare"):
        method.source_order()
    method.prepare({"source": Labels()}, tmp_path)
    order = method.source_order()
    first, again = order(0), order(0)  # a function of the epoch alone: a resumed run draws the same
    assert (first == again).all() and len(first) == 6 and set(first.tolist()) <= {0, 1, 2, 3, 4, 5}
    assert (order(1) != first).any() and sum(i in (2, 5) for i in first.tolist()) >= 5
