"""Control maps drawn over a generated image, to see how well it follows them (PIL only, no torch)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageChops, ImageFilter

from studio.core.errors import InvalidRequest

MODES: tuple[str, ...] = ("blend", "outline")
MIN_SIDE = 256  # small results are enlarged (nearest neighbour) so thin outlines stay visible
THRESHOLD = 24  # map pixels darker than this (all channels) are background
# outline colours for maps without colours of their own (edges, depth): one per control unit
HIGHLIGHTS: tuple[tuple[int, int, int], ...] = ((255, 0, 255), (0, 255, 255), (255, 255, 0))


def foreground(control_map: Image.Image) -> Image.Image:
    """Mask (mode L, 0/255) of the map's drawn pixels: anything brighter than the black background."""
    brightest = control_map.convert("RGB").getchannel("R")
    for band in ("G", "B"):
        brightest = ImageChops.lighter(brightest, control_map.convert("RGB").getchannel(band))
    return brightest.point(lambda v: 255 if v >= THRESHOLD else 0)


def is_colourful(control_map: Image.Image) -> bool:
    """Whether the map has colours of its own (a pose map) rather than grey levels (edges, depth)."""
    hsv = control_map.convert("RGB").convert("HSV")
    return hsv.getchannel("S").getextrema()[1] > 64


def overlay_maps(
    result: Image.Image, maps: Sequence[Image.Image], mode: str = "blend", alpha: float = 0.5
) -> Image.Image:
    """``result`` with each control map on top: ``blend`` mixes the map's drawn pixels in at ``alpha``;
    ``outline`` draws the contour of each map's drawn area (its own colours, or a highlight for grey maps).

    Maps are resized to the result (nearest neighbour); results under MIN_SIDE are enlarged first.
    """
    if mode not in MODES:
        raise InvalidRequest(f"unknown overlay mode {mode!r} — use one of: {', '.join(MODES)}")
    if not 0.0 <= alpha <= 1.0:
        raise InvalidRequest(f"overlay alpha must be in 0..1 (got {alpha})")
    base = result.convert("RGB")
    factor = max(1, -(-MIN_SIDE // max(1, min(base.size))))
    size = (base.width * factor, base.height * factor)
    out = base.resize(size, Image.Resampling.NEAREST)
    for k, control_map in enumerate(maps):
        layer = control_map.convert("RGB").resize(size, Image.Resampling.NEAREST)
        mask = foreground(layer)
        if mode == "blend":
            out.paste(Image.blend(out, layer, alpha), mask=mask)
            continue
        edge = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(3)))
        if factor > 1:  # a 3 px line on an enlarged result; colours spread with it
            edge, layer = edge.filter(ImageFilter.MaxFilter(3)), layer.filter(ImageFilter.MaxFilter(3))
        colour = layer if is_colourful(layer) else Image.new("RGB", size, HIGHLIGHTS[k % len(HIGHLIGHTS)])
        out.paste(colour, mask=edge)
    return out
