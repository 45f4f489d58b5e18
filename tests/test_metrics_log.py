"""metrics.jsonl stays valid JSON (issue 28: NaN never enters it)."""


def test_metrics_lines_are_valid_json_and_nan_comes_back(tmp_path):
    """metrics.jsonl never holds NaN (not JSON): the logger writes null, read_metrics gives NaN back."""
    import json
    import math

    from dada.engine.logging import finite_or_none
    from dada.evaluation.figures import read_metrics

    record = {"kind": "eval", "iteration": 3, "miou": float("nan"), "loss": {"a": float("inf"), "b": 1.5},
              "stats": {"pseudo_weight": float("nan")}}
    line = json.dumps(finite_or_none(record), allow_nan=False)
    path = tmp_path / "metrics.jsonl"
    path.write_text(line + "\n")
    json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # strict JSON
    back = read_metrics(path)[0]
    assert math.isnan(back["miou"]) and math.isnan(back["loss"]["a"]) and back["loss"]["b"] == 1.5
    assert math.isnan(back["stats"]["pseudo_weight"])
