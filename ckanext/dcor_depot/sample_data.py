"""Generated RT-DC measurements for the demo, the tests and the benchmarks.

Real measurements are large and private; these files are small, valid
RT-DC (HDF5) written with dclab.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def make_rtdc_file(path: Path | str, events: int = 200, seed: int = 42,
                   image_frames: int = 0, sample: str = "demo cells") -> Path:
    """Write a valid RT-DC file with scalar features (and images)."""
    import dclab

    path = Path(path)
    rng = np.random.default_rng(seed)
    meta = {
        "experiment": {"date": "2026-11-27", "time": "12:00:00",
                       "sample": sample, "run index": 1,
                       "event count": events},
        "imaging": {"frame rate": 2000, "pixel size": 0.34,
                    "roi size x": 250, "roi size y": 80},
        "setup": {"channel width": 20, "chip region": "channel",
                  "flow rate": 0.06, "medium": "CellCarrier",
                  "module composition": "AcCellerator"},
        "online_contour": {"no absdiff": True},
    }
    with dclab.RTDCWriter(path, mode="reset") as writer:
        writer.store_metadata(meta)
        writer.store_feature("deform", rng.uniform(0.01, 0.1, events))
        writer.store_feature("area_um", rng.uniform(20, 120, events))
        writer.store_feature("bright_avg", rng.uniform(100, 150, events))
        writer.store_feature("time", np.linspace(0, events / 2000, events))
        writer.store_feature("frame", np.arange(events) * 3 + 1)
        if image_frames:
            # Random images compress badly, so they make the file large.
            images = rng.integers(0, 255, (image_frames, 80, 250),
                                  dtype=np.uint8)
            writer.store_feature("image", images)
    return path
