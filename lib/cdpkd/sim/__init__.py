"""Simulation: random phantoms, FEM compression, RF frames, HDF5 datasets.

Everything but :class:`RFPairDataset` is NumPy/SciPy only, so parallel
simulation workers never import torch.
"""

from .dataset import (
    ensure_dataset,
    open_dataset,
    pair_seed,
    read_config,
    read_metas,
    read_pair,
    write_dataset,
)
from .fem import Compression, FemSolution, solve_compression
from .imaging import ImagingConfig, Scatterers
from .pair import SimulatedPair, SimulationConfig, random_scatterers, simulate_pair
from .phantom import Inclusion, Phantom, PhantomSpec, random_phantom
from .probe_frame import ensure_probe_frame_set, probe_frame_pair
from .release import ensure_release_set, invert_displacement, release_pair
from .rf_convolution import add_noise, simulate_rf

__all__ = [
    "ensure_probe_frame_set",
    "probe_frame_pair",
    "ensure_release_set",
    "invert_displacement",
    "release_pair",
    "Compression",
    "FemSolution",
    "ImagingConfig",
    "Inclusion",
    "Phantom",
    "PhantomSpec",
    "RFPairDataset",
    "Scatterers",
    "SimulatedPair",
    "SimulationConfig",
    "add_noise",
    "ensure_dataset",
    "open_dataset",
    "pair_seed",
    "random_phantom",
    "random_scatterers",
    "read_config",
    "read_metas",
    "read_pair",
    "simulate_pair",
    "simulate_rf",
    "solve_compression",
    "write_dataset",
]


def __getattr__(name: str):
    if name == "RFPairDataset":  # imports torch: only on demand
        from .torch_dataset import RFPairDataset

        return RFPairDataset
    raise AttributeError(f"module 'cdpkd.sim' has no attribute {name!r}")
