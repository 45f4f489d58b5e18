"""AdaptPatch: patch histograms, K-means and the mode assignment on fixed tensors; the cached mode
discovery; two training iterations checked against a hand-written statement of the paper's losses."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from dada.config import load_config
from dada.errors import DadaError
from dada.methods import METHODS
from dada.methods.adaptpatch import MODES_FILE, AdaptPatch, assign_modes, kmeans, patch_histograms
from dada.models import build_segmenter


def test_patch_histograms_values():
    labels = torch.tensor([[[0, 0, 1, 255],
                            [0, 0, 1, 255],
                            [2, 2, 1, 1],
                            [2, 0, 1, 1]]])
    histograms, has_valid = patch_histograms(labels, num_classes=3, patch_size=4, grid=2)
    expected = torch.tensor([1.0, 0, 0,  # top-left cell: four 0s
                             0, 0.5, 0,  # top-right: two 1s, two ignored (they count in the denominator)
                             0.25, 0, 0.75,  # bottom-left: one 0, three 2s
                             0, 1.0, 0])  # bottom-right: four 1s
    assert histograms.shape == (1, 1, 1, 12)
    assert torch.allclose(histograms[0, 0, 0], expected)
    assert has_valid.tolist() == [[[True]]]
    histograms, has_valid = patch_histograms(torch.full((1, 4, 8), 255), 3, 4)
    assert has_valid.tolist() == [[[False, False]]] and histograms.abs().sum() == 0
    with pytest.raises(ValueError):
        patch_histograms(labels, 3, patch_size=8)


def test_kmeans_and_assignment_values():
    generator = torch.Generator().manual_seed(0)
    blob_a = torch.tensor([0.0, 0.0]) + 0.01 * torch.randn(50, 2, generator=generator)
    blob_b = torch.tensor([5.0, 5.0]) + 0.01 * torch.randn(50, 2, generator=generator)
    centres = kmeans(torch.cat([blob_a, blob_b]), 2, torch.Generator().manual_seed(3))
    order = centres[:, 0].argsort()
    assert torch.allclose(centres[order], torch.stack([blob_a.mean(0), blob_b.mean(0)]), atol=1e-5)
    histograms = torch.tensor([[[[0.1, 0.0], [4.9, 5.2]]]])  # 1×1×2 patches of dimension 2
    modes = assign_modes(histograms, torch.tensor([[[True, False]]]), centres[order])
    assert modes.tolist() == [[[0, 255]]]
    modes = assign_modes(histograms, torch.tensor([[[True, True]]]), centres[order])
    assert modes.tolist() == [[[0, 1]]]
    with pytest.raises(ValueError):
        kmeans(torch.zeros(10, 2), 3, torch.Generator().manual_seed(0))  # one distinct point


class LabelsOnly(torch.utils.data.Dataset):
    def __init__(self, count: int = 6, size=(32, 64), num_classes: int = 5):
        self.count, self.size, self.num_classes = count, size, num_classes

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        label = torch.randint(0, self.num_classes, (1, self.size[0] // 8, self.size[1] // 8),
                              generator=generator)
        return {"label": F.interpolate(label[None].float(), size=self.size, mode="nearest")[0, 0].long()}


def _method(tmp_path, overrides=()):
    cfg = load_config("benchmark_adaptpatch", ["model.num_classes=5", "method.patch_modes=4",
                                               "method.patch_size=16", "method.ndf=8", *overrides])
    model = build_segmenter(arch="tiny", num_classes=5, depth_head=False, feature_fusion=False)
    return cfg, model, METHODS["adaptpatch"](cfg, model, torch.device("cpu"))


def test_prepare_computes_once_and_caches_in_the_run_folder(tmp_path):
    torch.manual_seed(0)
    cfg, _, method = _method(tmp_path)
    with pytest.raises(DadaError, match="prepare"):
        method.train_step({}, {}, 0)
    method.prepare({"source": LabelsOnly()}, tmp_path)
    centres = method.classifier.mode_centres.clone()
    assert (tmp_path / MODES_FILE).is_file() and centres.shape == (4, 4 * 5) and centres.abs().sum() > 0
    # a second method on the same run folder reads the cache (an empty dataset would fail otherwise)
    _, _, again = _method(tmp_path)
    again.prepare({"source": LabelsOnly(count=0)}, tmp_path)
    assert torch.equal(again.classifier.mode_centres, centres)
    # other settings are not served from the cache
    _, _, other = _method(tmp_path, ["method.patch_modes=3"])
    with pytest.raises(DadaError, match="empty"):
        other.prepare({"source": LabelsOnly(count=0)}, tmp_path)
    # the centres travel with the state (resume)
    _, _, restored = _method(tmp_path)
    restored.load_state_dict(method.state_dict())
    assert restored.prepared and torch.equal(restored.classifier.mode_centres, centres)


def test_adaptpatch_two_iterations_match_the_paper(tmp_path):
    torch.manual_seed(0)
    cfg, model, method = _method(tmp_path)
    assert isinstance(method, AdaptPatch)
    method.prepare({"source": LabelsOnly()}, tmp_path)
    centres = method.classifier.mode_centres
    generator = torch.Generator().manual_seed(1)
    for iteration in range(2):
        source = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40,
                  "label": LabelsOnly()[iteration]["label"].expand(2, 32, 64).clone()}
        target = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40}
        ref_model, ref_h = copy.deepcopy(model), copy.deepcopy(method.classifier)
        ref_dp = copy.deepcopy(method.discriminators["patch"])
        ref_do = copy.deepcopy(method.discriminators["softmax"])

        def up(x):
            return F.interpolate(x, size=(32, 64), mode="bilinear", align_corners=True)

        seg_s, seg_t = up(ref_model(source["image"]).seg), up(ref_model(target["image"]).seg)
        f_s, f_t = ref_h(seg_s.softmax(1)), ref_h(seg_t.softmax(1))
        # Γ(Y_s) by brute force: each 16×16 patch's 2×2 grid of 8×8 cell histograms, nearest centre
        modes = torch.empty(2, 2, 4, dtype=torch.long)
        for n in range(2):
            for r in range(2):
                for c in range(4):
                    patch = source["label"][n, 16 * r:16 * r + 16, 16 * c:16 * c + 16]
                    cells = [patch[8 * i:8 * i + 8, 8 * j:8 * j + 8] for i in range(2) for j in range(2)]
                    vector = torch.cat([torch.bincount(cell.flatten(), minlength=5).float() / 64
                                        for cell in cells])
                    modes[n, r, c] = ((centres - vector) ** 2).sum(1).argmin()
        bce = F.binary_cross_entropy_with_logits
        d_p, d_o = ref_dp(f_t.softmax(1)), ref_do(seg_t.softmax(1))
        expected = {
            "seg_src": F.cross_entropy(seg_s, source["label"]),
            "patch_cls_src": F.cross_entropy(f_s, modes),
            "adv_trg_patch": bce(d_p, torch.zeros_like(d_p)),
            "adv_trg_softmax": bce(d_o, torch.zeros_like(d_o)),
            "d_patch_src": bce(ref_dp(f_s.softmax(1)), torch.zeros_like(d_p)),
            "d_patch_trg": bce(d_p, torch.ones_like(d_p)),
        }
        losses = method.train_step(source, target, iteration)
        for name, value in expected.items():
            assert losses[name].item() == pytest.approx(value.item(), rel=1e-5), name
        assert cfg.method.lambda_patch_cls == 0.01 and cfg.method.lambda_patch_adv == 0.0005
    # the step moved the patch classifier and both discriminators
    assert not torch.equal(ref_h.layers[0].weight, method.classifier.layers[0].weight)


def test_lambda_patch_cls_h_gives_h_its_own_weight_and_leaves_g_unchanged(tmp_path):
    """method.lambda_patch_cls_h = w: H's gradient of L_d is w·∇L_d, G's stays λ_d·∇L_d. After one step
    from the same start, the segmenter equals the default run's, and H differs from it by exactly
    −lr_H·(w − λ_d)·∇_H L_d (first SGD step: no momentum history)."""
    runs = {}
    for overrides in ([], ["method.lambda_patch_cls_h=1.0"]):
        torch.manual_seed(0)
        cfg, model, method = _method(tmp_path / str(len(runs)), overrides)
        method.prepare({"source": LabelsOnly()}, tmp_path / str(len(runs)))
        start_h = copy.deepcopy(method.classifier)
        generator = torch.Generator().manual_seed(1)
        source = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40,
                  "label": LabelsOnly()[0]["label"].expand(2, 32, 64).clone()}
        target = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40}
        start_model = copy.deepcopy(model)
        method.train_step(source, target, 0)
        runs[len(runs)] = (cfg, start_model, start_h, model, method)
    cfg, start_model, start_h, model_default, default = runs[0]
    _, _, _, model_h, weighted = runs[1]
    for (name, a), b in zip(model_default.named_parameters(), model_h.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7), name  # G's update does not depend on H's weight
    # the hand-written difference: ∇_H L_d on the detached softmax output of the starting segmenter
    seg = F.interpolate(start_model(source["image"]).seg, size=(32, 64), mode="bilinear", align_corners=True)
    histograms, has_valid = patch_histograms(source["label"], 5, 16, 2)
    modes = assign_modes(histograms, has_valid, default.classifier.mode_centres)
    loss = F.cross_entropy(start_h(seg.softmax(1).detach()), modes)
    grads = torch.autograd.grad(loss, list(start_h.parameters()))
    groups = default.optimizers["segmenter"].param_groups
    lr_h = next(g["lr"] for g in groups if g["name"] == "patch_classifier")
    assert lr_h == pytest.approx(10 * cfg.train.lr, rel=1e-6)
    moved = False
    pairs = zip(grads, default.classifier.parameters(), weighted.classifier.parameters(), strict=True)
    for grad, a, b in pairs:
        expected = -lr_h * (1.0 - cfg.method.lambda_patch_cls) * grad
        assert torch.allclose(b - a, expected, atol=1e-8, rtol=1e-4)
        moved |= bool(expected.abs().max() > 1e-7)
    assert moved
