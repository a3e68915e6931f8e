"""Readers for real RF ultrasound data: MetaImage (.mhd/.raw, .mha) and MATLAB (.mat v5 / v7.3).

Every reader returns an :class:`RFSequence`: float32, C-contiguous frames
``(F, H, W)`` (frames x axial samples x lines) plus sampling metadata. No
reader transposes frames to guess orientation; each module documents how its
format's axes map to ``(F, H, W)``.
"""

from .acquisitions import CIRS059_ACQUISITION
from .matfile import KNOWN_RF_NAMES, read_mat
from .metaimage import read_metaimage
from .readers import load_pair, read_rf
from .sequence import SPEED_OF_SOUND_M_S, RFSequence, as_frames, resolve_axial_sampling

__all__ = [
    "CIRS059_ACQUISITION",
    "KNOWN_RF_NAMES",
    "SPEED_OF_SOUND_M_S",
    "RFSequence",
    "as_frames",
    "load_pair",
    "read_mat",
    "read_metaimage",
    "read_rf",
    "resolve_axial_sampling",
]
