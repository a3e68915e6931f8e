"""Acquisition settings of the public data sets that do not carry them in their files.

Pass them to the readers, e.g. ``read_mat(path, **CIRS059_ACQUISITION)``.
"""

from __future__ import annotations

CIRS059_ACQUISITION: dict[str, float] = {"fs_hz": 40e6, "fc_hz": 8.5e6}
"""CIRS 059 breast phantom, Alpinion E-Cube R12 + L3-12H (Zayed & Rivaz, IEEE TUFFC 2021):
40 MHz sampling, 8.5 MHz centre frequency. The line pitch is not reported, so none is given."""
