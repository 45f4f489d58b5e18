"""Procedural street scenes for the built-in benchmark: scene sampling, exact geometry, two renderings.

The world is a straight street along +Z (world axes: X right, Y up, Z forward, metres), lined with
sidewalks and blocks of buildings, crossed by side streets, furnished with poles, traffic lights, signs,
trees, walls and fences, and populated with cars, buses, pedestrians and riders on bicycles and motorbikes.
Every object is a set of axis-aligned boxes, ellipsoids and masked planes, intersected exactly with the
camera rays of a pinhole camera (yaw, pitch, no roll), so each pixel gets the class of the nearest surface
and its exact metric depth (the camera z coordinate, as SYNTHIA depth and Cityscapes disparity use) from a
z-buffer. The ground plane's depth is analytic: ``Z = h / (y_n cos(pitch) + sin(pitch))`` with
``y_n = (v - c_y) / f``.

The same world rules are rendered two ways (:func:`shade_source`, :func:`shade_target`): the source
domain with flat synthetic shading and a saturated palette under a SYNTHIA-RAND-like random camera; the
target domain "photographic" (textures, sun and cast shadows, haze, blur, vignetting, colour response and
sensor noise) under a Cityscapes-like car-mounted camera with different scene statistics.
Everything is NumPy; randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# SYNTHIA raw ids (dada.data.classes.SYNTHIA_IDS) used by the generator
VOID, SKY, BUILDING, ROAD, SIDEWALK, FENCE, VEGETATION, POLE, CAR, SIGN, PERSON, BICYCLE, MOTORCYCLE = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
)
TERRAIN, LIGHT, RIDER, BUS, WALL, LANEMARKING = 16, 15, 17, 19, 21, 22
#: raw id of the target camera's own car bonnet (Cityscapes "ego vehicle"); never in the source
EGO = 254

# materials: how a primitive is textured
PLAIN, FACADE, CAR_BODY, CAR_CABIN, BUS_BODY, FOLIAGE, GROUND, FENCE_MAT, SIGN_FACE, LAMP = range(10)

NEAR = 0.3  # metres: the near clipping plane
FAR = 655.35  # metres: SYNTHIA's 16-bit centimetre range; sky depth


# ---------------------------------------------------------------------------------------------- camera
@dataclass
class Camera:
    height: float  # metres above the road
    pitch: float  # radians, positive looks down
    yaw: float  # radians, positive turns right
    x: float  # lateral position, metres
    hfov: float  # horizontal field of view, radians
    size: tuple[int, int]  # (H, W)

    @property
    def focal(self) -> float:
        return self.size[1] / 2.0 / math.tan(self.hfov / 2.0)

    @property
    def center(self) -> np.ndarray:
        return np.array([self.x, self.height, 0.0])

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World vectors of the camera's right, down and forward axes."""
        sp, cp, sy, cy = math.sin(self.pitch), math.cos(self.pitch), math.sin(self.yaw), math.cos(self.yaw)
        forward = np.array([sy * cp, -sp, cy * cp])
        right = np.array([cy, 0.0, -sy])
        down = np.cross(right, forward)
        return right, down, forward

    def rays(self) -> np.ndarray:
        """3×H×W world direction of each pixel centre's ray, scaled so its camera-z component is 1."""
        h, w = self.size
        f = self.focal
        xn = (np.arange(w, dtype=np.float64) + 0.5 - w / 2.0) / f
        yn = (np.arange(h, dtype=np.float64) + 0.5 - h / 2.0) / f
        right, down, forward = self.basis()
        return (
            right[:, None, None] * xn[None, None, :]
            + down[:, None, None] * yn[None, :, None]
            + forward[:, None, None]
        )

    def ground_depth(self) -> np.ndarray:
        """H×W analytic depth of the road plane (inf above the horizon): h / (y_n cos θ + sin θ)."""
        h, w = self.size
        yn = (np.arange(h, dtype=np.float64) + 0.5 - h / 2.0) / self.focal
        denom = yn * math.cos(self.pitch) + math.sin(self.pitch)
        with np.errstate(divide="ignore"):
            z = np.where(denom > 0, self.height / np.where(denom > 0, denom, 1.0), np.inf)
        return np.broadcast_to(z[:, None], (h, w))

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u, v) and camera z of N×3 world points."""
        right, down, forward = self.basis()
        rel = points - self.center
        z = rel @ forward
        f = self.focal
        u = self.size[1] / 2.0 + f * (rel @ right) / z
        v = self.size[0] / 2.0 + f * (rel @ down) / z
        return np.stack([u, v], axis=1), z


# ------------------------------------------------------------------------------------------- primitives
@dataclass
class Prim:
    kind: str  # box | ellipsoid | plane
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    label: int
    color: tuple[float, float, float]
    material: int = PLAIN
    inst: int = 0
    shadow: bool = True
    axis: int = 0  # plane: its normal axis (plane at lo[axis])
    pattern: tuple = ()  # plane: mask parameters


@dataclass
class Scene:
    camera: Camera
    prims: list[Prim] = field(default_factory=list)
    road_half: float = 7.0  # road from -road_half to +road_half
    walk: float = 4.0  # sidewalk width
    lanes: int = 2  # lanes per direction
    cross: list[tuple[float, float]] = field(default_factory=list)  # Z ranges of side streets
    zebra: list[tuple[float, float]] = field(default_factory=list)  # Z ranges of crossings
    terrain: bool = False  # grass strip between sidewalk and buildings

    def add(self, kind, lo, hi, label, color, **kw) -> None:
        self.prims.append(
            Prim(kind, tuple(map(float, lo)), tuple(map(float, hi)), label, tuple(map(float, color)), **kw)
        )


# ------------------------------------------------------------------------------------------- geometry
@dataclass
class Geometry:
    label: np.ndarray  # H×W uint8 raw SYNTHIA id
    depth: np.ndarray  # H×W float64 metres (FAR for sky)
    prim: np.ndarray  # H×W int32 primitive index; -1 ground, -2 sky
    inst: np.ndarray  # H×W uint16 instance id
    normal: np.ndarray  # H×W×3 float32 world normal
    world: np.ndarray  # H×W×3 float64 world position of the hit (sky: centre + FAR·ray)
    rays: np.ndarray  # 3×H×W
    focal: float  # pixels


_CORNER_BITS = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], bool)
_EDGES = [(i, i | bit) for i in range(8) for bit in (1, 2, 4) if i | bit != i]


def _region(cam: Camera, lo, hi, basis=None) -> tuple[int, int, int, int, float] | None:
    """Pixel bounding box (r0, r1, c0, c1) of the part of box [lo, hi] in front of the near plane, and
    a lower bound of the depth of that part."""
    right, down, forward = basis if basis is not None else cam.basis()
    corners = np.where(_CORNER_BITS, np.asarray(hi, float), np.asarray(lo, float))
    rel = corners - cam.center
    z = rel @ forward
    if z.max() <= NEAR:
        return None
    if z.min() <= NEAR:  # clip: keep the corners in front and add the edges' crossings of the near plane
        extra = [
            rel[i] + (NEAR - z[i]) / (z[j] - z[i]) * (rel[j] - rel[i])
            for i, j in _EDGES
            if (z[i] - NEAR) * (z[j] - NEAR) < 0
        ]
        rel = np.concatenate([rel[z > NEAR], np.array(extra)])
        z = np.maximum(rel @ forward, NEAR * 0.999)
    f = cam.focal
    h, w = cam.size
    u = w / 2.0 + f * (rel @ right) / z
    v = h / 2.0 + f * (rel @ down) / z
    c0, c1 = int(max(0, math.floor(u.min()))), int(min(w, math.ceil(u.max()) + 1))
    r0, r1 = int(max(0, math.floor(v.min()))), int(min(h, math.ceil(v.max()) + 1))
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1, float(z.min())


def _plane_mask(pattern: tuple, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Masks of masked planes, in the plane's two coordinates (a: the first other axis, b: the second)."""
    kind = pattern[0]
    if kind == "disc":  # wheel: ring of radius r, thickness t around (ca, cb)
        _, ca, cb, r, t = pattern
        d = np.hypot(a - ca, b - cb)
        return (d <= r) & ((d >= r - t) | (d <= t * 0.8))
    if kind == "bars":  # fence: vertical bars every `step` along b, rails at given heights in a
        _, step, width, rails = pattern
        m = np.mod(b, step) < width
        for y0, y1 in rails:
            m |= (a >= y0) & (a <= y1)
        return m
    raise ValueError(kind)


class Canvas:
    """A z-buffer over one camera: primitives are drawn where they are nearer than what is there."""

    def __init__(self, cam: Camera):
        self.cam = cam
        h, w = cam.size
        self.rays = cam.rays()
        self.c = cam.center
        self.basis = cam.basis()
        self.depth = np.full((h, w), np.inf)
        self.label = np.zeros((h, w), np.uint8)
        self.prim = np.full((h, w), -2, np.int32)
        self.inst = np.zeros((h, w), np.uint16)
        self.normal = np.zeros((h, w, 3), np.float32)

    def _write(self, sl, m, t, prim: Prim, index: int, normal) -> None:
        if not m.any():
            return
        self.depth[sl][m] = t[m]
        self.label[sl][m] = prim.label
        self.prim[sl][m] = index
        self.inst[sl][m] = prim.inst
        self.normal[sl][m] = normal if np.ndim(normal) == 1 else normal[m]

    def face(self, axis: int, value: float, lo, hi, sl, prim: Prim, index: int, sign: float) -> None:
        r = self.rays[axis][sl]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (value - self.c[axis]) / r
        m = (t > NEAR) & (t < self.depth[sl])
        a1, a2 = [k for k in range(3) if k != axis]
        p1 = self.c[a1] + t * self.rays[a1][sl]
        p2 = self.c[a2] + t * self.rays[a2][sl]
        m &= (p1 >= lo[a1]) & (p1 <= hi[a1]) & (p2 >= lo[a2]) & (p2 <= hi[a2])
        if prim.pattern:
            # masked planes: pattern coordinates are (height Y, horizontal) for vertical planes
            if axis == 1:
                m &= _plane_mask(prim.pattern, p1, p2)
            else:
                horiz = p1 if a1 != 1 else p2
                m &= _plane_mask(prim.pattern, self.c[1] + t * self.rays[1][sl], horiz)
        n = np.zeros(3, np.float32)
        n[axis] = sign
        self._write(sl, m, t, prim, index, n)

    def draw(self, prim: Prim, index: int, reg=None) -> None:
        reg = reg if reg is not None else _region(self.cam, prim.lo, prim.hi, self.basis)
        if reg is None:
            return
        r0, r1, c0, c1, zmin = reg
        sl = (slice(r0, r1), slice(c0, c1))
        if self.depth[sl].max() < zmin:  # hidden behind what is already drawn
            return
        lo, hi = prim.lo, prim.hi
        if prim.kind == "box":
            for axis in range(3):
                if self.c[axis] > hi[axis]:
                    self.face(axis, hi[axis], lo, hi, sl, prim, index, 1.0)
                elif self.c[axis] < lo[axis]:
                    self.face(axis, lo[axis], lo, hi, sl, prim, index, -1.0)
        elif prim.kind == "plane":
            sign = 1.0 if self.c[prim.axis] > lo[prim.axis] else -1.0
            self.face(prim.axis, lo[prim.axis], lo, hi, sl, prim, index, sign)
        elif prim.kind == "ellipsoid":
            centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
            radii = (np.asarray(hi) - np.asarray(lo)) / 2.0
            rx, ry, rz = (self.rays[k][sl] / radii[k] for k in range(3))
            o = (self.c - centre) / radii
            a = rx * rx + ry * ry + rz * rz
            b = rx * o[0] + ry * o[1] + rz * o[2]
            disc = b * b - a * (o @ o - 1.0)
            with np.errstate(invalid="ignore"):
                t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
            m = (disc > 0) & (t > NEAR) & (t < self.depth[sl])
            if not m.any():
                return
            n = np.stack(
                [(self.c[k] + t * self.rays[k][sl] - centre[k]) / radii[k] ** 2 for k in range(3)], axis=-1
            )
            n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
            self._write(sl, m, t, prim, index, n.astype(np.float32))
        else:
            raise ValueError(prim.kind)


def _ground_label(scene: Scene, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Raw ids of road-plane points: road, lane markings, sidewalks, terrain, side streets, crossings."""
    rh, walk = scene.road_half, scene.walk
    ax = np.abs(x)
    lab = np.full(x.shape, SIDEWALK, np.uint8)
    lab[ax <= rh] = ROAD
    if scene.terrain:
        lab[(ax > rh + walk * 0.55) & (ax <= rh + walk)] = TERRAIN
    for z0, z1 in scene.cross:
        lab[(z >= z0) & (z <= z1) & (ax > rh)] = ROAD
    lane = rh / scene.lanes
    on_road = ax <= rh
    # edge lines, centre line (double, solid), dashed lane lines
    paint = on_road & (np.abs(ax - (rh - 0.35)) < 0.08)
    paint |= np.abs(ax - 0.12) < 0.06
    for k in range(1, scene.lanes):
        paint |= (np.abs(ax - k * lane) < 0.07) & (np.mod(z, 9.0) < 3.0)
    for z0, z1 in scene.zebra:
        paint |= on_road & (z >= z0) & (z <= z1) & (np.mod(x, 1.0) < 0.5) & (ax < rh - 0.5)
    for z0, z1 in scene.cross:  # no lines across the side street
        paint &= ~((z >= z0) & (z <= z1) & (ax > rh - 0.5))
    lab[paint] = LANEMARKING
    return lab


def render_geometry(scene: Scene) -> Geometry:
    """Exact per-pixel class, depth, primitive, instance, normal and world position of ``scene``."""
    cam = scene.camera
    cv = Canvas(cam)
    rays = cv.rays
    # the road plane Y = 0, analytic
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -cam.height / rays[1]
    ground = (rays[1] < 0) & (t < FAR)
    t = np.where(ground, t, np.inf)
    cv.depth[ground] = t[ground]
    cv.prim[ground] = -1
    cv.normal[ground] = (0.0, 1.0, 0.0)
    gx = cam.x + t * rays[0]
    gz = t * rays[2]
    cv.label[ground] = _ground_label(scene, gx[ground], gz[ground])
    # near to far, so that hidden primitives are skipped (the z-buffer makes the order irrelevant, except
    # for exact ties, which this fixed order settles deterministically)
    regions = [(_region(cam, p.lo, p.hi, cv.basis), i) for i, p in enumerate(scene.prims)]
    for reg, index in sorted(((r, i) for r, i in regions if r is not None), key=lambda ri: (ri[0][4], ri[1])):
        cv.draw(scene.prims[index], index, reg)
    sky = ~np.isfinite(cv.depth)
    cv.label[sky] = SKY
    cv.depth[sky] = FAR
    world = cv.c[None, None, :] + cv.depth[..., None] * np.moveaxis(rays, 0, -1)
    return Geometry(cv.label, cv.depth, cv.prim, cv.inst, cv.normal, world, rays, cam.focal)


# --------------------------------------------------------------------------------------- scene sampling
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


def _ri(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def _ru(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
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


def _color(rng: np.random.Generator, style: Style, label: int, choices=None) -> tuple[float, ...]:
    choices = choices if choices is not None else BASE[label]
    c = np.asarray(choices[int(rng.integers(len(choices)))], float)
    grey = float(sum(c)) / 3.0
    c = grey + (c - grey) * style.saturation * (1.25 if style.name == "source" else 1.0)
    c = c + rng.normal(0.0, 0.04 if style.name == "target" else 0.02, 3)
    return tuple(np.clip(c, 0.03, 0.97))


def sample_scene(rng: np.random.Generator, style: Style, size: tuple[int, int]) -> Scene:
    """A random street following the shared world rules, with ``style``'s camera and statistics."""
    road_half = _ru(rng, style.road_half)
    walk = _ru(rng, style.walk)
    lanes = 1 if road_half < 5.5 else 2
    if rng.random() < style.cam_on_walk:
        cam_x = float(rng.choice([-1, 1])) * (road_half + rng.uniform(0.5, walk - 0.5))
    else:
        lane = road_half / lanes
        cam_x = float(rng.uniform(0.3 * lane, lanes * lane - 0.5 * lane)) * (
            1 if style.name == "target" else float(rng.choice([-1, 1]))
        )
    cam = Camera(
        height=_ru(rng, style.cam_height),
        pitch=math.radians(_ru(rng, style.cam_pitch_deg)),
        yaw=math.radians(_ru(rng, style.cam_yaw_deg)),
        x=cam_x,
        hfov=math.radians(_ru(rng, style.hfov_deg)),
        size=size,
    )
    scene = Scene(cam, road_half=road_half, walk=walk, lanes=lanes, terrain=rng.random() < style.terrain_prob)
    inst = [0]

    def new_inst() -> int:
        inst[0] += 1
        return inst[0]

    # side streets and crossings
    z = float(rng.uniform(15, 60))
    while z < 160:
        if rng.random() < style.gap_prob * 2:
            width = float(rng.uniform(9, 16))
            scene.cross.append((z, z + width))
            if rng.random() < 0.6:
                scene.zebra.append((z - 4.0, z - 1.0))
            z += width
        z += float(rng.uniform(40, 90))
    curb = road_half + walk

    def in_cross(z0: float, z1: float, margin: float = 0.0) -> bool:
        return any(z1 > a - margin and z0 < b + margin for a, b in scene.cross)

    # buildings: blocks on both sides, leaving side streets open
    for side in (-1, 1):
        z = float(rng.uniform(-25, -5))
        setback = float(rng.uniform(0.0, 1.5))
        while z < 170:
            length = float(rng.uniform(8, 26))
            z1 = z + length
            for a, b in scene.cross:
                if z < b and z1 > a:
                    z1 = a if z < a else z
            if z1 - z > 2:
                height = _ru(rng, style.building_height)
                x_front = curb + setback + float(rng.uniform(0, 0.8))
                lo = (side * x_front if side > 0 else -x_front - 12, 0, z)
                hi = (x_front + 12 if side > 0 else -x_front, height, z1)
                scene.add(
                    "box", lo, hi, BUILDING, _color(rng, style, BUILDING), material=FACADE, inst=new_inst()
                )
            nz = z1 if z1 > z else z + 0.1
            for a, b in scene.cross:
                if a <= nz < b + 0.1:
                    nz = b + float(rng.uniform(0.5, 2))
            z = nz + (float(rng.uniform(0.5, 3)) if rng.random() < 0.2 else 0.0)
    if rng.random() < style.far_building_prob:  # the end of the street
        zf = float(rng.uniform(120, 220))
        scene.add(
            "box",
            (-curb - 40, 0, zf),
            (curb + 40, _ru(rng, style.building_height) * 1.3, zf + 10),
            BUILDING,
            _color(rng, style, BUILDING),
            material=FACADE,
            inst=new_inst(),
        )

    # walls and fences along the back of the sidewalk, in front of the buildings
    for label, prob in ((WALL, style.wall_prob), (FENCE, style.fence_prob)):
        for _ in range(3):
            if rng.random() >= prob:
                continue
            side = float(rng.choice([-1, 1]))
            z0 = float(rng.uniform(3, 70))
            z1 = z0 + float(rng.uniform(5, 25))
            if in_cross(z0, z1, 2):
                continue
            x = side * (curb - 0.3)
            height = float(rng.uniform(0.8, 2.2))
            if label == WALL:
                scene.add(
                    "box",
                    (x - 0.15, 0, z0),
                    (x + 0.15, height, z1),
                    WALL,
                    _color(rng, style, WALL),
                    inst=new_inst(),
                )
            else:
                scene.add(
                    "plane",
                    (x, 0, z0),
                    (x, height, z1),
                    FENCE,
                    _color(rng, style, FENCE),
                    material=FENCE_MAT,
                    axis=0,
                    inst=new_inst(),
                    shadow=False,
                    pattern=("bars", 0.35, 0.08, ((height - 0.12, height), (0.25, 0.35))),
                )

    def walk_x(side: float, inner: float = 0.5) -> float:
        return side * (road_half + float(rng.uniform(inner, max(inner + 0.1, walk - 0.5))))

    # poles, traffic lights, signs at the curb
    def pole_at(x, z, height, width=0.14) -> int:
        i = new_inst()
        scene.add(
            "box",
            (x - width / 2, 0, z - width / 2),
            (x + width / 2, height, z + width / 2),
            POLE,
            _color(rng, style, POLE),
            inst=i,
        )
        return i

    for _ in range(_ri(rng, style.n_poles)):
        side = float(rng.choice([-1, 1]))
        pole_at(side * (road_half + 0.4), float(rng.uniform(4, 90)), float(rng.uniform(4, 9)))
    for _ in range(_ri(rng, style.n_lights)):
        side = float(rng.choice([-1, 1]))
        z = float(rng.uniform(8, 70))
        if scene.cross and rng.random() < 0.7:
            z = scene.cross[int(rng.integers(len(scene.cross)))][0] - float(rng.uniform(0.5, 2.0))
        x = side * (road_half + 0.4)
        height = float(rng.uniform(2.8, 4.5))
        pole_at(x, z, height)
        i = new_inst()
        scene.add(
            "box",
            (x - 0.17, height - 0.1, z - 0.35),
            (x + 0.17, height + 0.85, z - 0.07),
            LIGHT,
            _color(rng, style, LIGHT),
            material=LAMP,
            inst=i,
        )
        if rng.random() < 0.5:  # a light hanging over the road on an arm
            arm = float(rng.uniform(2.5, road_half))
            x2 = x - side * arm
            scene.add(
                "box",
                (min(x, x2), height + 0.9, z - 0.06),
                (max(x, x2), height + 1.0, z + 0.06),
                POLE,
                _color(rng, style, POLE),
                inst=i,
            )
            scene.add(
                "box",
                (x2 - 0.17, height + 0.05, z - 0.35),
                (x2 + 0.17, height + 0.9, z - 0.07),
                LIGHT,
                _color(rng, style, LIGHT),
                material=LAMP,
                inst=new_inst(),
            )
    for _ in range(_ri(rng, style.n_signs)):
        side = float(rng.choice([-1, 1]))
        z = float(rng.uniform(5, 70))
        x = side * (road_half + 0.5)
        height = float(rng.uniform(2.0, 3.0))
        pole_at(x, z, height, 0.08)
        s = float(rng.uniform(0.5, 0.9))
        if rng.random() < 0.5:  # round-ish / square plate facing the camera
            scene.add(
                "box",
                (x - s / 2, height - 0.1, z - 0.1),
                (x + s / 2, height + s - 0.1, z - 0.05),
                SIGN,
                _color(rng, style, SIGN),
                material=SIGN_FACE,
                inst=new_inst(),
            )
        else:  # wide direction sign
            scene.add(
                "box",
                (x - s, height, z - 0.1),
                (x + s, height + s * 0.6, z - 0.05),
                SIGN,
                _color(rng, style, SIGN),
                material=SIGN_FACE,
                inst=new_inst(),
            )

    # trees on the sidewalk (trunk and canopy are vegetation) and hedges
    for _ in range(_ri(rng, style.n_trees)):
        side = float(rng.choice([-1, 1]))
        z = float(rng.uniform(3, 90))
        x = walk_x(side, 1.0)
        trunk = float(rng.uniform(2.0, 3.5))
        i = new_inst()
        col = _color(rng, style, VEGETATION)
        scene.add(
            "box",
            (x - 0.12, 0, z - 0.12),
            (x + 0.12, trunk, z + 0.12),
            VEGETATION,
            tuple(np.asarray(col) * 0.55 + np.array([0.15, 0.08, 0.0])),
            inst=i,
        )
        r = float(rng.uniform(1.3, 3.0))
        rv = r * float(rng.uniform(0.8, 1.4))
        scene.add(
            "ellipsoid",
            (x - r, trunk - 0.3, z - r),
            (x + r, trunk - 0.3 + 2 * rv, z + r),
            VEGETATION,
            col,
            material=FOLIAGE,
            inst=i,
        )
    if rng.random() < 0.4:
        side = float(rng.choice([-1, 1]))
        z0 = float(rng.uniform(3, 40))
        x = side * (curb - 0.6)
        scene.add(
            "box",
            (x - 0.4, 0, z0),
            (x + 0.4, float(rng.uniform(0.8, 1.6)), z0 + float(rng.uniform(4, 20))),
            VEGETATION,
            _color(rng, style, VEGETATION),
            material=FOLIAGE,
            inst=new_inst(),
        )

    lane_w = road_half / lanes

    def lane_x(parked: bool) -> float:
        side = float(rng.choice([-1, 1]))
        if parked:
            return side * (road_half - 1.1)
        k = int(rng.integers(lanes))
        return side * (k + 0.5) * lane_w + float(rng.normal(0, 0.2))

    # vehicles: a car is a body and a cabin; a bus one tall box
    def car(x: float, z: float) -> None:
        i = new_inst()
        col = _color(rng, style, CAR)
        w, length = float(rng.uniform(1.6, 1.9)), float(rng.uniform(3.8, 4.8))
        scene.add(
            "box", (x - w / 2, 0.2, z), (x + w / 2, 0.95, z + length), CAR, col, material=CAR_BODY, inst=i
        )
        scene.add(
            "box",
            (x - w / 2 + 0.1, 0.95, z + 0.9),
            (x + w / 2 - 0.1, 1.45, z + length - 0.9),
            CAR,
            col,
            material=CAR_CABIN,
            inst=i,
        )
        for dz in (0.7, length - 0.7):  # wheels fill the gap under the body
            scene.add(
                "box",
                (x - w / 2 + 0.05, 0, z + dz - 0.32),
                (x + w / 2 - 0.05, 0.4, z + dz + 0.32),
                CAR,
                (0.05, 0.05, 0.05),
                inst=i,
            )

    cars = []
    for parked, count in ((False, _ri(rng, style.n_cars)), (True, _ri(rng, style.n_parked))):
        for _ in range(count):
            x = lane_x(parked)
            z = float(rng.uniform(4, 70))
            if any(abs(x - cx) < 2.2 and abs(z - cz) < 6 for cx, cz in cars):
                continue
            if parked and in_cross(z - 5, z + 5):
                continue
            cars.append((x, z))
            car(x, z)
    for _ in range(_ri(rng, style.n_bus)):
        x = lane_x(False)
        z = float(rng.uniform(8, 70))
        if any(abs(x - cx) < 3 and abs(z - cz) < 14 for cx, cz in cars):
            continue
        cars.append((x, z))
        i = new_inst()
        w, length, height = 2.5, float(rng.uniform(10, 13)), float(rng.uniform(3.0, 3.4))
        scene.add(
            "box",
            (x - w / 2, 0.3, z),
            (x + w / 2, height, z + length),
            BUS,
            _color(rng, style, BUS),
            material=BUS_BODY,
            inst=i,
        )
        for dz in (1.8, length - 2.2):
            scene.add(
                "box",
                (x - w / 2 + 0.05, 0, z + dz - 0.5),
                (x + w / 2 - 0.05, 0.5, z + dz + 0.5),
                BUS,
                (0.05, 0.05, 0.05),
                inst=i,
            )

    # people: legs, torso, head
    def person(x: float, z: float, label: int, base_y: float = 0.0, sitting: bool = False) -> None:
        i = new_inst()
        height = float(rng.uniform(1.55, 1.9))
        col = _color(rng, style, label)
        legs = _color(rng, style, PERSON, [(0.15, 0.15, 0.25), (0.25, 0.25, 0.25), (0.4, 0.35, 0.3)])
        leg_h = 0.47 * height
        if not sitting:
            scene.add(
                "box", (x - 0.17, base_y, z - 0.1), (x + 0.17, base_y + leg_h, z + 0.1), label, legs, inst=i
            )
            y0 = base_y + leg_h
        else:
            scene.add(
                "box",
                (x - 0.2, base_y - 0.35, z - 0.15),
                (x + 0.2, base_y + 0.1, z + 0.35),
                label,
                legs,
                inst=i,
            )
            y0 = base_y + 0.1
        torso = 0.33 * height
        scene.add("box", (x - 0.22, y0, z - 0.13), (x + 0.22, y0 + torso, z + 0.13), label, col, inst=i)
        head = 0.12 * height
        scene.add(
            "ellipsoid",
            (x - head * 0.8, y0 + torso, z - head * 0.8),
            (x + head * 0.8, y0 + torso + 2 * head, z + head * 0.8),
            label,
            _color(rng, style, label, SKIN),
            inst=i,
            shadow=False,
        )

    for _ in range(_ri(rng, style.n_people)):
        if rng.random() < 0.8:
            x = walk_x(float(rng.choice([-1, 1])))
        else:  # crossing the road
            x = float(rng.uniform(-road_half, road_half))
        person(x, float(rng.uniform(3, 45)), PERSON)

    # riders on bicycles and motorbikes, in the road along the curb
    for _ in range(_ri(rng, style.n_riders)):
        x = lane_x(False) if rng.random() < 0.4 else float(rng.choice([-1, 1])) * (road_half - 0.8)
        z = float(rng.uniform(4, 45))
        if any(abs(x - cx) < 2.0 and -2 < z - cz < 6 for cx, cz in cars):
            continue
        motor = rng.random() < 0.45
        label = MOTORCYCLE if motor else BICYCLE
        i = new_inst()
        col = _color(rng, style, label)
        r = 0.33 if motor else 0.35
        length = 1.9 if motor else 1.7
        for zc in (z + r, z + length - r):
            scene.add(
                "plane",
                (x, 0, zc - r),
                (x, 2 * r, zc + r),
                label,
                col,
                axis=0,
                inst=i,
                shadow=False,
                pattern=("disc", r, zc, r, 0.07 if not motor else 0.14),
            )
        if motor:
            scene.add("box", (x - 0.2, 0.35, z + 0.4), (x + 0.2, 0.85, z + length - 0.4), label, col, inst=i)
        else:
            scene.add(
                "box", (x - 0.03, 0.35, z + 0.35), (x + 0.03, 0.85, z + length - 0.35), label, col, inst=i
            )
        person(x, z + length / 2 - 0.1, RIDER, base_y=0.85, sitting=True)
    return scene


# ------------------------------------------------------------------------------------------- shading
def _noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] over an image, ``cells`` cells across the height."""
    h, w = size
    gh, gw = max(2, cells), max(2, int(round(cells * w / h)))
    grid = rng.uniform(-1, 1, (gh + 1, gw + 1)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _prim_table(scene: Scene, attr: str, default) -> np.ndarray:
    """Per-pixel lookup table of a primitive attribute; index 0 is sky (-2), 1 is ground (-1)."""
    values = [default, default] + [getattr(p, attr) for p in scene.prims]
    return np.asarray(values)


def _facade_coords(geo: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal coordinate along a vertical face and the height, from the hit position and normal."""
    horiz = np.where(np.abs(geo.normal[..., 0]) > 0.5, geo.world[..., 2], geo.world[..., 0])
    return horiz, geo.world[..., 1]


SOURCE_GROUND = {
    ROAD: (0.4, 0.39, 0.42),
    SIDEWALK: (0.7, 0.62, 0.66),
    LANEMARKING: (0.95, 0.95, 0.95),
    TERRAIN: (0.45, 0.7, 0.3),
}
TARGET_GROUND = {
    ROAD: (0.3, 0.3, 0.31),
    SIDEWALK: (0.52, 0.5, 0.47),
    LANEMARKING: (0.8, 0.8, 0.76),
    TERRAIN: (0.35, 0.4, 0.22),
}


def _base_rgb(scene: Scene, geo: Geometry, ground: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel base colour and material from the primitives (ground by class, sky zero)."""
    idx = geo.prim + 2
    colors = np.zeros((len(scene.prims) + 2, 3))
    colors[2:] = [p.color for p in scene.prims] if scene.prims else np.zeros((0, 3))
    rgb = colors[idx]
    g = geo.prim == -1
    for label, col in ground.items():
        rgb[g & (geo.label == label)] = col
    mats = np.array([PLAIN, GROUND] + [p.material for p in scene.prims])
    return rgb, mats[idx]


def _windows(geo: Geometry, mat: np.ndarray, period: tuple[float, float] = (3.2, 3.0)) -> np.ndarray:
    horiz, y = _facade_coords(geo)
    vertical = np.abs(geo.normal[..., 1]) < 0.5
    wy = np.mod(y, period[0]) / period[0]
    wx = np.mod(horiz, period[1]) / period[1]
    return (mat == FACADE) & vertical & (y > 2.5) & (wy > 0.3) & (wy < 0.8) & (wx > 0.25) & (wx < 0.75)


def shade_source(scene: Scene, geo: Geometry, rng: np.random.Generator) -> np.ndarray:
    """SYNTHIA-like rendering: flat shading of saturated palette colours, plain sky, no noise. RGB uint8."""
    rgb, mat = _base_rgb(scene, geo, SOURCE_GROUND)
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(30), np.radians(70))
    light = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    lam = np.clip(geo.normal @ light.astype(np.float32), 0, 1)
    ambient = float(rng.uniform(0.45, 0.65))
    rgb = rgb * (ambient + (1 - ambient) * lam[..., None])
    rgb[_windows(geo, mat)] = (0.55, 0.75, 0.9)
    cabin = (mat == CAR_CABIN) & (np.abs(geo.normal[..., 1]) < 0.5)
    rgb[cabin] = (0.3, 0.45, 0.6)
    bus_win = (
        (mat == BUS_BODY)
        & (np.abs(geo.normal[..., 1]) < 0.5)
        & (geo.world[..., 1] > 1.6)
        & (geo.world[..., 1] < 2.6)
    )
    rgb[bus_win] = (0.3, 0.45, 0.6)
    lamp = (mat == LAMP) & (np.mod(geo.world[..., 1] * 3.5, 1.0) < 0.55) & (np.abs(geo.normal[..., 2]) > 0.5)
    rgb[lamp] = (0.9, 0.2, 0.1) * np.ones(3)
    sky = geo.prim == -2
    top = np.linspace(0, 1, geo.label.shape[0])[:, None, None]
    sky_col = np.array([0.45, 0.65, 0.95]) * (1 - 0.3 * top) + np.array([0.8, 0.85, 0.95]) * 0.3 * top
    rgb = np.where(sky[..., None], np.broadcast_to(sky_col, rgb.shape), rgb)
    rgb = rgb * float(rng.uniform(0.85, 1.15)) * rng.uniform(0.95, 1.05, 3)  # per-image exposure and tint
    out = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return (out // 8) * 8 + 4  # posterised, palette-like


def _shadow(scene: Scene, geo: Geometry, sun: np.ndarray, step: int = 2) -> np.ndarray:
    """H×W 0/1 cast shadow (computed at 1/step resolution, smoothed back up) from boxes, toward ``sun``.

    A point is in shadow when its ray toward the sun crosses a primitive's bounding box; each primitive is
    tested only on the pixels its shadow volume can reach (the image box of the primitive and its
    projection onto the road along the sun direction)."""
    h, w = geo.label.shape
    p = (geo.world[::step, ::step] + 0.03 * geo.normal[::step, ::step]).astype(np.float32)
    valid = geo.prim[::step, ::step] != -2
    shade = np.zeros(valid.shape, bool)
    inv = (1.0 / np.where(np.abs(sun) < 1e-6, 1e-6, sun)).astype(np.float32)
    shift = np.array([sun[0] / sun[1], 0.0, sun[2] / sun[1]])
    basis = scene.camera.basis()
    for prim in scene.prims:
        if not prim.shadow or prim.kind == "plane":
            continue
        lo, hi = np.asarray(prim.lo), np.asarray(prim.hi)
        ground_lo, ground_hi = lo - hi[1] * shift, hi - hi[1] * shift
        reg = _region(
            scene.camera,
            np.minimum(lo, np.minimum(ground_lo, ground_hi)) * (1, 0, 1),
            np.maximum(hi, np.maximum(ground_lo, ground_hi)) * (1, 0, 1) + (0, hi[1], 0),
            basis,
        )
        if reg is None:
            continue
        r0, r1, c0, c1, _ = reg
        sl = (slice(r0 // step, -(-r1 // step)), slice(c0 // step, -(-c1 // step)))
        q = p[sl]
        k0 = np.zeros(q.shape[:2], np.float32)
        k1 = np.full(q.shape[:2], np.inf, np.float32)
        for a in range(3):
            ka = (np.float32(lo[a]) - q[..., a]) * inv[a]
            kb = (np.float32(hi[a]) - q[..., a]) * inv[a]
            np.maximum(k0, np.minimum(ka, kb), out=k0)
            np.minimum(k1, np.maximum(ka, kb), out=k1)
        shade[sl] |= k0 < k1
    shade &= valid
    return cv2.resize(shade.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def shade_target(scene: Scene, geo: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Cityscapes-like photographic rendering. RGB uint8."""
    h, w = geo.label.shape
    rgb, mat = _base_rgb(scene, geo, TARGET_GROUND)
    rgb = rgb.astype(np.float32)
    # textures: per-object jitter is in the colours; add multi-scale noise, facade details, paving, asphalt
    fine = _noise(rng, (h, w), h // 2)
    coarse = _noise(rng, (h, w), 6)
    world = geo.world.astype(np.float32)
    ground = geo.prim == -1
    tex = 1.0 + 0.06 * coarse + 0.05 * fine
    walk = ground & (geo.label == SIDEWALK)
    tiles = (np.mod(world[..., 0], 0.6) < 0.05) | (np.mod(world[..., 2], 0.6) < 0.05)
    tex = np.where(walk & tiles, tex * 0.8, tex)
    road = ground & (geo.label == ROAD)
    tracks = np.abs(np.mod(world[..., 0] + 0.9, scene.road_half / scene.lanes) - 0.9) < 0.35
    tex = np.where(road & tracks, tex * 0.88, tex)
    foliage = mat == FOLIAGE
    tex = np.where(foliage, tex * (1.0 + 0.35 * fine * np.sign(fine) + 0.2 * coarse), tex)
    _, y = _facade_coords(geo)
    floors = (mat == FACADE) & (np.mod(y, 3.2) < 0.18) & (np.abs(geo.normal[..., 1]) < 0.5)
    tex = np.where(floors, tex * 0.85, tex)
    rgb = rgb * tex[..., None]
    win = _windows(geo, mat)
    glass = np.array([0.12, 0.15, 0.2]) + 0.12 * coarse[..., None] * np.array([1.0, 1.0, 1.1])
    rgb = np.where(win[..., None], glass, rgb)
    vertical = np.abs(geo.normal[..., 1]) < 0.5
    cabin = (mat == CAR_CABIN) & vertical
    rgb[cabin] = (0.08, 0.09, 0.11)
    bus_win = (mat == BUS_BODY) & vertical & (world[..., 1] > 1.6) & (world[..., 1] < 2.6)
    rgb[bus_win] = (0.08, 0.09, 0.11)
    lamp = (mat == LAMP) & (np.mod(world[..., 1] * 3.5, 1.0) < 0.55) & (np.abs(geo.normal[..., 2]) > 0.5)
    rgb[lamp] = (0.6, 0.5, 0.2)
    # sun, sky light and cast shadows
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(20), np.radians(60))
    sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    strength = float(rng.uniform(0.3, 1.0))  # overcast .. sunny
    lam = np.clip(geo.normal @ sun.astype(np.float32), 0, 1)
    shadow = _shadow(scene, geo, sun) if strength > 0.45 else np.zeros((h, w), np.float32)
    direct = lam * (1 - shadow) * strength
    light = 0.45 + 0.2 * (1 - strength) + 0.9 * direct
    sun_col = np.array([1.0, 0.96, 0.88])
    rgb = rgb * light[..., None] * sun_col
    # sky with clouds
    sky = geo.prim == -2
    v = (np.arange(h) / h)[:, None, None]
    zenith = np.array([0.45, 0.6, 0.8]) * (1 - strength * 0.3) + 0.3 * (1 - strength)
    horizon = np.array([0.85, 0.87, 0.9])
    sky_col = zenith * (1 - v) + horizon * v
    clouds = np.clip(0.5 + 0.8 * _noise(rng, (h, w), 3) + 0.2 * fine, 0, 1)[..., None] * (
        1.1 - strength * 0.6
    )
    sky_rgb = sky_col * (1 - clouds) + np.array([0.92, 0.92, 0.94]) * clouds
    rgb = np.where(sky[..., None], sky_rgb, rgb)
    # haze with depth
    beta = float(rng.uniform(150, 600))
    haze = 1.0 - np.exp(-np.minimum(geo.depth, FAR) / beta)
    haze_col = horizon * float(rng.uniform(0.85, 1.0))
    rgb = np.where(sky[..., None], rgb, rgb * (1 - haze[..., None]) + haze_col * haze[..., None])
    # the camera's own car bonnet at the bottom
    hood = hood_mask(geo.label.shape, rng)
    rgb[hood] = (
        np.array([0.1, 0.1, 0.12]) + 0.1 * (np.arange(h)[:, None] / h * np.ones((1, w)))[hood][:, None]
    )
    # camera: exposure, white balance, tone curve, vignetting, blur, noise
    rgb = rgb * float(rng.uniform(0.85, 1.25)) * rng.uniform(0.9, 1.1, 3)
    rgb = np.clip(rgb, 0, None)
    rgb = rgb / (1.0 + 0.35 * rgb)  # soft shoulder
    rgb = np.power(np.clip(rgb * 1.25, 0, 1), 0.9)
    rgb = rgb * _vignette(h, w)[..., None]
    sigma = float(rng.uniform(0.4, 0.9))
    rgb = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), sigma)
    rgb = rgb + float(rng.uniform(0.005, 0.02)) * rng.standard_normal(rgb.shape, np.float32) * np.sqrt(
        np.clip(rgb, 0.05, 1)
    )
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _vignette(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    return (1 - 0.11 * r2).astype(np.float32)


def hood_mask(size: tuple[int, int], rng: np.random.Generator | None = None) -> np.ndarray:
    """The ego-vehicle bonnet: a shallow arc over the bottom ~6% of the image (same for every image)."""
    h, w = size
    x = (np.arange(w) - w / 2) / (w / 2)
    top = h - (0.065 * h) * (1 - 0.6 * x * x)
    return np.arange(h)[:, None] >= top[None, :]


def render(scene: Scene, rng: np.random.Generator, domain: str) -> tuple[np.ndarray, Geometry]:
    """Geometry and the domain's rendering (RGB uint8); target labels get the ego bonnet."""
    geo = render_geometry(scene)
    if domain == "source":
        return shade_source(scene, geo, rng), geo
    rgb = shade_target(scene, geo, rng)
    hood = hood_mask(geo.label.shape)
    geo.label[hood] = EGO
    geo.depth[hood] = 0.0
    return rgb, geo
