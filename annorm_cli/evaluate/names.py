"""The inpainting protocol's names, importable without numpy (the CLI reads them at start-up)."""

BASELINES = ("telea", "ns", "patchmatch")
STROKE_BUCKETS = ("10-20%", "20-30%", "30-40%")
BUCKETS = STROKE_BUCKETS + ("objects", "flat")
