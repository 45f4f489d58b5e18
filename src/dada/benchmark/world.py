"""The benchmark's world: SYNTHIA class ids, the pinhole camera, primitives, scenes and exact geometry.

The world is a straight street along +Z (world axes: X right, Y up, Z forward, metres). Every object is a
set of axis-aligned boxes, ellipsoids and masked planes, intersected exactly with the camera rays of a
pinhole camera (yaw, pitch, no roll), so each pixel gets the class of the nearest surface and its exact
metric depth (the camera z coordinate, as SYNTHIA depth and Cityscapes disparity use) from a z-buffer.
The ground plane's depth is analytic: ``Z = h / (y_n cos(pitch) + sin(pitch))`` with
``y_n = (v - c_y) / f``. Everything is NumPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dada.data.classes import SYNTHIA_IDS

# the SYNTHIA raw ids the generator draws (labels are written as SYNTHIA writes them)
_ID = SYNTHIA_IDS
VOID, SKY, BUILDING, ROAD, SIDEWALK = _ID["void"], _ID["sky"], _ID["building"], _ID["road"], _ID["sidewalk"]
FENCE, VEGETATION, POLE, CAR = _ID["fence"], _ID["vegetation"], _ID["pole"], _ID["car"]
SIGN = _ID["traffic sign"]
PERSON, BICYCLE, MOTORCYCLE, TERRAIN = _ID["pedestrian"], _ID["bicycle"], _ID["motorcycle"], _ID["terrain"]
LIGHT, RIDER, BUS, WALL, LANEMARKING = (_ID["traffic light"], _ID["rider"], _ID["bus"], _ID["wall"],
                                        _ID["lanemarking"])
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
    bonnet: bool = False  # version 2: the camera's own bonnet is in view (rendered, labelled ego)

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


def region(cam: Camera, lo, hi, basis=None) -> tuple[int, int, int, int, float] | None:
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
        reg = reg if reg is not None else region(self.cam, prim.lo, prim.hi, self.basis)
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
    regions = [(region(cam, p.lo, p.hi, cv.basis), i) for i, p in enumerate(scene.prims)]
    for reg, index in sorted(((r, i) for r, i in regions if r is not None), key=lambda ri: (ri[0][4], ri[1])):
        cv.draw(scene.prims[index], index, reg)
    sky = ~np.isfinite(cv.depth)
    cv.label[sky] = SKY
    cv.depth[sky] = FAR
    world = cv.c[None, None, :] + cv.depth[..., None] * np.moveaxis(rays, 0, -1)
    return Geometry(cv.label, cv.depth, cv.prim, cv.inst, cv.normal, world, rays, cam.focal)
