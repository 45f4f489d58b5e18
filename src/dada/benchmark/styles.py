"""The two domains' worlds: camera, scene statistics and object colours (:class:`Style`).

The source is SYNTHIA-RAND-like (a random camera anywhere on the street, saturated synthetic colours),
the target Cityscapes-like (a car-mounted camera, muted, jittered colours, other object statistics).
How each domain is *rendered* is in :mod:`dada.benchmark.shading`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dada.benchmark.world import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    LIGHT,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    SIGN,
    VEGETATION,
    WALL,
)


@dataclass(frozen=True)
class Style:
    """What differs between the domains' worlds: camera, scene statistics and object colours."""

    name: str
    cam_height: tuple[float, float]
    cam_pitch_deg: tuple[float, float]
    cam_yaw_deg: tuple[float, float]
    hfov_deg: tuple[float, float]
    cam_on_walk: float  # probability that the camera stands on a sidewalk
    road_half: tuple[float, float]
    walk: tuple[float, float]
    building_height: tuple[float, float]
    gap_prob: float  # side streets
    n_cars: tuple[int, int]
    n_parked: tuple[int, int]
    n_bus: tuple[int, int]
    n_people: tuple[int, int]
    n_riders: tuple[int, int]
    n_trees: tuple[int, int]
    n_poles: tuple[int, int]
    n_lights: tuple[int, int]
    n_signs: tuple[int, int]
    wall_prob: float
    fence_prob: float
    terrain_prob: float
    saturation: float  # colour palette: 1 saturated synthetic, lower muted
    far_building_prob: float
    bonnet: bool = False  # version 2: the camera's own car bonnet is in view (a car-mounted camera)


SOURCE_STYLE = Style(
    name="source",
    cam_height=(1.5, 5.0),
    cam_pitch_deg=(2.0, 15.0),
    cam_yaw_deg=(-25.0, 25.0),
    hfov_deg=(65.0, 90.0),
    cam_on_walk=0.35,
    road_half=(5.0, 9.0),
    walk=(2.5, 5.0),
    building_height=(6.0, 35.0),
    gap_prob=0.35,
    n_cars=(1, 6),
    n_parked=(0, 4),
    n_bus=(0, 2),
    n_people=(4, 14),
    n_riders=(1, 4),
    n_trees=(1, 6),
    n_poles=(2, 6),
    n_lights=(1, 3),
    n_signs=(1, 4),
    wall_prob=0.5,
    fence_prob=0.5,
    terrain_prob=0.2,
    saturation=1.0,
    far_building_prob=0.5,
)

TARGET_STYLE = Style(
    name="target",
    cam_height=(1.15, 1.35),
    cam_pitch_deg=(-1.0, 2.5),
    cam_yaw_deg=(-4.0, 4.0),
    hfov_deg=(46.0, 56.0),
    cam_on_walk=0.0,
    road_half=(4.0, 7.5),
    walk=(2.5, 4.5),
    building_height=(8.0, 22.0),
    gap_prob=0.2,
    n_cars=(1, 4),
    n_parked=(3, 10),
    n_bus=(0, 1),
    n_people=(1, 7),
    n_riders=(0, 3),
    n_trees=(2, 9),
    n_poles=(3, 8),
    n_lights=(0, 3),
    n_signs=(1, 4),
    wall_prob=0.35,
    fence_prob=0.35,
    terrain_prob=0.6,
    saturation=0.35,
    far_building_prob=0.8,
)


# Version 2 (docs/benchmark.md "Version 2", each value with its source). The target's camera is the
# Cityscapes calibration (camera.json, as Synscapes republishes it: height z 1.22 m, pitch 0.038 rad,
# yaw -0.0195 rad, fx 2262.52 px at 2048 px wide: HFOV 48.7 deg), with a little vehicle motion; the
# source's field of view is SYNTHIA's (focal 532.74 px at 1280 px wide: HFOV 100.4 deg). The source's
# height and pitch (random viewpoints, not published) and both domains' object counts are set so that the
# rendered class shares approach the published per-dataset pixel shares (m-birke/automotive-segmentation-
# datasets: SYNTHIA-RAND-CITYSCAPES and Cityscapes fine), measured with benchmarks/fingerprint.py.
TARGET_STYLE_V2 = replace(
    TARGET_STYLE,
    cam_height=(1.17, 1.27),
    cam_pitch_deg=(1.7, 2.7),
    cam_yaw_deg=(-2.1, -0.1),
    hfov_deg=(48.7, 48.7),
    walk=(2.5, 5.0),
    n_cars=(0, 3),
    n_parked=(2, 7),
    n_people=(2, 8),
    n_riders=(0, 2),
    n_trees=(6, 16),
    bonnet=True,
)

SOURCE_STYLE_V2 = replace(
    SOURCE_STYLE,
    cam_height=(1.5, 5.0),
    cam_pitch_deg=(2.0, 14.0),
    hfov_deg=(100.4, 100.4),
    cam_on_walk=0.7,
    walk=(5.0, 10.0),
    building_height=(6.0, 30.0),
    gap_prob=0.5,
    n_cars=(6, 14),
    n_parked=(4, 10),
    n_bus=(1, 4),
    n_people=(30, 60),
    n_trees=(8, 18),
    n_lights=(0, 2),
    n_signs=(0, 2),
    wall_prob=0.3,
    fence_prob=0.3,
    terrain_prob=0.0,
)


def rand_int(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def rand_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


# class base colours (RGB 0..1); the source uses them saturated, the target muted and jittered
BASE = {
    BUILDING: [
        (0.75, 0.45, 0.35),
        (0.85, 0.8, 0.65),
        (0.6, 0.6, 0.65),
        (0.8, 0.7, 0.5),
        (0.55, 0.4, 0.35),
        (0.9, 0.9, 0.85),
    ],
    WALL: [(0.7, 0.7, 0.68), (0.6, 0.55, 0.5)],
    FENCE: [(0.5, 0.45, 0.4), (0.35, 0.4, 0.35)],
    POLE: [(0.45, 0.47, 0.5)],
    LIGHT: [(0.15, 0.15, 0.12)],
    SIGN: [(0.85, 0.75, 0.1), (0.1, 0.3, 0.8), (0.85, 0.15, 0.1)],
    VEGETATION: [(0.25, 0.5, 0.15), (0.3, 0.45, 0.2), (0.2, 0.4, 0.18)],
    PERSON: [(0.2, 0.2, 0.4), (0.5, 0.1, 0.1), (0.15, 0.15, 0.15), (0.7, 0.6, 0.4), (0.3, 0.5, 0.3)],
    RIDER: [(0.8, 0.3, 0.1), (0.1, 0.1, 0.1), (0.2, 0.3, 0.7)],
    CAR: [
        (0.8, 0.1, 0.1),
        (0.1, 0.2, 0.6),
        (0.85, 0.85, 0.85),
        (0.1, 0.1, 0.1),
        (0.5, 0.5, 0.55),
        (0.2, 0.4, 0.3),
    ],
    BUS: [(0.9, 0.75, 0.1), (0.8, 0.15, 0.1), (0.9, 0.9, 0.9), (0.2, 0.4, 0.7)],
    BICYCLE: [(0.1, 0.1, 0.1), (0.6, 0.1, 0.1)],
    MOTORCYCLE: [(0.15, 0.15, 0.2), (0.5, 0.5, 0.55)],
}
SKIN = [(0.9, 0.72, 0.6), (0.6, 0.42, 0.3), (0.8, 0.6, 0.45)]


def color(rng: np.random.Generator, style: Style, label: int, choices=None) -> tuple[float, ...]:
    choices = choices if choices is not None else BASE[label]
    c = np.asarray(choices[int(rng.integers(len(choices)))], float)
    grey = float(sum(c)) / 3.0
    c = grey + (c - grey) * style.saturation * (1.25 if style.name == "source" else 1.0)
    c = c + rng.normal(0.0, 0.04 if style.name == "target" else 0.02, 3)
    return tuple(np.clip(c, 0.03, 0.97))
