"""The official SGD (dada.optim): repeat counts from the module nesting, PyTorch 1.2's update, state."""

import copy

import pytest
import torch
from torch import nn

from dada import DadaError
from dada.config import load_config
from dada.engine import Trainer
from dada.models import build_segmenter
from dada.optim import OfficialSGD, build_segmenter_sgd, official_repeats


def test_repeat_counts_follow_the_module_nesting():
    with torch.device("meta"):
        r101 = build_segmenter("resnet101", num_classes=16)
    counts = official_repeats(r101.backbone.official_sgd_roots())
    assert (sum(counts.values()), len(counts)) == (314, 104)  # the official list for ResNet-101
    names = {id(p): n for n, p in r101.backbone.named_parameters()}
    by_name = {names[id(p)]: c for p, c in counts.items()}
    assert by_name["conv1.weight"] == 1
    assert by_name["layer3.17.conv2.weight"] == 3
    assert by_name["layer1.0.downsample.0.weight"] == 4
    tiny = build_segmenter("tiny", num_classes=3)
    tiny_counts = official_repeats(tiny.backbone.official_sgd_roots())
    assert sorted(set(tiny_counts.values())) == [1, 3, 4]


def test_one_step_equals_k_entries_of_the_pytorch_1_2_loop():
    """A tensor listed k times: k × (grad += wd·p; buf = clone(grad) | m·buf + grad; p −= lr·buf)."""
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(5)) for _ in range(3)]
    grads = [torch.randn(5) for _ in range(3)]
    repeats = [1, 3, 4]
    reference = [p.detach().clone() for p in params]
    buffers = [None] * 3
    optimizer = OfficialSGD([{"params": params, "repeats": repeats}], lr=0.1, momentum=0.9, weight_decay=0.05)
    for _ in range(2):  # two iterations: the second reuses the buffers
        ref_grads = [g.clone() for g in grads]
        for i, k in enumerate(repeats):
            for _ in range(k):
                ref_grads[i] += 0.05 * reference[i]
                buffers[i] = ref_grads[i].clone() if buffers[i] is None else 0.9 * buffers[i] + ref_grads[i]
                reference[i] = reference[i] - 0.1 * buffers[i]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        for i in range(3):
            torch.testing.assert_close(params[i].detach(), reference[i], rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(optimizer.state[params[i]]["momentum_buffer"], buffers[i])


def test_state_round_trips_and_resumes_bit_identically():
    torch.manual_seed(1)
    model = build_segmenter("tiny", num_classes=3)
    twin = copy.deepcopy(model)
    x = torch.randn(1, 3, 32, 32)

    def step(net, optimizer):
        optimizer.zero_grad()
        net(x).seg.square().mean().backward()
        optimizer.step()

    first = build_segmenter_sgd(model, 0.01, 0.9, 5e-4, "official")
    step(model, first)
    state = copy.deepcopy(first.state_dict())
    twin.load_state_dict(model.state_dict())
    second = build_segmenter_sgd(twin, 0.01, 0.9, 5e-4, "official")
    second.load_state_dict(state)
    step(model, first)
    step(twin, second)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values(),
                                                 strict=True))
    assert state["param_groups"][0]["repeats"] == first.param_groups[0]["repeats"]
    assert isinstance(build_segmenter_sgd(model, 0.01, 0.9, 5e-4, "standard"), torch.optim.SGD)
    with pytest.raises(ValueError, match="SGD mode"):
        build_segmenter_sgd(model, 0.01, 0.9, 5e-4, "adam")


PAPER = ["model.arch=tiny", "train.device=cpu", "method.ndf=8"]


def test_paper_presets_need_model_pretrained(tmp_path):
    with pytest.raises(DadaError, match=r"model\.pretrained.*DeepLab_resnet_pretrained_imagenet\.pth"):
        Trainer(load_config("synthia2cityscapes_dada", PAPER))
    with pytest.raises(DadaError, match="model.pretrained"):
        Trainer(load_config("synthia2mapillary7_320_s1", PAPER))
    trainer = Trainer(load_config("synthia2cityscapes_dada", [*PAPER, "model.pretrained=none"]))
    assert not hasattr(trainer, "pretrained")  # random init, on purpose
    assert Trainer(load_config("benchmark_dada", PAPER)).model is not None  # not a paper preset
    with pytest.raises(DadaError, match="train.sgd"):
        load_config("benchmark_dada", ["train.sgd=adam"])
