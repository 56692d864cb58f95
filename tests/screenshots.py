"""A report renders in a real browser: headless Chromium takes a screenshot, and it is not blank."""

from __future__ import annotations

import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np

CHROMIUM = Path("/usr/bin/chromium")


def assert_renders(html: Path, tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "chromium is needed for this test: apt-get install chromium"
    shot = tmp_path / "shot.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
           html.as_uri()]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1])[::7], axis=0)
    assert len(colours) > 50  # text, tables, badges and the chart: far from a blank page
