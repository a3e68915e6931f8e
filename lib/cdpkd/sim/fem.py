"""Quasi-static compression of a phantom: 2-D plane-strain linear elasticity.

The tissue is nearly incompressible (Poisson's ratio ~0.495). Linear
triangles lock at such ratios (far too stiff in shear-free deformation), so
the displacement uses quadratic (P2) triangles, solved with scikit-fem.

Coordinates: mesh point ``(x, z)`` with ``x`` lateral and ``z`` depth, metres.
The probe sits at ``z = 0`` and pushes into the tissue: the top edge moves by
``+applied_strain * depth`` along z, the bottom edge (``z = depth``) is held
axially, so the mean axial strain is ``-applied_strain`` (compression is
negative, DESIGN.md section 3).

Contact models at the probe and the support:

* ``"frictionless"``: both edges slide freely laterally; one bottom node is
  pinned laterally (removing the rigid mode) at ``lateral_slip_m``, i.e. the
  slip is a rigid lateral translation of the whole tissue. A homogeneous block
  then has exactly uniform strain (the known answer tested).
* ``"bonded"``: no sliding at either edge: the top moves laterally with the
  probe by ``lateral_slip_m`` (shear) and the bottom is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from skfem import Basis, BilinearForm, ElementTriP2, ElementVector, MeshTri, asm, condense, solve
from skfem.helpers import ddot, sym_grad, trace

from .phantom import Phantom

Contact = Literal["frictionless", "bonded"]


@dataclass(frozen=True)
class Compression:
    """Boundary loading.

    Attributes:
        applied_strain: magnitude of the mean axial strain imposed by the probe
            (fraction, e.g. 0.01 for 1 %); must be in (0, 0.2).
        lateral_slip_m: lateral probe/tissue motion (m).
        contact: ``"frictionless"`` or ``"bonded"`` (see module docstring).
    """

    applied_strain: float
    lateral_slip_m: float = 0.0
    contact: Contact = "frictionless"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.applied_strain) and 0 < self.applied_strain < 0.2):
            raise ValueError(
                f"applied_strain must be a compression magnitude in (0, 0.2), got {self.applied_strain!r}"
            )
        if not math.isfinite(self.lateral_slip_m):
            raise ValueError(f"lateral_slip_m must be finite, got {self.lateral_slip_m!r}")
        if self.contact not in ("frictionless", "bonded"):
            raise ValueError(f"contact must be 'frictionless' or 'bonded', got {self.contact!r}")


def lame_parameters(young: np.ndarray, poisson: float) -> tuple[np.ndarray, np.ndarray]:
    """Plane-strain Lamé parameters (lambda, mu) from Young's modulus and Poisson's ratio."""
    lam = young * poisson / ((1.0 + poisson) * (1.0 - 2.0 * poisson))
    mu = young / (2.0 * (1.0 + poisson))
    return lam, mu


@BilinearForm
def _elasticity(u, v, w):
    # sigma(u) : eps(v) with the isotropic law sigma = 2 mu eps + lambda tr(eps) I
    eps_u, eps_v = sym_grad(u), sym_grad(v)
    return 2.0 * w["mu"] * ddot(eps_u, eps_v) + w["lam"] * trace(eps_u) * trace(eps_v)


class _TensorMeshLocator:
    """Point location and P2 evaluation on a structured triangle mesh.

    scikit-fem's general point finder holds dense candidate arrays and runs out
    of memory for the ~10^5 points of an RF grid; on a tensor mesh the cell of a
    point is known arithmetically, and only its two triangles need testing.
    """

    def __init__(self, basis: Basis, xs: np.ndarray, zs: np.ndarray) -> None:
        mesh = basis.mesh
        self.basis, self.xs, self.zs = basis, xs, zs
        corners = mesh.p[:, mesh.t]  # (2, 3, n_elements)
        self.origin = corners[:, 0, :]
        jac = np.stack([corners[:, 1, :] - self.origin, corners[:, 2, :] - self.origin], axis=1)
        self.inv_jac = np.linalg.inv(np.moveaxis(jac, -1, 0))  # (n_elements, 2, 2)
        centroid = corners.mean(axis=1)
        cell = self._cell(centroid[0], centroid[1])
        order = np.argsort(cell, kind="stable")
        if not np.array_equal(np.bincount(cell, minlength=(len(xs) - 1) * (len(zs) - 1)), np.full((len(xs) - 1) * (len(zs) - 1), 2)):
            raise RuntimeError("mesh is not a tensor mesh with two triangles per cell")
        self.cell_elements = order.reshape(-1, 2)

    def _cell(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        ix = np.clip(np.searchsorted(self.xs, x, side="right") - 1, 0, len(self.xs) - 2)
        iz = np.clip(np.searchsorted(self.zs, z, side="right") - 1, 0, len(self.zs) - 2)
        return iz * (len(self.xs) - 1) + ix

    def _reference(self, elements: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        d = np.stack([x - self.origin[0, elements], z - self.origin[1, elements]], axis=-1)
        return np.einsum("pij,pj->ip", self.inv_jac[elements], d)  # (2, P)

    def evaluate(self, values: list[np.ndarray], x: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
        """Evaluate nodal P2 fields ``values`` at points (x, z) (metres, shape (P,))."""
        first, second = self.cell_elements[self._cell(x, z)].T
        ref = self._reference(first, x, z)
        outside = (ref[0] < -1e-9) | (ref[1] < -1e-9) | (ref.sum(0) > 1 + 1e-9)
        elements = np.where(outside, second, first)
        ref[:, outside] = self._reference(second[outside], x[outside], z[outside])
        dofs = self.basis.element_dofs[:, elements]  # (6, P)
        element = self.basis.elem
        shape = [element.lbasis(ref, i)[0] for i in range(dofs.shape[0])]
        return [sum(phi * field[dofs[i]] for i, phi in enumerate(shape)) for field in values]


@dataclass
class FemSolution:
    """Solved displacement field; evaluate it anywhere inside the phantom.

    Attributes:
        locator: finds points in the mesh and evaluates P2 fields there.
        u_x, u_z: nodal values (scalar P2 basis) of the lateral and axial displacement (m).
        depth_m, width_m: extent of the solved domain.
    """

    locator: _TensorMeshLocator
    u_x: np.ndarray
    u_z: np.ndarray
    depth_m: float
    width_m: float

    def displacement_at(self, z_m: np.ndarray, x_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact P2 displacement (axial, lateral) in metres at points (z, x), same shape as z.

        Points outside the phantom (scatterers in the lateral margin of the
        beam) take the value at the nearest edge.
        """
        z_m, x_m = np.broadcast_arrays(np.asarray(z_m, float), np.asarray(x_m, float))
        x = np.clip(x_m.ravel(), 0.0, self.width_m)
        z = np.clip(z_m.ravel(), 0.0, self.depth_m)
        uz, ux = self.locator.evaluate([self.u_z, self.u_x], x, z)
        return uz.reshape(z_m.shape), ux.reshape(z_m.shape)


def _mesh_lines(phantom: Phantom, element_size_m: float) -> tuple[np.ndarray, np.ndarray]:
    nz = max(int(math.ceil(phantom.depth_m / element_size_m)), 2) + 1
    nx = max(int(math.ceil(phantom.width_m / element_size_m)), 2) + 1
    return np.linspace(0.0, phantom.width_m, nx), np.linspace(0.0, phantom.depth_m, nz)


def solve_compression(
    phantom: Phantom,
    compression: Compression,
    *,
    element_size_m: float = 0.8e-3,
    poisson: float = 0.495,
) -> FemSolution:
    """Solve the plane-strain compression of ``phantom``; see the module docstring.

    Args:
        phantom: geometry and stiffness.
        compression: applied strain, slip and contact model.
        element_size_m: edge length of the (structured) triangle mesh; inclusions
            should span several elements.
        poisson: Poisson's ratio, in (0, 0.5).
    """
    if not (0.0 < poisson < 0.5):
        raise ValueError(f"poisson must be in (0, 0.5), got {poisson!r}")
    if not (math.isfinite(element_size_m) and element_size_m > 0):
        raise ValueError(f"element_size_m must be positive, got {element_size_m!r}")
    xs, zs = _mesh_lines(phantom, element_size_m)
    mesh = MeshTri.init_tensor(xs, zs)
    vbasis = Basis(mesh, ElementVector(ElementTriP2()))
    xq, zq = np.asarray(vbasis.global_coordinates())  # (n_elements, n_quadrature) each
    young = phantom.stiffness(zq, xq)
    if not np.isfinite(young).all() or (young <= 0).any():
        raise ValueError("phantom stiffness must be finite and positive everywhere")
    lam, mu = lame_parameters(young, poisson)
    stiffness = asm(_elasticity, vbasis, lam=lam, mu=mu)

    depth = phantom.depth_m
    top = vbasis.get_dofs(lambda p: np.isclose(p[1], 0.0))
    bottom = vbasis.get_dofs(lambda p: np.isclose(p[1], depth))
    u = np.zeros(vbasis.N)
    fixed = [top.all("u^2"), bottom.all("u^2")]
    u[top.all("u^2")] = compression.applied_strain * depth
    if compression.contact == "bonded":
        u[top.all("u^1")] = compression.lateral_slip_m
        fixed += [top.all("u^1"), bottom.all("u^1")]
    else:
        # pin the lateral displacement of the bottom node closest to the centre
        bottom_nodes = bottom.nodal["u^1"]
        node_x = vbasis.doflocs[0, bottom_nodes]
        pin = bottom_nodes[[int(np.argmin(np.abs(node_x - phantom.width_m / 2)))]]
        u[pin] = compression.lateral_slip_m
        fixed.append(pin)
    fixed_dofs = np.unique(np.concatenate(fixed))
    u = solve(*condense(stiffness, np.zeros(vbasis.N), x=u, D=fixed_dofs))
    # split the vector field into scalar P2 fields on one shared scalar basis
    (ux, sbasis), (uz, _) = vbasis.split(u)
    locator = _TensorMeshLocator(sbasis, xs, zs)
    return FemSolution(locator, u_x=ux, u_z=uz, depth_m=phantom.depth_m, width_m=phantom.width_m)
