"""The look of the server-rendered pages (gallery, detail, share, errors): one stylesheet, the palette, the header.

The palette is Gradio's Default theme (the studio page's theme), as CSS variables ``--fs-*`` that follow light and
dark through ``prefers-color-scheme``. ``GRADIO_ALIASES`` defines the same ``--fs-*`` names from Gradio's own theme
variables, for CSS on the studio page itself (there they follow Gradio's theme switch). Small images (flux-mini's
128 px) are shown at a whole multiple of their size with ``image-rendering: pixelated``, so they are large and crisp.
"""

from __future__ import annotations

import html
from typing import Any

# Gradio 6 Default theme, resolved (``gr.themes.Default()._get_theme_css()``): light ``:root`` and ``.dark`` values.
LIGHT = {
    "bg": "#ffffff",  # background-fill-primary
    "bg-2": "#fafafa",  # background-fill-secondary (neutral-50)
    "input": "#ffffff",  # input-background-fill
    "border": "#e4e4e7",  # border-color-primary (neutral-200)
    "text": "#27272a",  # body-text-color (neutral-800)
    "muted": "#71717a",  # block-title-text-color (neutral-500; Gradio's subdued neutral-400 is too faint on white)
    "link": "#2563eb",  # link-text-color (secondary-600)
    "link-hover": "#1d4ed8",  # secondary-700
    "accent": "#f97316",  # color-accent / button-primary-background-fill (primary-500)
    "accent-hover": "#ea580c",  # primary-600
    "on-accent": "#ffffff",
    "button": "#e4e4e7",  # button-secondary-background-fill (neutral-200)
    "button-hover": "#d4d4d8",  # neutral-300
    "button-text": "#000000",
    "danger": "#ef4444",  # button-cancel-background-fill
}
DARK = {
    "bg": "#0f0f11",  # neutral-950
    "bg-2": "#18181b",  # neutral-900
    "input": "#27272a",  # neutral-800
    "border": "#3f3f46",  # neutral-700
    "text": "#f4f4f5",  # neutral-100
    "muted": "#bbbbc2",  # neutral-400
    "link": "#3b82f6",  # secondary-500
    "link-hover": "#60a5fa",  # secondary-400
    "accent": "#ea580c",  # primary-600 (Gradio's dark primary button)
    "accent-hover": "#c2410c",  # primary-700
    "on-accent": "#ffffff",
    "button": "#52525b",  # neutral-600
    "button-hover": "#3f3f46",  # neutral-700
    "button-text": "#ffffff",
    "danger": "#b91c1c",
}
SHARED = {
    "radius": "4px",  # radius-sm
    "radius-lg": "8px",  # radius-lg
    "font": "'Source Sans Pro', ui-sans-serif, system-ui, -apple-system, 'Segoe UI', sans-serif",
    "mono": "'IBM Plex Mono', ui-monospace, Consolas, monospace",
}
GRADIO_NAMES = {
    "bg": "--background-fill-primary", "bg-2": "--background-fill-secondary", "input": "--input-background-fill",
    "border": "--border-color-primary", "text": "--body-text-color", "muted": "--block-title-text-color",
    "link": "--link-text-color", "link-hover": "--link-text-color-hover", "accent": "--button-primary-background-fill",
    "accent-hover": "--button-primary-background-fill-hover", "on-accent": "--button-primary-text-color",
    "button": "--button-secondary-background-fill", "button-hover": "--button-secondary-background-fill-hover",
    "button-text": "--button-secondary-text-color", "danger": "--button-cancel-background-fill",
    "font": "--font", "mono": "--font-mono",
}  # fmt: skip
HERO_SMALL = 640  # small images: shown at the whole multiple of their size nearest below this long side
HERO_LARGE = 768  # larger images: scaled down to this long side at most
CARD_SIDE = 256  # cards draw images up to this long side with crisp pixels


def _vars(values: dict[str, str]) -> str:
    return ";".join(f"--fs-{name}:{value}" for name, value in values.items())


def palette_css() -> str:
    """``:root`` with the light palette, and the dark one under ``prefers-color-scheme: dark``."""
    return (f":root{{color-scheme:light dark;{_vars({**LIGHT, **SHARED})}}}"
            f"@media (prefers-color-scheme: dark){{:root{{{_vars(DARK)}}}}}")  # fmt: skip


GRADIO_ALIASES = ":root,.dark{" + ";".join(f"--fs-{k}:var({v})" for k, v in GRADIO_NAMES.items()) + "}"

RULES = """
*,*::before,*::after{box-sizing:border-box}
body{margin:0;font-family:var(--fs-font);background:var(--fs-bg);color:var(--fs-text);line-height:1.45}
a{color:var(--fs-link)}a:hover{color:var(--fs-link-hover)}
code,pre{font-family:var(--fs-mono);font-size:.9em}
.fs-top{display:flex;align-items:center;gap:1rem;padding:.55rem 1.5rem;background:var(--fs-bg-2);
  border-bottom:1px solid var(--fs-border)}
.fs-top .brand{font-weight:600;font-size:1.05rem;color:var(--fs-text);text-decoration:none}
.fs-top nav{display:flex;gap:1.25rem;margin-left:auto}
.fs-top nav a{text-decoration:none;font-weight:600}
.fs-top nav a[aria-current=page]{color:var(--fs-text)}
main{max-width:1280px;margin:0 auto;padding:1.25rem 1.5rem 2.5rem}
h1{font-size:1.5rem;font-weight:600;margin:.1rem 0 .6rem;overflow-wrap:anywhere}
h2{font-size:1.1rem;font-weight:600;margin:1.5rem 0 .5rem}
.muted{color:var(--fs-muted);font-size:.85rem}
.back{margin:0 0 .75rem}
.layout{display:grid;grid-template-columns:minmax(0,var(--hero-w,640px)) minmax(260px,1fr);gap:1.75rem;
  align-items:start}
@media (max-width:900px){.layout{grid-template-columns:minmax(0,1fr)}main{padding:1rem}}
.stage{width:100%;max-width:var(--hero-w,640px)}
.images{display:grid;gap:.75rem}.images.many{grid-template-columns:repeat(2,minmax(0,1fr))}
.images a{display:block}
img.hero{display:block;width:100%;height:auto;background:var(--fs-bg-2);border:1px solid var(--fs-border);
  border-radius:var(--fs-radius)}
img.px{image-rendering:pixelated}
.prompt{white-space:pre-wrap;font-size:1.05rem;overflow-wrap:anywhere;margin:.25rem 0 .75rem}
.prompt.sub{font-size:.95rem}
.label{margin:.5rem 0 0;color:var(--fs-muted);font-size:.75rem;font-weight:600;letter-spacing:.06em;
  text-transform:uppercase}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.3rem 1rem;margin:.75rem 0 1rem;
  padding:.75rem 1rem;background:var(--fs-bg-2);border:1px solid var(--fs-border);border-radius:var(--fs-radius-lg)}
dt{color:var(--fs-muted)}dd{margin:0;overflow-wrap:anywhere}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:1rem 0}
.actions form{margin:0}
.btn,button{display:inline-flex;align-items:center;justify-content:center;gap:.35rem;padding:.45rem 1rem;
  font:inherit;font-weight:600;line-height:1.2;text-decoration:none;cursor:pointer;color:var(--fs-button-text);
  background:var(--fs-button);border:1px solid var(--fs-border);border-radius:var(--fs-radius-lg)}
.btn:hover,button:hover{background:var(--fs-button-hover);color:var(--fs-button-text)}
.btn.primary,button.primary{background:var(--fs-accent);color:var(--fs-on-accent);border-color:transparent}
.btn.primary:hover,button.primary:hover{background:var(--fs-accent-hover);color:var(--fs-on-accent)}
button.danger{background:transparent;color:var(--fs-danger);border-color:var(--fs-danger)}
button.danger:hover{background:var(--fs-danger);color:#fff}
input,select{font:inherit;color:var(--fs-text);background:var(--fs-input);border:1px solid var(--fs-border);
  border-radius:var(--fs-radius);padding:.35rem .5rem;max-width:100%}
label{white-space:nowrap}
#filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;padding:.75rem;margin:0 0 .75rem;
  background:var(--fs-bg-2);border:1px solid var(--fs-border);border-radius:var(--fs-radius-lg)}
#filters input[type=search]{flex:1 1 16rem}
nav.pages{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;margin:.75rem 0;color:var(--fs-muted)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:1rem}
.card{background:var(--fs-bg-2);border:1px solid var(--fs-border);border-radius:var(--fs-radius-lg);
  padding:.5rem;overflow:hidden;min-width:0}
.card .thumb,.card .none{display:flex;align-items:center;justify-content:center;width:100%;aspect-ratio:1;
  background:var(--fs-bg);border-radius:var(--fs-radius);overflow:hidden}
.card .thumb img{display:block;object-fit:contain;max-width:100%;max-height:100%}
.card .thumb img.wide{width:100%;height:auto}.card .thumb img.tall{height:100%;width:auto}
.card .none{color:var(--fs-muted);text-decoration:none}
.card .prompt{margin:.45rem 0 .1rem;font-size:.9rem;display:-webkit-box;-webkit-line-clamp:3;
  -webkit-box-orient:vertical;overflow:hidden}
.card .muted{margin:0}
.fav{color:var(--fs-accent)}
.inputs{display:flex;flex-wrap:wrap;gap:1rem}.inputs figure{margin:0;max-width:200px}
.inputs img{display:block;max-width:200px;height:auto;background:var(--fs-bg-2);border:1px solid var(--fs-border)}
.inputs figcaption{font-size:.85rem;color:var(--fs-muted);margin-top:.25rem;overflow-wrap:anywhere}
pre{white-space:pre-wrap;background:var(--fs-bg-2);border:1px solid var(--fs-border);padding:.5rem .75rem;
  border-radius:var(--fs-radius)}
#tags-form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0}
#share-link{overflow-wrap:anywhere}
footer.fs-foot{margin-top:2rem;color:var(--fs-muted);font-size:.85rem}
"""
STYLE = palette_css() + RULES


def header_html(current: str = "") -> str:
    """The small header of every page: the studio's name, links to the studio and the gallery."""

    def link(href: str, label: str, name: str) -> str:
        mark = ' aria-current="page"' if name == current else ""
        return f'<a href="{href}"{mark}>{label}</a>'

    return (f'<header class="fs-top"><a class="brand" href="/">Flux Studio</a><nav aria-label="site">'
            f'{link("/", "Studio", "studio")}{link("/gallery", "Gallery", "gallery")}</nav></header>')  # fmt: skip


def whole(value: Any, default: int) -> int:
    """``value`` as a positive int (``default`` when it is not one)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def hero_width(width: int, height: int) -> int:
    """CSS px to show an image large: a whole multiple of a small image (long side ≤ HERO_SMALL) or a large one
    scaled down to HERO_LARGE on its long side."""
    long = max(width, height)
    if long <= HERO_SMALL:
        return width * max(1, HERO_SMALL // long)
    return round(width * min(1.0, HERO_LARGE / long))


def upscaled(width: int, height: int) -> bool:
    """Whether the hero view enlarges the image (then its pixels are drawn crisp)."""
    return max(width, height) * 2 <= HERO_SMALL


def image_tag(src: str, alt: str, width: int, height: int, cls: str = "hero", lazy: bool = False) -> str:
    """An ``<img>`` (``src`` and ``alt`` escaped here) with its native size, marked ``px`` when small."""
    classes = [cls]
    if (cls == "hero" and upscaled(width, height)) or (cls != "hero" and max(width, height) <= CARD_SIDE):
        classes.append("px")
    if cls != "hero":
        classes.append("wide" if width >= height else "tall")
    extra = ' loading="lazy" decoding="async"' if lazy else ""
    return (f'<img class="{" ".join(classes)}" src="{html.escape(src)}" alt="{html.escape(alt)}" width="{width}"'
            f' height="{height}"{extra}>')  # fmt: skip
