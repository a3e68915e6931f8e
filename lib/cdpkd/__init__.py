"""cdpkd: compact deep networks for ultrasound strain elastography.

Sub-packages (one responsibility each): ``sim`` (phantoms, FEM, RF simulation,
datasets), ``ops`` (correlation and warping), ``models``, ``losses``,
``compress``, ``train``, ``metrics``, ``classic`` (NCC and GLUE trackers),
``io`` (real RF readers). ``pipeline`` runs the notebooks under a profile.

Conventions (DESIGN.md section 3): tensors are N x C x H x W with H axial
(RF samples, depth) and W lateral (A-lines); displacement channel 0 is axial
in samples, channel 1 lateral in lines; compression gives negative strain.
"""

__version__ = "0.1.0"
