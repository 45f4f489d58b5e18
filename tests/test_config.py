"""Typed config: presets, composition, overrides, errors, saving."""

import pytest

from dada import DadaError
from dada.config import (
    from_dict,
    list_presets,
    load_config,
    methods,
    save_config,
    settings,
    split_preset,
    to_dict,
)


def test_every_setting_and_method_compose():
    presets = list_presets()
    assert len(presets) == len(settings()) * len(methods())
    for name in ("synthia2cityscapes_s1", "synthia2cityscapes_s7", "synthia2cityscapes_320_dada",
                 "synthia2cityscapes7_advent", "synthia2mapillary7_320_s4", "benchmark_minent",
                 "benchmark_adaptsegnet"):
        assert name in presets
    for name in presets:
        cfg = load_config(name)
        assert cfg.preset == name


def test_official_defaults():
    cfg = load_config("synthia2cityscapes_dada")
    train = cfg.train
    assert (train.lr, train.momentum, train.weight_decay, train.poly_power) == (2.5e-4, 0.9, 5e-4, 0.9)
    assert (train.lr_d, list(train.betas_d), train.max_iters) == (1e-4, [0.9, 0.99], 90000)
    assert (train.lambda_seg, train.lambda_depth, train.lambda_adv) == (1.0, 1e-3, 1e-3)
    assert (train.source_label, train.target_label, cfg.seed) == (0, 1, 1234)
    assert cfg.data.source.batch_size == cfg.data.target.batch_size == 1
    assert list(cfg.data.source.size) == [760, 1280] and list(cfg.data.target.size) == [512, 1024]
    assert cfg.model.num_classes == 16 and cfg.data.preprocess == "caffe"
    assert list(cfg.method.adversarial) == ["depth_aware"] and not cfg.method.halve_d_loss
    assert load_config("synthia2cityscapes_dada", ["train.weight_decay=1e-4"]).train.weight_decay == 1e-4


@pytest.mark.parametrize("method, adversarial, depth_head, fusion, depth_loss, halved", [
    ("s1", [], False, False, False, False),
    ("s2", ["self_information"], False, False, False, True),
    ("s3", ["self_information"], True, True, True, False),
    ("s4", ["depth"], True, False, True, False),
    ("s5", ["depth"], True, True, True, False),
    ("s6", ["self_information", "depth"], True, True, True, False),
    ("s7", ["depth_aware"], True, True, True, False),
    ("minent", [], False, False, False, False),
    ("adaptsegnet", ["softmax"], False, False, False, True),
])
def test_table3_switches(method, adversarial, depth_head, fusion, depth_loss, halved):
    cfg = load_config(f"synthia2cityscapes_{method}")
    assert list(cfg.method.get("adversarial", [])) == adversarial  # S1 and MinEnt have no such key
    assert (cfg.model.depth_head, cfg.model.feature_fusion) == (depth_head, fusion)
    assert (cfg.method.depth_supervision, cfg.method.get("halve_d_loss", False)) == (depth_loss, halved)
    from dada.methods import DADA, METHODS, Adversarial, MinEnt, SourceOnly

    expected = {"s1": SourceOnly, "minent": MinEnt, "s7": DADA}.get(method, Adversarial)
    assert METHODS[cfg.method.name] is expected


def test_aliases_and_settings():
    assert to_dict(load_config("synthia2cityscapes_dada"))["method"] == to_dict(
        load_config("synthia2cityscapes_s7"))["method"]
    assert split_preset("synthia2cityscapes7_320_s6") == ("synthia2cityscapes7_320", "s6")
    mapillary = load_config("synthia2mapillary7_dada")
    assert mapillary.model.num_classes == 7 and mapillary.data.target.name == "mapillary"
    assert list(mapillary.data.target.size) == [768, 1024]
    low = load_config("synthia2cityscapes_320_dada")
    assert list(low.data.source.size) == list(low.data.target.size) == [320, 640]
    bench = load_config("benchmark_dada")
    assert bench.data.source.root == "@benchmark" and bench.model.arch != "resnet101"


def test_overrides_are_typed():
    cfg = load_config("benchmark_dada", ["train.max_iters=7", "data.source.fraction=0.5",
                                         "data.source.size=[16,32]", "model.pretrained=/w.pth", "seed=3"])
    assert cfg.train.max_iters == 7 and isinstance(cfg.train.max_iters, int)
    assert cfg.data.source.fraction == 0.5 and list(cfg.data.source.size) == [16, 32]
    assert cfg.model.pretrained == "/w.pth" and cfg.seed == 3


@pytest.mark.parametrize("overrides, words", [
    (["train.max_iter=3"], ["train.max_iter", "train.max_iters", "train.lr"]),
    (["trian.lr=1"], ["trian", "train", "model", "data"]),
    (["train.max_iters=many"], ["train.max_iters", "int", "train.lr"]),
    (["model.depth_head=maybe"], ["model.depth_head", "bool"]),
    (["data.source.nme=x"], ["data.source.nme", "data.source.name", "data.source.root"]),
    (["train.max_iters"], ["key=value"]),
    (["method.adversarial=[depth,colour]"], ["colour", "depth_aware"]),
    (["eval.selection=best"], ["last", "best-on-val"]),
    (["eval.selection=best-on-val"], ["eval.every"]),
    (["model.depth_head=false"], ["model.depth_head", "depth branch"]),
    (["train.keep_last=0"], ["keep_last"]),
    (["data.source.fraction=0"], ["fraction"]),
])
def test_config_errors_list_valid_keys(overrides, words):
    with pytest.raises(DadaError) as error:
        load_config("benchmark_dada", overrides)
    for word in words:
        assert word in str(error.value)


def test_unknown_preset_and_bad_files(tmp_path):
    with pytest.raises(DadaError, match="synthia2cityscapes.*s7"):
        load_config("synthia2cityscapes_dadaa")
    with pytest.raises(DadaError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: fast}\n")
    with pytest.raises(DadaError, match="train.lr"):
        load_config(bad)


def test_yaml_file_extends_a_preset_and_round_trips(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("preset: synthia2cityscapes_s4\ntrain: {max_iters: 11}\n")
    cfg = load_config(mine, ["seed=5"])
    assert list(cfg.method.adversarial) == ["depth"] and cfg.train.max_iters == 11 and cfg.seed == 5
    save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(tmp_path / "run" / "config.yaml")
    assert to_dict(again) == to_dict(cfg) == to_dict(from_dict(to_dict(cfg)))
