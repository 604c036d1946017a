"""Glyphs: an Omniglot-like handwritten-character data set drawn from Hershey stroke fonts.

A class is one glyph of one font (e.g. ``gothiceng/A``). Each instance redraws the glyph's
strokes as a hand would: a random affine transform of the whole character, a small offset per
stroke, a wobble per point and a random pen width. Near-duplicate glyphs (correlation above
0.95 between canonical renderings at 28x28) are dropped, so every class looks different.

The split is by font family (the "alphabets"), fixed and documented in ``FONT_SPLITS``: no
family straddles two splits, and duplicates are removed in split order (train, val, test), so a
test class never copies a training class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from metasched.data.cache import cache_dir, cached_splits
from metasched.data.pool import ClassPool, DataSplits

GLYPHS_VERSION = 1
DUPLICATE_CORRELATION = 0.95
DEDUP_SIZE = 28

FONT_SPLITS: dict[str, tuple[str, ...]] = {
    # Latin (roman, serif, italic), blackletter and symbol fonts.
    "train": (
        "futural",
        "futuram",
        "rowmand",
        "rowmans",
        "rowmant",
        "timesr",
        "timesrb",
        "timesi",
        "timesib",
        "gothgbt",
        "gothgrt",
        "gothiceng",
        "gothicger",
        "gothicita",
        "gothitt",
        "astrology",
        "markers",
        "mathlow",
        "mathupp",
        "meteorology",
        "music",
        "symbolic",
    ),
    # Cyrillic and Greek.
    "val": ("cyrilc_1", "cyrillic", "greek", "greekc", "greeks", "timesg"),
    # Japanese (kana and kanji) and cursive scripts.
    "test": ("japanese", "cursive", "scriptc", "scripts"),
}


@dataclass(frozen=True)
class HandStyle:
    """How far an instance may stray from the font's glyph (in units of the glyph's size)."""

    rotation_degrees: float = 12.0
    shear: float = 0.25
    min_scale: float = 0.75
    translation: float = 0.06
    stroke_offset: float = 0.03
    point_wobble: float = 0.012
    pen_width: tuple[float, float] = (1.0, 2.2)  # pixels at 28x28, scaled with the image size


Strokes = list[np.ndarray]


def _font_glyphs() -> list[tuple[str, str, Strokes]]:
    """(font, character, strokes) for every non-empty glyph, fonts in ``FONT_SPLITS`` order."""
    from HersheyFonts import HersheyFonts

    fonts = HersheyFonts()
    glyphs = []
    for split in ("train", "val", "test"):
        for font in FONT_SPLITS[split]:
            fonts.load_default_font(font)
            for char, glyph in fonts.all_glyphs.items():
                strokes = [np.asarray(s, dtype=np.float64) for s in glyph.strokes if len(s)]
                if strokes:
                    glyphs.append((font, char, _normalise(strokes)))
    return glyphs


def _normalise(strokes: Strokes) -> Strokes:
    """Centres the glyph and scales its larger side to 1."""
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = max(float((high - low).max()), 1e-6)
    return [(s - (low + high) / 2) / scale for s in strokes]


def render_glyph(
    strokes: Strokes,
    size: int,
    rng: np.random.Generator | None = None,
    style: HandStyle = HandStyle(),
    supersample: int = 4,
) -> np.ndarray:
    """Draws one instance of a glyph as a (size, size) uint8 image, ink bright on black.

    Args:
        strokes: the glyph's strokes, each an (n, 2) array, centred with unit extent.
        size: output height and width in pixels.
        rng: source of the hand's variation; ``None`` draws the canonical glyph.
        style: the amplitude of each kind of variation.
        supersample: drawing resolution factor, for anti-aliasing.
    """
    canvas = size * supersample
    pen = float(np.mean(style.pen_width))
    matrix, shift = np.eye(2), np.zeros(2)
    if rng is not None:
        angle = np.deg2rad(rng.uniform(-style.rotation_degrees, style.rotation_degrees))
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shear = np.array([[1.0, rng.uniform(-style.shear, style.shear)], [0.0, 1.0]])
        scale = np.diag(rng.uniform(style.min_scale, 1.0, size=2))
        matrix = rotation @ shear @ scale
        shift = rng.uniform(-style.translation, style.translation, size=2)
        pen = rng.uniform(*style.pen_width)
    width = max(1, round(pen * size / 28 * supersample))
    image = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = stroke
        if rng is not None:
            points = points + rng.normal(0.0, style.stroke_offset, size=2)
            points = points + rng.normal(0.0, style.point_wobble, size=points.shape)
        pixels = ((points @ matrix.T + shift) * 0.78 + 0.5) * canvas
        xy = [(float(x), float(y)) for x, y in pixels]
        if len(xy) > 1:
            draw.line(xy, fill=255, width=width, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round pen tips
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX))


def _distinct(glyphs: list[tuple[str, str, Strokes]]) -> list[int]:
    """Indices of the glyphs kept after greedy near-duplicate removal, in order."""
    canonical = np.stack([render_glyph(g[2], DEDUP_SIZE).ravel() for g in glyphs])
    centred = canonical.astype(np.float64) - canonical.mean(axis=1, keepdims=True)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True) + 1e-12
    correlation = centred @ centred.T
    kept: list[int] = []
    for i in range(len(glyphs)):
        if not kept or correlation[i, kept].max() <= DUPLICATE_CORRELATION:
            kept.append(i)
    return kept


def build_glyphs(image_size: int = 28, instances: int = 20, seed: int = 0) -> DataSplits:
    """Renders the whole data set (1,165 classes); deterministic for a given seed."""
    glyphs = _font_glyphs()
    kept = [glyphs[i] for i in _distinct(glyphs)]
    split_of = {font: split for split, fonts in FONT_SPLITS.items() for font in fonts}
    per_split: dict[str, tuple[list[np.ndarray], list[str], list[str]]] = {
        s: ([], [], []) for s in FONT_SPLITS
    }
    for index, (font, char, strokes) in enumerate(
        tqdm(kept, desc=f"drawing glyphs {image_size}x{image_size}", unit="class")
    ):
        images = np.stack(
            [
                render_glyph(strokes, image_size, np.random.default_rng([seed, index, k]))
                for k in range(instances)
            ]
        )
        arrays, names, groups = per_split[split_of[font]]
        arrays.append(images[:, None])
        names.append(f"{font}/U+{ord(char):04X}")
        groups.append(font)
    pools = {s: ClassPool.from_class_arrays(*per_split[s]) for s in ("train", "val", "test")}
    return DataSplits(pools["train"], pools["val"], pools["test"])


def load_glyphs(image_size: int = 28, instances: int = 20, seed: int = 0) -> DataSplits:
    """The glyphs data set from the cache, built on first use."""
    path = cache_dir() / f"glyphs-v{GLYPHS_VERSION}-{image_size}px-{instances}x-seed{seed}"
    return cached_splits(path, lambda: build_glyphs(image_size, instances, seed))
