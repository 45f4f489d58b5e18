"""Official weights: key layout, convert/export round trips, loading and its errors."""

import warnings

import pytest
import torch

from dada import DadaError
from dada.models import build_discriminator, build_segmenter, load_pretrained, load_segmenter
from dada.models.official import convert, export, infer_spec


def official_dada_layout(num_classes=16, blocks_per_stage=(3, 4, 23, 3)):
    """The 640 keys and shapes of the official DADA ResNet-101 (reference §1.6), written from the table,
    independently of our modules."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

    def bn_keys(name, ch):
        return [(f"{name}.{k}", () if k == "num_batches_tracked" else (ch,)) for k in bn]

    keys = [("conv1.weight", (64, 3, 7, 7)), *bn_keys("bn1", 64)]
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage, strict=True), 1):
        for b in range(blocks):
            cin = inplanes if b == 0 else 4 * planes
            p = f"layer{stage}.{b}"
            keys += [(f"{p}.conv1.weight", (planes, cin, 1, 1)), *bn_keys(f"{p}.bn1", planes),
                     (f"{p}.conv2.weight", (planes, planes, 3, 3)), *bn_keys(f"{p}.bn2", planes),
                     (f"{p}.conv3.weight", (4 * planes, planes, 1, 1)), *bn_keys(f"{p}.bn3", 4 * planes)]
            if b == 0:
                keys += [(f"{p}.downsample.0.weight", (4 * planes, cin, 1, 1)),
                         *bn_keys(f"{p}.downsample.1", 4 * planes)]
        inplanes = 4 * planes
    for i in range(4):
        keys += [(f"layer6.conv2d_list.{i}.weight", (num_classes, 2048, 3, 3)),
                 (f"layer6.conv2d_list.{i}.bias", (num_classes,))]
    for name, shape in (("enc4_1", (512, 2048, 1, 1)), ("enc4_2", (512, 512, 3, 3)),
                        ("enc4_3", (128, 512, 1, 1)), ("dec4", (2048, 128, 1, 1))):
        keys += [(f"{name}.weight", shape), (f"{name}.bias", (shape[0],))]
    return keys


def meta_state_dict(layout):
    """Tensors without storage: the checks only read names and shapes, so R101 costs nothing."""
    return {k: torch.empty(s, device="meta", dtype=torch.long if k.endswith("tracked") else torch.float32)
            for k, s in layout}


def test_our_resnet101_has_exactly_the_official_keys_and_shapes():
    layout = official_dada_layout()
    assert len(layout) == 640
    with torch.device("meta"):
        ours = build_segmenter("resnet101", num_classes=16).state_dict()
    assert [(k, tuple(v.shape)) for k, v in export(ours, "segmenter").items()] == layout
    assert [k for k in ours if not k.startswith("backbone.")] == [k for k, _ in layout[-16:]]  # the heads


def test_export_convert_round_trip_on_the_official_layout():
    sd = meta_state_dict(official_dada_layout(num_classes=7))
    ours = convert(sd, "segmenter")
    assert list(ours) == [k if k.startswith(("layer6", "enc4", "dec4")) else f"backbone.{k}" for k in sd]
    back = export(ours, "segmenter")
    assert list(back) == list(sd) and all(back[k] is sd[k] for k in sd)
    assert infer_spec(sd) == {"arch": "resnet101", "num_classes": 7, "depth_head": True,
                              "feature_fusion": True, "bn_mode": "train", "depth_widths": "official"}


def test_advent_checkpoint_without_depth_block_and_with_layer5():
    layout = [kv for kv in official_dada_layout() if not kv[0].startswith(("enc4", "dec4"))]
    sd = meta_state_dict(layout)
    assert infer_spec(sd)["depth_head"] is False and infer_spec(sd)["feature_fusion"] is False
    multi = dict(sd)
    for i in range(4):
        multi[f"layer5.conv2d_list.{i}.weight"] = torch.empty(16, 1024, 3, 3, device="meta")
        multi[f"layer5.conv2d_list.{i}.bias"] = torch.empty(16, device="meta")
    with pytest.warns(UserWarning, match="layer5"):
        converted = convert(multi, "segmenter")
    assert list(export(converted, "segmenter")) == list(sd)


def test_module_prefix_is_stripped():
    sd = meta_state_dict(official_dada_layout())
    wrapped = {f"module.{k}": v for k, v in sd.items()}
    assert list(export(convert(wrapped, "segmenter"), "segmenter")) == list(sd)


@pytest.mark.parametrize(("change", "message"), [
    ("drop", "missing key(s), first: ['layer3.7.bn2.running_var']"),
    ("extra", "unexpected key(s), first: ['head.weight']"),
    ("shape", "layer6.conv2d_list.2.weight (16, 1024, 3, 3) (expected (16, 2048, 3, 3))"),
])
def test_convert_names_the_first_offending_keys(change, message):
    sd = meta_state_dict(official_dada_layout())
    if change == "drop":
        del sd["layer3.7.bn2.running_var"]
    elif change == "extra":
        sd["head.weight"] = torch.empty(3, device="meta")
    else:
        sd["layer6.conv2d_list.2.weight"] = torch.empty(16, 1024, 3, 3, device="meta")
    with pytest.raises(DadaError) as err:
        convert(sd, "segmenter")
    assert message in str(err.value)


def test_convert_rejects_non_state_dicts_and_unknown_kinds():
    with pytest.raises(DadaError, match="state dict"):
        convert({"conv1.weight": [1, 2]}, "segmenter")
    with pytest.raises(DadaError, match="unknown weight kind"):
        convert({"a": torch.zeros(1)}, "caffe")
    with pytest.raises(DadaError, match="torchvision layout is not supported"):
        export({"a": torch.zeros(1)}, "torchvision")
    with pytest.raises(DadaError, match="no known architecture"):
        convert({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer6.conv2d_list.0.weight": torch.zeros(1)},
                "segmenter")


def test_convert_checks_against_a_given_model():
    tiny = build_segmenter("tiny", num_classes=4)
    other = build_segmenter("tiny", num_classes=5).state_dict()
    with pytest.raises(DadaError, match="wrong shape"):
        convert(other, "segmenter", model=tiny)


def test_num_batches_tracked_may_be_absent():
    sd = {k: v for k, v in meta_state_dict(official_dada_layout()).items() if "num_batches" not in k}
    converted = convert(sd, "segmenter")
    assert len(converted) == 640 and converted["backbone.bn1.num_batches_tracked"].item() == 0


def test_discriminator_round_trip_and_errors():
    disc = build_discriminator(num_classes=16)
    sd = disc.state_dict()
    assert list(sd) == [f"{i}.{k}" for i in (0, 2, 4, 6, 8) for k in ("weight", "bias")]
    back = export(convert(sd, "discriminator"), "discriminator")
    assert list(back) == list(sd) and all(back[k] is sd[k] for k in sd)
    broken = dict(sd)
    broken["4.weight"] = torch.zeros(256, 64, 4, 4)
    with pytest.raises(DadaError, match=r"4\.weight"):
        convert(broken, "discriminator")
    with pytest.raises(DadaError, match="wrong shape"):
        convert(sd, "discriminator", model=build_discriminator(num_classes=7))


def test_imagenet_conversion_strips_the_prefix_skips_layer5_and_keeps_the_head(tmp_path):
    source = build_segmenter("tiny", num_classes=5, depth_head=False, feature_fusion=False)
    backbone = source.backbone.state_dict()
    assert export(source.state_dict(), "imagenet").keys() == {f"Scale.{k}" for k in backbone}
    imagenet = {f"Scale.{k}": v for k, v in backbone.items()}
    imagenet["Scale.layer5.conv2d_list.0.weight"] = torch.zeros(1000, 128, 3, 3)
    imagenet["Scale.layer5.conv2d_list.0.bias"] = torch.zeros(1000)
    converted = convert(imagenet, "imagenet")
    assert list(converted) == list(backbone)
    assert export(converted, "imagenet").keys() == {k for k in imagenet if "layer5" not in k}

    path = tmp_path / "DeepLab_resnet_pretrained_imagenet.pth"
    torch.save(imagenet, path)
    model = build_segmenter("tiny", num_classes=3)
    head_before = model.layer6.conv2d_list[0].weight.clone()
    report = load_pretrained(model, path)
    assert report["kind"] == "imagenet" and report["loaded"] == len(backbone)
    assert torch.equal(model.backbone.layer2[0].conv1.weight, source.backbone.layer2[0].conv1.weight)
    assert torch.equal(model.layer6.conv2d_list[0].weight, head_before)
    # an R101 file checked on shapes alone
    r101 = {f"Scale.{k}": v for k, v in meta_state_dict(official_dada_layout())
            .items() if k.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."))}
    assert len(convert(r101, "imagenet")) == 640 - 8 - 8


def test_imagenet_conversion_error_names_keys():
    with pytest.raises(DadaError, match="no 'conv1.weight'"):
        convert({"conv1.weight": torch.zeros(64, 3, 7, 7)}, "imagenet")  # no wrapper prefix


def test_torchvision_layout_loads_into_the_backbone(tmp_path):
    source = build_segmenter("tiny", num_classes=3, depth_head=False, feature_fusion=False)
    tv = dict(source.backbone.state_dict())
    tv["fc.weight"], tv["fc.bias"] = torch.zeros(1000, 128), torch.zeros(1000)
    torch.save(tv, tmp_path / "resnet.pth")
    model = build_segmenter("tiny", num_classes=3)
    assert load_pretrained(model, tmp_path / "resnet.pth")["kind"] == "torchvision"
    assert torch.equal(model.backbone.layer4[0].conv2.weight, source.backbone.layer4[0].conv2.weight)


@pytest.mark.parametrize(("blocks", "arch"), [((3, 4, 23, 3), "resnet101"), ((3, 4, 6, 3), "resnet50")])
def test_torchvision_resnet_layouts_convert(blocks, arch):
    """torchvision ResNet-50/101 names equal the DeepLab ones for the backbone; only fc.* is dropped."""
    backbone = [kv for kv in official_dada_layout(blocks_per_stage=blocks)
                if kv[0].startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4."))]
    tv = meta_state_dict([*backbone, ("fc.weight", (1000, 2048)), ("fc.bias", (1000,))])
    converted = convert(tv, "torchvision")
    assert list(converted) == [k for k, _ in backbone]
    with torch.device("meta"):
        model = build_segmenter(arch)
    assert list(convert(tv, "torchvision", model=model)) == [k for k, _ in backbone]


def _trained_tiny():
    model = build_segmenter("tiny", num_classes=4).train()
    model(torch.randn(1, 3, 40, 40))  # moves the running statistics away from their init
    return model.eval()


def test_load_segmenter_reads_an_official_state_dict(tmp_path):
    model = _trained_tiny()
    path = tmp_path / "model_12000.pth"
    torch.save({f"module.{k}": v for k, v in export(model.state_dict(), "segmenter").items()}, path)
    loaded, info = load_segmenter(path)
    assert info["format"] == "official" and info["iteration"] == 12000 and info["config"] is None
    assert info["model_spec"]["arch"] == "tiny" and info["source"] == str(path)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).seg, model(x).seg)
    assert not loaded.training


def test_load_segmenter_reads_our_checkpoints_and_run_folders(tmp_path):
    model = build_segmenter("tiny", num_classes=4, depth_head=True, feature_fusion=False,
                            bn_mode="frozen")
    ckpt_dir = tmp_path / "run" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    for it in (9, 10):
        torch.save({"format": "dada-seg/1", "iteration": it, "config": {"seed": it},
                    "model_spec": model.spec, "model": model.state_dict()}, ckpt_dir / f"iter_{it}.pt")
    loaded, info = load_segmenter(tmp_path / "run")
    assert info["iteration"] == 10 and info["config"] == {"seed": 10}
    assert info["model_spec"] == model.spec and loaded.spec == model.spec
    torch.save({"format": "dada-seg/1", "iteration": 20, "config": {}, "model_spec": model.spec,
                "model": model.state_dict()}, ckpt_dir / "final.pt")
    assert load_segmenter(tmp_path / "run")[1]["iteration"] == 20


@pytest.mark.parametrize("case", ["missing", "empty_run", "corrupt", "pickle", "list", "format", "spec",
                                  "keys"])
def test_load_segmenter_errors_name_the_file(tmp_path, case):
    model = build_segmenter("tiny", num_classes=4)
    path = tmp_path / "weights.pt"
    if case == "missing":
        path = tmp_path / "nothing.pt"
    elif case == "empty_run":
        path = tmp_path / "run"
        (path / "checkpoints").mkdir(parents=True)
    elif case == "corrupt":
        path.write_bytes(b"not a checkpoint")
    elif case == "pickle":
        torch.save({"model": warnings.WarningMessage("x", UserWarning, "f", 1)}, path)
    elif case == "list":
        torch.save([torch.zeros(1)], path)
    elif case == "format":
        torch.save({"format": "other/9", "model": {}}, path)
    elif case == "spec":
        torch.save({"format": "dada-seg/2", "model_spec": {"arch": "tiny", "layers": 3},
                    "model": model.state_dict()}, path)
    else:
        sd = model.state_dict()
        del sd["backbone.layer1.0.conv1.weight"]
        torch.save({"format": "dada-seg/2", "model_spec": model.spec, "model": sd}, path)
    with pytest.raises(DadaError) as err:
        load_segmenter(path)
    assert str(path) in str(err.value)
    assert "weights_only` set to `False" not in str(err.value)  # never advise unsafe loading
    if case == "keys":
        assert "missing key(s), first: ['layer1.0.conv1.weight']" in str(err.value)
    if case == "pickle":
        assert "Unsupported global: GLOBAL warnings.WarningMessage" in str(err.value)


def test_load_pretrained_from_our_checkpoint_and_against_a_mismatched_model(tmp_path):
    source = _trained_tiny()
    path = tmp_path / "source_only.pt"
    torch.save({"format": "dada-seg/1", "iteration": 5, "config": {}, "model_spec": source.spec,
                "model": source.state_dict()}, path)
    model = build_segmenter("tiny", num_classes=4)
    assert load_pretrained(model, path)["kind"] == "segmenter"
    assert torch.equal(model.dec4.weight, source.dec4.weight)
    assert torch.equal(model.backbone.bn1.running_mean, source.backbone.bn1.running_mean)
    wider = build_segmenter("resnet18_w32", num_classes=4)
    with pytest.raises(DadaError) as err:
        load_pretrained(wider, path)
    assert str(path) in str(err.value)
    assert "conv1.weight (16, 3, 7, 7) (expected (32, 3, 7, 7))" in str(err.value)


def test_checkpoints_of_the_previous_layout_load_transparently(tmp_path):
    """Format dada-seg/1 (written before the backbone became ``model.backbone``): backbone keys without
    the ``backbone.`` prefix and a model_spec without output_stride."""
    model = _trained_tiny()
    old_keys = {k.removeprefix("backbone."): v for k, v in model.state_dict().items()}
    assert "conv1.weight" in old_keys and "layer6.conv2d_list.0.weight" in old_keys
    spec = {k: v for k, v in model.spec.items() if k != "output_stride"}
    path = tmp_path / "run" / "checkpoints" / "iter_0000010.pt"
    path.parent.mkdir(parents=True)
    torch.save({"format": "dada-seg/1", "iteration": 10, "config": {}, "model_spec": spec, "model": old_keys},
               path)
    loaded, info = load_segmenter(tmp_path / "run")
    assert info["format"] == "dada-seg/1" and info["iteration"] == 10
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).seg, model(x).seg, rtol=0, atol=0)
    fresh = build_segmenter("tiny", num_classes=4)
    assert load_pretrained(fresh, path)["kind"] == "segmenter"
    assert torch.equal(fresh.backbone.layer1[0].conv1.weight, model.backbone.layer1[0].conv1.weight)
    # resuming training from it is refused with the way out
    from dada.engine.checkpoint import load_checkpoint

    with pytest.raises(DadaError, match=r"dada-seg/1.*model.pretrained=.*pretrained_kind=segmenter"):
        load_checkpoint(path)
