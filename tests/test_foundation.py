import numpy as np
import pytest

from dada import DadaError, cli
from dada.data import classes
from dada.io import write_json, write_text


def test_cli_reports_user_errors_with_status_2(capsys):
    assert cli.main(["doctor", "synthia", "/nonexistent/folder"]) == 2
    assert "error" in capsys.readouterr().err


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_text(tmp_path / "a.txt", "hello")
    write_json(tmp_path / "b.json", {"x": np.float32(1.5)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    from dada.io import atomic_path

    target = tmp_path / "c.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.txt"]


def test_class_tables_follow_the_official_code():
    assert classes.CLASSES_16.num_classes == 16 and classes.CLASSES_7.num_classes == 7
    assert [classes.CLASSES_16.names[i] for i in (3, 4, 5)] == ["wall", "fence", "pole"]
    assert len(classes.MIOU13_CLASSES) == 13
    raw = np.array([[3, 22, 21], [0, 19, 8]])
    to16 = classes.map_labels(raw, classes.SYNTHIA_TO_16)
    to7 = classes.map_labels(raw, classes.SYNTHIA_TO_7)
    np.testing.assert_array_equal(to16, [[0, 255, 3], [255, 13, 12]])
    np.testing.assert_array_equal(to7, [[0, 0, 255], [255, 255, 6]])
    assert len(classes.MAPILLARY_NAMES) == 66
    assert classes.MAPILLARY_TO_7.get(classes.MAPILLARY_BACKGROUND_ID, 255) == 255
    assert classes.MAPILLARY_TO_7[29] == 0  # terrain is flat, as in the official code
    with pytest.raises(DadaError, match="num_classes=19"):
        classes.class_set(19)


def test_colorize_uses_the_official_palette():
    rgb = classes.CLASSES_16.colorize(np.array([[0, 255]]))
    assert rgb[0, 0].tolist() == [128, 64, 128] and rgb[0, 1].tolist() == [0, 0, 0]


def test_device_names_resolve_or_fail_naming_the_setting():
    import torch

    from dada.devices import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DadaError, match="train.device=bogus is not a device"):
        resolve_device("bogus", "train.device")
    if not torch.cuda.is_available():
        with pytest.raises(DadaError, match="--device=cuda:0 but CUDA is not available"):
            resolve_device("cuda:0")
