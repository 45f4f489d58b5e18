"""report.html of `dada eval` and `dada compare`: self-contained (every figure embedded, nothing fetched),
and checked in a real browser: headless Chromium renders it, every image has loaded and the screenshot is
not blank. Skipped, with the reason printed, only when no Chromium is installed (.ci/run installs it)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from dada.cli import main
from test_eval_cli import make_checkpoint, make_cityscapes

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome", "chromium-headless-shell")
#: Injected into a copy of the page: records, once loaded, how many images decoded (complete, with size).
IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", ok + "/" + images.length);
});
</script>"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_flags(profile: Path) -> list[str]:
    # --no-sandbox: CI runs as root; no GPU and no network needed
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            f"--user-data-dir={profile}"]


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        reason = (f"no Chromium installed (looked for {', '.join(CHROMIUM_NAMES)} on PATH); "
                  "install it with `apt-get install -y chromium` (.ci/run does)")
        print(f"SKIPPED browser check: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = make_cityscapes(root / "cityscapes")
    runs = []
    for name, depth, seed in (("dada", True, 0), ("source_only", False, 1)):
        run = root / f"run_{name}"
        make_checkpoint(run / "checkpoints" / "final.pt", data, depth_head=depth, seed=seed,
                        preset=f"bench_{name}")
        (run / "metrics.jsonl").write_text("".join(
            json.dumps({"kind": "train", "iteration": i, "loss": {"seg": 3.0 / (i + 1)}}) + "\n"
            for i in range(0, 10, 2)))
        assert main(["eval", str(run), "--figures", "2", "--device", "cpu"]) == 0
        runs.append(run)
    comparison = root / "comparison"
    assert main(["compare", *map(str, runs), "--out", str(comparison), "--title", "Report test"]) == 0
    return {"runs": runs, "comparison": comparison, "root": root}


def test_reports_are_self_contained(evaluated):
    page = (evaluated["runs"][0] / "report.html").read_text(encoding="utf-8")
    assert "<table" in page and "road" in page and "mIoU" in page
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    figures = json.loads((evaluated["runs"][0] / "results.json").read_text())["figures"]
    # the per-class chart, training curves, the qualitative grid, 2 predictions and 2 depth maps
    assert len(sources) == len(figures) >= 7
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page
    for source in sources:  # each embedded image is a real PNG
        import base64

        image = cv2.imdecode(np.frombuffer(base64.b64decode(source.split(",", 1)[1]), np.uint8),
                             cv2.IMREAD_COLOR)
        assert image is not None and image.size > 0
    compare_page = (evaluated["comparison"] / "report.html").read_text(encoding="utf-8")
    compare_sources = re.findall(r'<img[^>]*src="([^"]+)"', compare_page)
    # the comparison chart, then each run's training curves and qualitative grid
    assert len(compare_sources) == 5 and all(s.startswith("data:image/png") for s in compare_sources)
    assert "Report test" in compare_page and "bench_dada" in compare_page


def render(chromium: str, page: Path, out: Path) -> tuple[str, np.ndarray]:
    """The DOM after load (with the image check injected into a copy of the page) and a screenshot."""
    checked = out / f"{page.parent.name}_checked.html"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", IMAGE_CHECK + "</body>"),
                       encoding="utf-8")
    flags = chromium_flags(out / "chromium-profile")
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=5000", "--dump-dom",
                          checked.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    shot = out / f"{page.parent.name}.png"
    subprocess.run([chromium, *flags, "--window-size=1400,2400", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    image = cv2.imread(str(shot))
    assert image is not None, f"Chromium wrote no screenshot {shot}"
    return dom, image


@pytest.mark.slow
def test_reports_render_in_chromium(chromium, evaluated, tmp_path):
    pages = ((evaluated["runs"][0] / "report.html", 7), (evaluated["comparison"] / "report.html", 5))
    for page, expected in pages:
        dom, screenshot = render(chromium, page, tmp_path)
        loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
        assert loaded, "the page's load event never ran"
        ok, total = map(int, loaded.groups())
        assert total >= expected and ok == total, f"{page}: {ok} of {total} images loaded"
        # not blank: many distinct colours, much that is not white, the figures' colours included
        assert screenshot.shape[:2] == (2400, 1400)
        not_white = (screenshot < 245).any(axis=2).mean()
        colours = len(np.unique(screenshot.reshape(-1, 3)[::7], axis=0))
        assert not_white > 0.05 and colours > 200, f"{page}: blank screenshot? ({not_white:.3f}, {colours})"
