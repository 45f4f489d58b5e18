"""``dada doctor``: usable folders pass, each kind of problem is named with its files."""

import numpy as np
import yaml
from PIL import Image

from dada import cli
from dada.data.cityscapes import write_cityscapes
from dada.data.doctor import diagnose
from dada.data.mapillary import write_mapillary
from dada.data.synthia import label_png as synthia_label_png
from dada.data.synthia import write_synthia
from dada.io import write_image

IDS = np.array([[3, 3, 8, 1], [4, 2, 21, 1], [3, 10, 6, 1]], dtype=np.uint16)


def rgb(height=3, width=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)


def make_synthia(root, count=3):
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4) * 500 + 100
    for i in range(count):
        write_synthia(root, f"{i:07d}.png", rgb(seed=i), IDS, depth)
    (root / "val.txt").write_text("0000001.png\n")
    return root


def test_usable_synthia_passes(tmp_path, capsys):
    root = make_synthia(tmp_path / "synthia")
    assert cli.main(["doctor", "synthia", str(root)]) == 0
    out = capsys.readouterr().out
    assert "all: 3 images, 3 labels in GT/LABELS/" in out and "3 depth in Depth/" in out
    assert "val: 1 images listed in val.txt" in out and "3 images where the full dataset has 9400" in out
    assert "classes road, sidewalk, building, wall, vegetation, sky, person, car; 0.0% ignored" in out
    assert "files     all: 3 image headers read, sizes match" in out
    assert "depth     all: 1.00–56.00 m" in out
    assert out.rstrip().endswith("result: usable")


def test_synthia_problems_are_listed_with_file_names(tmp_path, capsys):
    root = make_synthia(tmp_path / "synthia")
    (root / "Depth/0000002.png").unlink()
    (root / "val.txt").write_text("0000009.png\n")
    write_image(root / "GT/LABELS/0000001.png", synthia_label_png(np.zeros((3, 5), np.uint16)))
    (root / "RGB/0000000.png").write_bytes(b"\x89PNG garbage")
    assert cli.main(["doctor", "synthia", str(root)]) == 2
    captured = capsys.readouterr()
    assert "error" in captured.err
    out = captured.out
    assert "list file val.txt names 1 image(s) missing in RGB/: 0000009.png" in out
    assert "1 image(s) without a depth file in Depth/: 0000002.png" in out
    assert "not readable images: 0000000.png" in out
    assert "0000001.png (5×3 vs image 4×3)" in out
    assert "NOT usable" in out


def test_unknown_label_value_found_in_samples(tmp_path):
    root = make_synthia(tmp_path / "synthia", count=1)
    bad = IDS.copy()
    bad[0, 0] = 99
    write_image(root / "GT/LABELS/0000000.png", synthia_label_png(bad))
    (root / "val.txt").unlink()
    report = diagnose("synthia", root)
    assert not report.usable
    assert any("0000000.png has unknown label value(s) 99" in p for p in report.problems)


def test_cityscapes_target_without_train_labels(tmp_path, capsys):
    root = tmp_path / "cityscapes"
    label_ids = np.array([[7, 8, 26, 23]] * 3, np.uint8)
    write_cityscapes(root, "train", "aachen", "aachen_000000_000019", rgb())
    write_cityscapes(root, "val", "lindau", "lindau_000000_000019", rgb(), label_ids,
                     np.array([[0, 257, 513, 1025]] * 3, np.uint16))
    assert cli.main(["doctor", "cityscapes", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 1 images" in out
    assert "val: 1 images, 1 labels in gtFine/val/, 1 depth in disparity/val/" in out
    assert "classes road, sidewalk, sky, car; 0.0% ignored" in out
    assert "disparity 1.00–4.00 px, 25.0% invalid" in out
    (root / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png").unlink()
    write_cityscapes(root, "val", "lindau", "lindau_000000_000020", rgb(4, 4))
    report = diagnose("cityscapes", root)
    assert "val: 2 image(s) without a label file in gtFine/val/" in report.render()
    assert ("val: 1 image(s) without a depth file in disparity/val/: lindau_000000_000020_leftImg8bit.png"
            in report.problems)


def test_all_ignored_labels_are_a_problem_except_for_cityscapes_test(tmp_path):
    root = tmp_path / "cityscapes"
    write_cityscapes(root, "train", "aachen", "aachen_000000_000019", rgb())
    for split in ("val", "test"):
        write_cityscapes(root, split, "bonn", "bonn_000000_000019", rgb(), np.zeros((3, 4), np.uint8))
    report = diagnose("cityscapes", root)
    assert report.problems == ["val: every label pixel of the samples is ignored (255): wrong label files "
                               "(e.g. labelTrainIds or colour images instead of raw ids)?"]
    assert "Cityscapes test labels are withheld: expected" in report.render()


def test_mapillary_and_folder(tmp_path):
    root = tmp_path / "mapillary"
    for split in ("training", "validation"):
        write_mapillary(root, split, "k1", rgb(3, 5), np.full((3, 5), 13, np.uint8))
    report = diagnose("mapillary", root)
    assert report.usable, report.render()
    assert "classes flat" in report.render()
    (root / "validation/labels/k1.png").unlink()
    report = diagnose("mapillary", root)
    assert "1 image(s) without a label file in validation/labels/: k1.jpg" in report.problems[0]

    folder = tmp_path / "carla"
    (folder / "images").mkdir(parents=True)
    Image.fromarray(rgb()).save(folder / "images/f1.png")
    assert not diagnose("folder", folder).usable  # no dataset.yaml
    (folder / "dataset.yaml").write_text(yaml.safe_dump({"num_classes": 7}))
    report = diagnose("folder", folder)
    assert report.usable, report.render()


def test_missing_root_is_an_error(tmp_path, capsys):
    assert cli.main(["doctor", "cityscapes", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["doctor", "kitti", str(tmp_path)]) == 2


def test_empty_or_binary_list_files_are_problems_not_crashes(tmp_path, capsys):
    root = make_synthia(tmp_path / "synthia")
    (root / "empty.txt").write_text("# nothing listed\n")
    (root / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    assert cli.main(["doctor", "synthia", str(root)]) == 2
    out = capsys.readouterr().out
    assert "empty.txt names no files" in out
    assert "binary.txt is not UTF-8 text" in out


def test_eight_bit_depth_is_a_problem_naming_the_file(tmp_path):
    root = make_synthia(tmp_path / "synthia")
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4) * 20 + 10
    write_image(root / "Depth/0000002.png", np.repeat(depth[:, :, None], 3, axis=2).astype(np.uint8))
    report = diagnose("synthia", root)
    assert not report.usable
    problem = next(p for p in report.problems if "wrong format" in p)
    assert problem.startswith("all: 1 file(s) of the wrong format (0000002.png); first: SYNTHIA depth file")
    assert "Depth/0000002.png is a 8-bit PNG with 3 channel(s), expected 16-bit" in problem


def test_all_decodes_every_file_and_says_how_many(tmp_path, capsys):
    root = make_synthia(tmp_path / "synthia", count=6)
    rgb_file = root / "RGB/0000002.png"
    rgb_file.write_bytes(rgb_file.read_bytes()[:50])  # truncated: the header still reads
    assert cli.main(["doctor", "synthia", str(root), "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "all: 2 of 6 items decoded (use --all to decode all 6)" in out
    assert cli.main(["doctor", "synthia", str(root), "--all"]) == 2
    out = capsys.readouterr().out
    assert "all: 6 of 6 items decoded (every item), 1 failed" in out
    assert "RGB/0000002.png is not a readable image" in out


def test_a_root_that_is_a_file_is_named_as_such(tmp_path, capsys):
    root = tmp_path / "synthia.zip"
    root.write_bytes(b"PK")
    assert cli.main(["doctor", "synthia", str(root)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "does not exist" not in err
