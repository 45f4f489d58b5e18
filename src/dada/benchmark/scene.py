"""Scene sampling: a random street following the shared world rules, with a domain :class:`Style`.

:func:`sample_scene` lays out the street and the camera, then places each kind of object in a fixed
order (side streets, buildings, walls and fences, poles, traffic lights, signs, trees and hedges,
vehicles, people, riders), each by its own function sharing one :class:`Street`. Every random number is
drawn from the one generator, in this order: the same generator state gives the same scene, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dada.benchmark.styles import SKIN, Style, color, rand_int, rand_uniform
from dada.benchmark.world import (
    BICYCLE,
    BUILDING,
    BUS,
    BUS_BODY,
    CAR,
    CAR_BODY,
    CAR_CABIN,
    FACADE,
    FENCE,
    FENCE_MAT,
    FOLIAGE,
    LAMP,
    LIGHT,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    SIGN,
    SIGN_FACE,
    VEGETATION,
    WALL,
    Camera,
    Scene,
)


@dataclass
class Street:
    """What the object placers share: the generator, the style, the scene being built and its street."""

    rng: np.random.Generator
    style: Style
    scene: Scene
    inst: int = 0

    @property
    def road_half(self) -> float:
        return self.scene.road_half

    @property
    def walk(self) -> float:
        return self.scene.walk

    @property
    def curb(self) -> float:
        return self.scene.road_half + self.scene.walk

    def new_inst(self) -> int:
        self.inst += 1
        return self.inst

    def color(self, label: int, choices=None) -> tuple[float, ...]:
        return color(self.rng, self.style, label, choices)

    def in_cross(self, z0: float, z1: float, margin: float = 0.0) -> bool:
        return any(z1 > a - margin and z0 < b + margin for a, b in self.scene.cross)

    def walk_x(self, side: float, inner: float = 0.5) -> float:
        return side * (self.road_half + float(self.rng.uniform(inner, max(inner + 0.1, self.walk - 0.5))))

    def lane_x(self, parked: bool) -> float:
        side = float(self.rng.choice([-1, 1]))
        if parked:
            return side * (self.road_half - 1.1)
        k = int(self.rng.integers(self.scene.lanes))
        return side * (k + 0.5) * (self.road_half / self.scene.lanes) + float(self.rng.normal(0, 0.2))


def sample_scene(rng: np.random.Generator, style: Style, size: tuple[int, int]) -> Scene:
    """A random street following the shared world rules, with ``style``'s camera and statistics."""
    street = Street(rng, style, street_and_camera(rng, style, size))
    for place in (side_streets, buildings, walls_and_fences, poles, traffic_lights, signs, vegetation):
        place(street)
    cars = vehicles(street)
    people(street)
    riders(street, cars)
    return street.scene


def street_and_camera(rng: np.random.Generator, style: Style, size: tuple[int, int]) -> Scene:
    """The road's width, the sidewalks, the lanes and the camera (on the road, or on a sidewalk)."""
    road_half = rand_uniform(rng, style.road_half)
    walk = rand_uniform(rng, style.walk)
    lanes = 1 if road_half < 5.5 else 2
    if rng.random() < style.cam_on_walk:
        cam_x = float(rng.choice([-1, 1])) * (road_half + rng.uniform(0.5, walk - 0.5))
    else:
        lane = road_half / lanes
        cam_x = float(rng.uniform(0.3 * lane, lanes * lane - 0.5 * lane)) * (
            1 if style.name == "target" else float(rng.choice([-1, 1])))
    cam = Camera(height=rand_uniform(rng, style.cam_height),
                 pitch=math.radians(rand_uniform(rng, style.cam_pitch_deg)),
                 yaw=math.radians(rand_uniform(rng, style.cam_yaw_deg)), x=cam_x,
                 hfov=math.radians(rand_uniform(rng, style.hfov_deg)), size=size)
    return Scene(cam, road_half=road_half, walk=walk, lanes=lanes, terrain=rng.random() < style.terrain_prob,
                 bonnet=style.bonnet)


def side_streets(st: Street) -> None:
    """Side streets crossing the road, some with a zebra crossing before them."""
    rng, scene = st.rng, st.scene
    z = float(rng.uniform(15, 60))
    while z < 160:
        if rng.random() < st.style.gap_prob * 2:
            width = float(rng.uniform(9, 16))
            scene.cross.append((z, z + width))
            if rng.random() < 0.6:
                scene.zebra.append((z - 4.0, z - 1.0))
            z += width
        z += float(rng.uniform(40, 90))


def buildings(st: Street) -> None:
    """Blocks on both sides, leaving side streets open, and sometimes one closing the street's end."""
    rng, style, scene, curb = st.rng, st.style, st.scene, st.curb
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
                height = rand_uniform(rng, style.building_height)
                x_front = curb + setback + float(rng.uniform(0, 0.8))
                lo = (side * x_front if side > 0 else -x_front - 12, 0, z)
                hi = (x_front + 12 if side > 0 else -x_front, height, z1)
                scene.add("box", lo, hi, BUILDING, st.color(BUILDING), material=FACADE, inst=st.new_inst())
            nz = z1 if z1 > z else z + 0.1
            for a, b in scene.cross:
                if a <= nz < b + 0.1:
                    nz = b + float(rng.uniform(0.5, 2))
            z = nz + (float(rng.uniform(0.5, 3)) if rng.random() < 0.2 else 0.0)
    if rng.random() < style.far_building_prob:  # the end of the street
        zf = float(rng.uniform(120, 220))
        scene.add("box", (-curb - 40, 0, zf),
                  (curb + 40, rand_uniform(rng, style.building_height) * 1.3, zf + 10),
                  BUILDING, st.color(BUILDING), material=FACADE, inst=st.new_inst())


def walls_and_fences(st: Street) -> None:
    """Walls (boxes) and fences (masked planes of bars and rails) along the back of the sidewalk."""
    rng, style, scene = st.rng, st.style, st.scene
    for label, prob in ((WALL, style.wall_prob), (FENCE, style.fence_prob)):
        for _ in range(3):
            if rng.random() >= prob:
                continue
            side = float(rng.choice([-1, 1]))
            z0 = float(rng.uniform(3, 70))
            z1 = z0 + float(rng.uniform(5, 25))
            if st.in_cross(z0, z1, 2):
                continue
            x = side * (st.curb - 0.3)
            height = float(rng.uniform(0.8, 2.2))
            if label == WALL:
                scene.add("box", (x - 0.15, 0, z0), (x + 0.15, height, z1), WALL, st.color(WALL),
                          inst=st.new_inst())
            else:
                scene.add("plane", (x, 0, z0), (x, height, z1), FENCE, st.color(FENCE), material=FENCE_MAT,
                          axis=0, inst=st.new_inst(), shadow=False,
                          pattern=("bars", 0.35, 0.08, ((height - 0.12, height), (0.25, 0.35))))


def pole_at(st: Street, x: float, z: float, height: float, width: float = 0.14) -> int:
    """A pole standing at (x, z); returns its instance id."""
    i = st.new_inst()
    st.scene.add("box", (x - width / 2, 0, z - width / 2), (x + width / 2, height, z + width / 2), POLE,
                 st.color(POLE), inst=i)
    return i


def poles(st: Street) -> None:
    """Plain poles at the curb."""
    rng = st.rng
    for _ in range(rand_int(rng, st.style.n_poles)):
        side = float(rng.choice([-1, 1]))
        pole_at(st, side * (st.road_half + 0.4), float(rng.uniform(4, 90)), float(rng.uniform(4, 9)))


def traffic_lights(st: Street) -> None:
    """Traffic lights at the curb, mostly before a side street; half with a second light on an arm."""
    rng, scene, road_half = st.rng, st.scene, st.road_half
    for _ in range(rand_int(rng, st.style.n_lights)):
        side = float(rng.choice([-1, 1]))
        z = float(rng.uniform(8, 70))
        if scene.cross and rng.random() < 0.7:
            z = scene.cross[int(rng.integers(len(scene.cross)))][0] - float(rng.uniform(0.5, 2.0))
        x = side * (road_half + 0.4)
        height = float(rng.uniform(2.8, 4.5))
        pole_at(st, x, z, height)
        i = st.new_inst()
        scene.add("box", (x - 0.17, height - 0.1, z - 0.35), (x + 0.17, height + 0.85, z - 0.07), LIGHT,
                  st.color(LIGHT), material=LAMP, inst=i)
        if rng.random() < 0.5:  # a light hanging over the road on an arm
            arm = float(rng.uniform(2.5, road_half))
            x2 = x - side * arm
            scene.add("box", (min(x, x2), height + 0.9, z - 0.06), (max(x, x2), height + 1.0, z + 0.06), POLE,
                      st.color(POLE), inst=i)
            scene.add("box", (x2 - 0.17, height + 0.05, z - 0.35), (x2 + 0.17, height + 0.9, z - 0.07), LIGHT,
                      st.color(LIGHT), material=LAMP, inst=st.new_inst())


def signs(st: Street) -> None:
    """Traffic signs on thin poles: square plates or wide direction signs, facing the camera."""
    rng, scene = st.rng, st.scene
    for _ in range(rand_int(rng, st.style.n_signs)):
        side = float(rng.choice([-1, 1]))
        z = float(rng.uniform(5, 70))
        x = side * (st.road_half + 0.5)
        height = float(rng.uniform(2.0, 3.0))
        pole_at(st, x, z, height, 0.08)
        s = float(rng.uniform(0.5, 0.9))
        if rng.random() < 0.5:  # round-ish / square plate facing the camera
            scene.add("box", (x - s / 2, height - 0.1, z - 0.1), (x + s / 2, height + s - 0.1, z - 0.05),
                      SIGN, st.color(SIGN), material=SIGN_FACE, inst=st.new_inst())
        else:  # wide direction sign
            scene.add("box", (x - s, height, z - 0.1), (x + s, height + s * 0.6, z - 0.05), SIGN,
                      st.color(SIGN), material=SIGN_FACE, inst=st.new_inst())


def vegetation(st: Street) -> None:
    """Trees on the sidewalk (trunk and canopy are vegetation) and sometimes a hedge."""
    rng, scene = st.rng, st.scene
    for _ in range(rand_int(rng, st.style.n_trees)):
        side = float(rng.choice([-1, 1]))
        z = float(rng.uniform(3, 90))
        x = st.walk_x(side, 1.0)
        trunk = float(rng.uniform(2.0, 3.5))
        i = st.new_inst()
        col = st.color(VEGETATION)
        scene.add("box", (x - 0.12, 0, z - 0.12), (x + 0.12, trunk, z + 0.12), VEGETATION,
                  tuple(np.asarray(col) * 0.55 + np.array([0.15, 0.08, 0.0])), inst=i)
        r = float(rng.uniform(1.3, 3.0))
        rv = r * float(rng.uniform(0.8, 1.4))
        scene.add("ellipsoid", (x - r, trunk - 0.3, z - r), (x + r, trunk - 0.3 + 2 * rv, z + r), VEGETATION,
                  col, material=FOLIAGE, inst=i)
    if rng.random() < 0.4:
        side = float(rng.choice([-1, 1]))
        z0 = float(rng.uniform(3, 40))
        x = side * (st.curb - 0.6)
        scene.add("box", (x - 0.4, 0, z0),
                  (x + 0.4, float(rng.uniform(0.8, 1.6)), z0 + float(rng.uniform(4, 20))),
                  VEGETATION, st.color(VEGETATION), material=FOLIAGE, inst=st.new_inst())


def wheels(scene: Scene, x: float, width: float, centres: list[float], half: float, height: float, label: int,
           inst: int) -> None:
    """Dark wheel blocks across a vehicle of ``width`` at the given Z ``centres``, filling the gap under
    its body."""
    for zc in centres:
        scene.add("box", (x - width / 2 + 0.05, 0, zc - half), (x + width / 2 - 0.05, height, zc + half),
                  label, (0.05, 0.05, 0.05), inst=inst)


def car(st: Street, x: float, z: float) -> None:
    """A car: a body, a cabin and two wheel blocks filling the gap under the body."""
    scene = st.scene
    i = st.new_inst()
    col = st.color(CAR)
    w, length = float(st.rng.uniform(1.6, 1.9)), float(st.rng.uniform(3.8, 4.8))
    scene.add("box", (x - w / 2, 0.2, z), (x + w / 2, 0.95, z + length), CAR, col, material=CAR_BODY, inst=i)
    scene.add("box", (x - w / 2 + 0.1, 0.95, z + 0.9), (x + w / 2 - 0.1, 1.45, z + length - 0.9), CAR, col,
              material=CAR_CABIN, inst=i)
    wheels(scene, x, w, [z + 0.7, z + (length - 0.7)], 0.32, 0.4, CAR, i)


def bus(st: Street, x: float, z: float) -> None:
    """A bus: one tall box on two wheel blocks."""
    scene = st.scene
    i = st.new_inst()
    w, length, height = 2.5, float(st.rng.uniform(10, 13)), float(st.rng.uniform(3.0, 3.4))
    scene.add("box", (x - w / 2, 0.3, z), (x + w / 2, height, z + length), BUS, st.color(BUS),
              material=BUS_BODY, inst=i)
    wheels(scene, x, w, [z + 1.8, z + (length - 2.2)], 0.5, 0.5, BUS, i)


def vehicles(st: Street) -> list[tuple[float, float]]:
    """Driving and parked cars, then buses, never overlapping; returns their (x, z) footprints."""
    rng, style = st.rng, st.style
    cars: list[tuple[float, float]] = []
    for parked, count in ((False, rand_int(rng, style.n_cars)), (True, rand_int(rng, style.n_parked))):
        for _ in range(count):
            x = st.lane_x(parked)
            z = float(rng.uniform(4, 70))
            if any(abs(x - cx) < 2.2 and abs(z - cz) < 6 for cx, cz in cars):
                continue
            if parked and st.in_cross(z - 5, z + 5):
                continue
            cars.append((x, z))
            car(st, x, z)
    for _ in range(rand_int(rng, style.n_bus)):
        x = st.lane_x(False)
        z = float(rng.uniform(8, 70))
        if any(abs(x - cx) < 3 and abs(z - cz) < 14 for cx, cz in cars):
            continue
        cars.append((x, z))
        bus(st, x, z)
    return cars


def person(st: Street, x: float, z: float, label: int, base_y: float = 0.0, sitting: bool = False) -> None:
    """A person (or a rider, sitting): legs, torso and head."""
    rng, style, scene = st.rng, st.style, st.scene
    i = st.new_inst()
    height = float(rng.uniform(1.55, 1.9))
    col = st.color(label)
    legs = color(rng, style, PERSON, [(0.15, 0.15, 0.25), (0.25, 0.25, 0.25), (0.4, 0.35, 0.3)])
    leg_h = 0.47 * height
    if not sitting:
        scene.add("box", (x - 0.17, base_y, z - 0.1), (x + 0.17, base_y + leg_h, z + 0.1), label, legs,
                  inst=i)
        y0 = base_y + leg_h
    else:
        scene.add("box", (x - 0.2, base_y - 0.35, z - 0.15), (x + 0.2, base_y + 0.1, z + 0.35), label, legs,
                  inst=i)
        y0 = base_y + 0.1
    torso = 0.33 * height
    scene.add("box", (x - 0.22, y0, z - 0.13), (x + 0.22, y0 + torso, z + 0.13), label, col, inst=i)
    head = 0.12 * height
    scene.add("ellipsoid", (x - head * 0.8, y0 + torso, z - head * 0.8),
              (x + head * 0.8, y0 + torso + 2 * head, z + head * 0.8), label, color(rng, style, label, SKIN),
              inst=i, shadow=False)


def people(st: Street) -> None:
    """Pedestrians, mostly on the sidewalks, some crossing the road."""
    rng = st.rng
    for _ in range(rand_int(rng, st.style.n_people)):
        if rng.random() < 0.8:
            x = st.walk_x(float(rng.choice([-1, 1])))
        else:  # crossing the road
            x = float(rng.uniform(-st.road_half, st.road_half))
        person(st, x, float(rng.uniform(3, 45)), PERSON)


def riders(st: Street, cars: list[tuple[float, float]]) -> None:
    """Riders on bicycles and motorbikes (wheels are masked discs), in the road along the curb."""
    rng, scene, road_half = st.rng, st.scene, st.road_half
    for _ in range(rand_int(rng, st.style.n_riders)):
        x = st.lane_x(False) if rng.random() < 0.4 else float(rng.choice([-1, 1])) * (road_half - 0.8)
        z = float(rng.uniform(4, 45))
        if any(abs(x - cx) < 2.0 and -2 < z - cz < 6 for cx, cz in cars):
            continue
        motor = rng.random() < 0.45
        label = MOTORCYCLE if motor else BICYCLE
        i = st.new_inst()
        col = st.color(label)
        r = 0.33 if motor else 0.35
        length = 1.9 if motor else 1.7
        for zc in (z + r, z + length - r):
            scene.add("plane", (x, 0, zc - r), (x, 2 * r, zc + r), label, col, axis=0, inst=i, shadow=False,
                      pattern=("disc", r, zc, r, 0.07 if not motor else 0.14))
        if motor:
            scene.add("box", (x - 0.2, 0.35, z + 0.4), (x + 0.2, 0.85, z + length - 0.4), label, col, inst=i)
        else:
            scene.add("box", (x - 0.03, 0.35, z + 0.35), (x + 0.03, 0.85, z + length - 0.35), label, col,
                      inst=i)
        person(st, x, z + length / 2 - 0.1, RIDER, base_y=0.85, sitting=True)
