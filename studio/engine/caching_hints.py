"""Step-cache defaults and the UI's fidelity-vs-speed hints (no torch: the UI reads them)."""

DEFAULT_THRESHOLDS = {"fbcache": 0.05, "magcache": 0.06, "taylorseer": 2.0}
HINTS = {
    "fbcache": "threshold = relative change of the first block's output below which the rest is reused "
    "(0.05 faithful … 0.2 fast)",
    "magcache": "threshold = accumulated magnitude error allowed before recomputing (0.06 faithful … 0.2 fast); "
    "uses FLUX.1's published magnitude ratios",
    "taylorseer": "threshold = cache interval in steps (2 faithful … 5 fast); Taylor extrapolation in between",
}
