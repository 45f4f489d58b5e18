"""The benchmark's fingerprint: statistics that show a shortcut or a collision without training a network.

Per split (``source_train``, ``source_val``, ``target_train``, ``target_val``), from each rendered image
and its labels as the written files give them (the source's SYNTHIA ids and the target's Cityscapes ids
through the 16- and 7-class tables):

* class pixel shares over the whole image and per horizontal band (quarters of the height);
* the horizon row (where the road plane's vanishing line projects: ``c_y − f·tan(pitch)``), as a fraction
  of the image height: quantiles 10/50/90 %;
* object sizes per class: 8-connected components of the class mask, median area and median bounding-box
  width in pixels, and the share of the class's pixels in components smaller than one output cell at
  stride 16 (256 px); ``benchmark.json`` measures them on the val splits (source val, target val);
* the **colour probe**: a model-free classifier p(class | colour quantised to 8³ bins, row band of 8),
  a lookup table trained on ``source_train`` and scored (IoU per class, mIoU) on ``source_val`` and
  ``target_val``; the same table trained on ``target_train`` scored on ``target_val`` is its oracle. A
  probe that scores high on source val while the CNN scores lower means the source is decodable from
  colour alone (a shortcut); where the source-trained probe sends target pixels shows colour collisions.

Everything is accumulated per image (:func:`image_stats`, cheap: a few histograms) and merged
(:func:`merge`), so :func:`dada.benchmark.make_benchmark` writes it into ``benchmark.json`` while
generating, and ``benchmarks/fingerprint.py`` prints it for any version, seed and shift.
"""

from __future__ import annotations

import numpy as np

from dada.benchmark.ids import SYN_TO_CS
from dada.data.classes import (
    CITYSCAPES_TO_7,
    CITYSCAPES_TO_16,
    CLASSES_7,
    CLASSES_16,
    SYNTHIA_TO_7,
    SYNTHIA_TO_16,
)

PROBE_BANDS = 8
PROBE_LEVELS = 8  # per channel: 8³ colour bins
SHARE_BANDS = 4
CELL = 16  # output stride: components under CELL² pixels are narrower than one output cell
SPLITS = ("source_train", "source_val", "target_train", "target_val")


def _tables() -> dict[tuple[str, int], np.ndarray]:
    """Raw generator id → train id (n = ignore) per written format and class count."""
    out = {}
    for n, syn, cs in ((16, SYNTHIA_TO_16, CITYSCAPES_TO_16), (7, SYNTHIA_TO_7, CITYSCAPES_TO_7)):
        src = np.full(256, n, np.uint8)
        for raw, train in syn.items():
            src[raw] = train
        cs_lut = np.full(256, n, np.uint8)
        for raw, train in cs.items():
            cs_lut[raw] = train
        out[("source", n)] = src
        out[("target", n)] = cs_lut[SYN_TO_CS]
    return out


_TABLES: dict | None = None


def train_ids(raw: np.ndarray, fmt: str, num_classes: int) -> np.ndarray:
    """Train ids (``num_classes`` = ignore) of raw generator labels as written in ``fmt``
    (source | target)."""
    global _TABLES
    if _TABLES is None:
        _TABLES = _tables()
    return _TABLES[(fmt, num_classes)][raw]


def image_stats(rgb: np.ndarray, raw: np.ndarray, fmt: str, horizon: float, components: bool = True) -> dict:
    """The fingerprint's statistics of one image: ``rgb`` H×W×3 uint8, ``raw`` H×W generator labels,
    ``fmt`` the format it is written in (source | target), ``horizon`` its horizon row in pixels;
    ``components`` False leaves out the object sizes (the costliest part)."""
    import cv2

    h, w = raw.shape
    rows = np.arange(h)
    colour = (rgb.astype(np.int32) * PROBE_LEVELS // 256)
    cbin = (colour[..., 0] * PROBE_LEVELS + colour[..., 1]) * PROBE_LEVELS + colour[..., 2]
    pband = np.broadcast_to((rows * PROBE_BANDS // h)[:, None], (h, w))
    sband = np.broadcast_to((rows * SHARE_BANDS // h)[:, None], (h, w))
    out: dict = {"images": 1, "pixels": h * w, "horizon": [horizon / h]}
    for n in (16, 7):
        lab = train_ids(raw, fmt, n).astype(np.int64)
        key = (pband * PROBE_LEVELS ** 3 + cbin) * (n + 1) + lab
        out[f"probe{n}"] = np.bincount(key.ravel(), minlength=PROBE_BANDS * PROBE_LEVELS ** 3 * (n + 1))
        out[f"shares{n}"] = np.bincount((sband * (n + 1) + lab).ravel(), minlength=SHARE_BANDS * (n + 1))
    lab16 = train_ids(raw, fmt, 16)
    sizes = {}
    for c in np.unique(lab16) if components else ():
        if c >= 16:
            continue
        count, _, stats, _ = cv2.connectedComponentsWithStats((lab16 == c).astype(np.uint8), connectivity=8)
        sizes[int(c)] = stats[1:, [cv2.CC_STAT_AREA, cv2.CC_STAT_WIDTH]].astype(np.int64)
    out["components"] = sizes
    return out


def merge(a: dict | None, b: dict) -> dict:
    """The statistics of two image sets together."""
    if a is None:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in b.items()}
    out = {}
    for k, v in a.items():
        if k == "components":
            out[k] = dict(v)
            for c, s in b[k].items():
                out[k][c] = np.concatenate([out[k][c], s]) if c in out[k] else s
        else:  # counts add up, the horizon lists concatenate
            out[k] = v + b[k]
    return out


def _probe_table(probe: np.ndarray, n: int) -> np.ndarray:
    """The probe's prediction per (band, colour bin): the most frequent class; unseen bins take the
    band's most frequent class."""
    counts = probe.reshape(PROBE_BANDS, PROBE_LEVELS ** 3, n + 1)[..., :n]
    pred = counts.argmax(-1)
    band_prior = counts.sum(1).argmax(-1)
    unseen = counts.sum(-1) == 0
    return np.where(unseen, band_prior[:, None], pred)


def probe_scores(train: np.ndarray, test: np.ndarray, n: int, names) -> dict:
    """IoU per class and mIoU (percent) of the probe trained on ``train``'s histogram, on ``test``'s."""
    from dada.evaluation.metrics import iou_from_confusion, nanmean

    table = _probe_table(train, n)
    counts = test.reshape(PROBE_BANDS, PROBE_LEVELS ** 3, n + 1)[..., :n]
    conf = np.zeros((n, n), np.int64)  # rows: ground truth, columns: prediction
    for c in range(n):
        conf[:, c] = (counts * (table == c)[..., None]).sum((0, 1))
    iou = iou_from_confusion(conf)
    rows = conf.sum(1, keepdims=True)
    to = np.where(rows > 0, conf / np.maximum(rows, 1), 0.0)
    return {
        "miou": round(100 * nanmean(iou), 1),
        "iou": {name: (None if np.isnan(v) else round(100 * float(v), 1))
                for name, v in zip(names, iou, strict=True)},
        # where each ground-truth class goes (its largest wrong destination), in % of its pixels
        "largest_confusion": {
            names[g]: [names[int(p)], round(100 * float(to[g, p]), 1)]
            for g in range(n) if rows[g, 0] > 0
            for p in [int(np.argmax(np.where(np.arange(n) == g, -1, to[g])))]
        },
    }


def _shares(hist: np.ndarray, n: int, names) -> dict:
    per_band = hist.reshape(SHARE_BANDS, n + 1)
    total = per_band.sum()

    def pct(v, t):
        return {name: round(100 * float(x) / t, 2) if t else 0.0
                for name, x in zip([*names, "ignore"], v, strict=True)}

    return {"all": pct(per_band.sum(0), total),
            **{f"band{b}": pct(per_band[b], per_band[b].sum()) for b in range(SHARE_BANDS)}}


def summarise(stats: dict[str, dict]) -> dict:
    """The fingerprint (JSON-ready) of merged per-split statistics (keys of :data:`SPLITS`)."""
    out: dict = {
        "definitions": {
            "shares": f"class pixel shares (% of all pixels, 'ignore' included), whole image and per band "
                      f"(band0 = top quarter … band{SHARE_BANDS - 1} = bottom quarter)",
            "horizon": "horizon row / image height, quantiles 10, 50, 90 %",
            "components": f"16 classes: 8-connected components; median area (px), median bounding-box width "
                          f"(px), % of the class's pixels in components under {CELL}x{CELL} px",
            "probe": f"p(class | RGB quantised to {PROBE_LEVELS}^3 bins, row band of {PROBE_BANDS}) as a "
                     "lookup table; mIoU in %",
        },
        "images": {s: int(stats[s]["images"]) for s in SPLITS if s in stats},
    }
    for domain in ("source", "target"):
        merged = None
        for s in (f"{domain}_train", f"{domain}_val"):
            if s in stats:
                merged = merge(merged, stats[s])
        if merged is None:
            continue
        hz = np.asarray(merged["horizon"], float)
        comps = {}
        for c, name in enumerate(CLASSES_16.names):
            s = merged["components"].get(c)
            if s is None or not len(s):
                continue
            area, width = s[:, 0], s[:, 1]
            small = area[area < CELL * CELL].sum()
            comps[name] = {"count": int(len(s)), "median_area": float(np.median(area)),
                           "median_width": float(np.median(width)),
                           "pct_pixels_under_cell": round(100 * float(small / area.sum()), 1)}
        out[domain] = {
            "shares16": _shares(merged["shares16"], 16, CLASSES_16.names),
            "shares7": _shares(merged["shares7"], 7, CLASSES_7.names),
            "horizon": [round(float(q), 3) for q in np.quantile(hz, [0.1, 0.5, 0.9])],
            "components": comps,
        }
        out[domain]["thin_classes"] = sorted(
            name for name, c in comps.items() if c["pct_pixels_under_cell"] >= 50)
    probes = {}
    for n, names in ((16, CLASSES_16.names), (7, CLASSES_7.names)):
        key = f"probe{n}"
        if "source_train" in stats:
            for s in ("source_val", "target_val"):
                if s in stats:
                    probes[f"{n}:source_train->{s}"] = probe_scores(stats["source_train"][key], stats[s][key],
                                                                    n, names)
        if "target_train" in stats and "target_val" in stats:
            probes[f"{n}:target_train->target_val"] = probe_scores(
                stats["target_train"][key], stats["target_val"][key], n, names)
    out["probe"] = probes
    return out


def format_fingerprint(fp: dict) -> str:
    """A readable text of :func:`summarise`'s output."""
    lines = [f"images: {fp['images']}"]
    for domain in ("source", "target"):
        d = fp.get(domain)
        if not d:
            continue
        sh = d["shares16"]
        lines.append(f"[{domain}] horizon row / height (10/50/90 %): {d['horizon']}")
        top = sorted(((v, k) for k, v in sh["all"].items()), reverse=True)
        lines.append("  shares16 all: " + ", ".join(f"{k} {v:.1f}" for v, k in top))
        for b in range(SHARE_BANDS):
            band = sorted(((v, k) for k, v in sh[f"band{b}"].items()), reverse=True)[:4]
            lines.append(f"  band{b}: " + ", ".join(f"{k} {v:.1f}" for v, k in band))
        lines.append("  shares7 all: " + ", ".join(f"{k} {v:.1f}" for k, v in d["shares7"]["all"].items()))
        lines.append("  components (median area px / median width px / % px under cell):")
        sizes = [f"{k} {c['median_area']:.0f}/{c['median_width']:.0f}/{c['pct_pixels_under_cell']:.0f}"
                 for k, c in d["components"].items()]
        lines.append("    " + "; ".join(sizes))
        lines.append(f"  thin (>= 50 % of the pixels in components under one {CELL}x{CELL} cell): "
                     f"{', '.join(d['thin_classes'])}")
    lines.append("colour probe (trained -> scored: mIoU; per-class IoU):")
    for key, p in fp["probe"].items():
        iou = ", ".join(f"{k} {'-' if v is None else f'{v:.0f}'}" for k, v in p["iou"].items())
        lines.append(f"  {key}: mIoU {p['miou']:.1f}  ({iou})")
    for key, p in fp["probe"].items():
        if "source_train->target_val" in key:
            conf = ", ".join(f"{g}->{d} {v:.0f}%" for g, (d, v) in p["largest_confusion"].items())
            lines.append(f"  {key} largest confusion: {conf}")
    return "\n".join(lines)
