"""The two renderings of the same geometry: the source flat and saturated, the target "photographic".

:func:`shade_source` is SYNTHIA-like (flat shading of saturated palette colours, plain sky, posterised);
:func:`shade_target` is Cityscapes-like (textures, sun and cast shadows, clouds, haze, the camera's own
bonnet, exposure, white balance, tone curve, vignetting, blur and sensor noise). Randomness comes only
from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from dada.benchmark.world import (
    BUS_BODY,
    CAR_CABIN,
    EGO,
    FACADE,
    FAR,
    FOLIAGE,
    GROUND,
    LAMP,
    LANEMARKING,
    PLAIN,
    ROAD,
    SIDEWALK,
    TERRAIN,
    Geometry,
    Scene,
    region,
    render_geometry,
)


def _noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] over an image, ``cells`` cells across the height."""
    h, w = size
    gh, gw = max(2, cells), max(2, int(round(cells * w / h)))
    grid = rng.uniform(-1, 1, (gh + 1, gw + 1)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


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
        reg = region(
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


def _texture(scene: Scene, geo: Geometry, mat: np.ndarray, rng: np.random.Generator):
    """Brightness texture (H×W) and the two noise fields it used (fine, coarse): per-object jitter is in the
    colours; multi-scale value noise, facade storeys, paving, tyre tracks and foliage add the rest."""
    h, w = geo.label.shape
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
    return tex, fine, coarse


def shade_target(scene: Scene, geo: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Cityscapes-like photographic rendering. RGB uint8."""
    h, w = geo.label.shape
    rgb, mat = _base_rgb(scene, geo, TARGET_GROUND)
    rgb = rgb.astype(np.float32)
    tex, fine, coarse = _texture(scene, geo, mat, rng)
    world = geo.world.astype(np.float32)
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


def hood_mask(size: tuple[int, int], rng: np.random.Generator | None = None,
              height: float = 0.065) -> np.ndarray:
    """The ego-vehicle bonnet: a shallow arc over the bottom ``height`` of the image at its centre (on
    average 0.8 × ``height`` of the pixels; the same for every image)."""
    h, w = size
    x = (np.arange(w) - w / 2) / (w / 2)
    top = h - (height * h) * (1 - 0.6 * x * x)
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


# ------------------------------------------------------------------------------------------- version 2
#: version 2's bonnet: 0.8 × 0.0575 = 4.6 % of the pixels, Cityscapes' share of "ego vehicle"
HOOD_V2 = 0.0575
#: what differs between version 2's renderings (docs/benchmark.md "Version 2"): the shading model, the
#: textures and the window model are shared; palettes, sky cover and the camera pipeline differ.
LOOKS = {
    "source": dict(  # SYNTHIA: a game engine's rendering (Unity), no camera model
        ground=SOURCE_GROUND, glass=(0.2, 0.28, 0.4), cabin=(0.16, 0.2, 0.28), lamp=(0.9, 0.2, 0.1),
        sun=(0.5, 1.0), cover=(0.0, 0.5), zenith=(0.3, 0.5, 0.92), horizon=(0.75, 0.85, 0.97),
        camera=False),
    "target": dict(  # Cityscapes: a real automotive camera, daytime, good/medium weather
        ground=TARGET_GROUND, glass=(0.12, 0.15, 0.2), cabin=(0.08, 0.09, 0.11), lamp=(0.6, 0.5, 0.2),
        sun=(0.3, 1.0), cover=(0.2, 1.0), zenith=(0.45, 0.6, 0.8), horizon=(0.85, 0.87, 0.9),
        camera=True),
}


def _glass_mask(geo: Geometry, mat: np.ndarray) -> np.ndarray:
    """Version 2's one window model, where it applies: facade windows (storeys of 3.2 m, bays of 3 m), car
    cabins and bus windows; each look gives the glass its palette, brightened by a mottled reflection."""
    vertical = np.abs(geo.normal[..., 1]) < 0.5
    win = _windows(geo, mat)
    win |= (mat == CAR_CABIN) & vertical
    win |= (mat == BUS_BODY) & vertical & (geo.world[..., 1] > 1.6) & (geo.world[..., 1] < 2.6)
    return win


def shade_v2(scene: Scene, geo: Geometry, rng: np.random.Generator, look: str, fog: float = 0,
             float32_math: bool = False) -> np.ndarray:
    """Version 2's rendering of either domain (``look``: source | target). RGB uint8.

    Both: textures (value noise, paving, tyre tracks, storeys, foliage), one window model, sun with Lambert
    shading and cast shadows, sky light, a sky of gradient and clouds. The target adds the camera: clear-day
    aerial perspective (visibility 10-40 km) or ``fog`` (visibility in metres, as Foggy Cityscapes: extinction
    2.996 / visibility), exposure, white balance, tone curve, vignetting, lens blur and sensor noise."""
    p = LOOKS[look]
    h, w = geo.label.shape
    rgb, mat = _base_rgb(scene, geo, p["ground"])
    rgb = rgb.astype(np.float32)
    tex, fine, coarse = _texture(scene, geo, mat, rng)
    world = geo.world.astype(np.float32)
    rgb = rgb * tex[..., None]
    win = _glass_mask(geo, mat)
    rgb[win] = np.asarray(p["glass"], np.float32) * (1.0 + 0.5 * coarse[win][:, None])
    lamp = (mat == LAMP) & (np.mod(world[..., 1] * 3.5, 1.0) < 0.55) & (np.abs(geo.normal[..., 2]) > 0.5)
    rgb[lamp] = p["lamp"]
    # sun, sky light and cast shadows
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(20), np.radians(60))
    sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    strength = float(rng.uniform(*p["sun"]))  # overcast .. sunny
    lam = np.clip(geo.normal @ sun.astype(np.float32), 0, 1)
    # cast shadows on a grid of the same angular resolution as version 1's (every 2nd pixel at 128 rows)
    step = max(2, int(round(h / 64)))
    shadow = _shadow(scene, geo, sun, step) if strength > 0.45 else np.zeros((h, w), np.float32)
    light = (0.45 + 0.2 * (1 - strength)) + (0.9 * strength) * lam * (1 - shadow)
    rgb *= light[..., None] * np.array([1.0, 0.96, 0.88], np.float32)
    # sky: gradient and clouds (float32 throughout; per-pixel work only where it applies)
    f32 = np.float32
    sky = geo.prim == -2
    rows = np.broadcast_to((np.arange(h, dtype=f32) / h)[:, None], (h, w))[sky][:, None]
    cover = float(rng.uniform(*p["cover"]))
    clouds = np.clip(cover - 0.5 + 0.8 * _noise(rng, (h, w), 3)[sky] + 0.2 * fine[sky], 0, 1)[:, None]
    sky_col = np.asarray(p["zenith"], f32) * (1 - rows) + np.asarray(p["horizon"], f32) * rows
    rgb[sky] = sky_col * (1 - clouds) + np.asarray([0.92, 0.92, 0.94], f32) * clouds
    if p["camera"]:
        visibility = float(rng.uniform(10000, 40000))  # drawn always: fog changes nothing else
        visibility = float(fog) if fog else visibility
        haze = (1.0 - np.exp(-np.minimum(geo.depth, FAR) * (2.996 / visibility))).astype(f32)[..., None]
        haze_col = np.asarray(p["horizon"], f32) * f32(rng.uniform(0.85, 1.0))
        air = rgb * (1 - haze) + haze_col * haze  # the whole frame at once: cheaper than masking
        rgb = np.where(sky[..., None], haze_col if fog else rgb, air)
    if scene.bonnet:
        hood = hood_mask((h, w), height=HOOD_V2)
        shade = np.broadcast_to((np.arange(h, dtype=f32) / h)[:, None], (h, w))[hood][:, None]
        rgb[hood] = np.asarray([0.1, 0.1, 0.12], f32) + 0.1 * shade
    if not p["camera"]:
        rgb = rgb * f32(rng.uniform(0.9, 1.1))  # the engine's exposure
        return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgb *= (float(rng.uniform(0.85, 1.25)) * rng.uniform(0.9, 1.1, 3)).astype(f32)
    np.clip(rgb, 0, None, out=rgb)
    rgb = rgb / (1.0 + 0.35 * rgb)  # soft shoulder
    # the tone curve in float64, then float32: numpy's float32 power differs by an ulp between CPUs (AVX-512
    # vs AVX2 code paths), enough to move a pixel; float32_math: generator "3"'s float32 power (its images
    # depend on the CPU's SIMD). The haze's exp above is float64 in both (the depth is float64).
    if float32_math:
        rgb = np.power(np.clip(rgb * 1.25, 0, 1), f32(0.9))
    else:
        rgb = np.power(np.clip(rgb * 1.25, 0, 1).astype(np.float64), 0.9).astype(f32)
    rgb *= _vignette(h, w)[..., None]
    sigma = float(rng.uniform(0.4, 0.9)) * h / 128.0  # the same optical blur at any image size
    rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    noise = f32(rng.uniform(0.005, 0.02)) * rng.standard_normal(rgb.shape, f32)
    rgb += noise * np.sqrt(np.clip(rgb, 0.05, 1))
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_v2(scene: Scene, rng: np.random.Generator, look: str,
              fog: float = 0, float32_math: bool = False) -> tuple[np.ndarray, Geometry]:
    """Version 2: geometry and the ``look``'s rendering; a car-mounted camera's bonnet is labelled ego.
    ``float32_math``: generator "3"'s float32 tone curve (see :func:`shade_v2`)."""
    geo = render_geometry(scene)
    rgb = shade_v2(scene, geo, rng, look, fog, float32_math)
    if scene.bonnet:
        hood = hood_mask(geo.label.shape, height=HOOD_V2)
        geo.label[hood] = EGO
        geo.depth[hood] = 0.0
    return rgb, geo
