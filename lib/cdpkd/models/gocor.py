"""GOCor-style locally optimized correspondence volume, our own implementation.

From the published description (Truong, Danelljan, Van Gool, Timofte, "GOCor:
Bringing Globally Optimized Correspondence Volumes into Your Neural Network",
NeurIPS 2020); no code from the authors' repository. Plain correlation scores
the pre-frame feature f1(x) against f2(x + d). GOCor replaces f1(x) by a
filter w(x) that is optimized, per pixel, to be *discriminative in its own
(reference) frame*: correlated with f1 around x it should give a learned
target y(d) peaked at d = 0 and low elsewhere. For RF speckle, whose
autocorrelation oscillates and decays slowly along depth, this acts like a
learned whitening filter and sharpens the cost-volume peak.

Per pixel x, with s_d(w) = w . f1(x + d) / C over the local window
d in [-ra, ra] x [-rl, rl] (the same 1/C normalisation as ``cdpkd.ops.correlation``):

    L(w) = 1/2 sum_d m(d) (s_d(w) - y(d))^2 + 1/2 (lambda / C) ||w||^2,

w_0 = f1(x), then K steepest-descent steps w <- w - gain * alpha * grad L with
the exact line-search step of this quadratic,
alpha = ||g||^2 / (sum_d m(d) (g . f1(x + d) / C)^2 + (lambda / C) ||g||^2).
Learned: y(d) and m(d) as piecewise-linear functions of the displacement
distance |d| (a handful of bin values), lambda, and a step gain in (0, 2)
(any gain in that range still decreases L). The output is the correlation of
the optimized filter with the post frame: N x D x H x W like
``cdpkd.ops.correlation``; with K = 0 steps it equals the plain correlation.

Why the reference frame and not f2 in L: a target peaked at d = 0 on the
*post* frame would pull every cost volume towards zero displacement.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cdpkd.ops import correlation


def window_offsets(radius_axial: int, radius_lateral: int) -> torch.Tensor:
    """D x 2 (dy, dx) offsets in the channel order of ``cdpkd.ops.correlation``."""
    dy, dx = torch.meshgrid(
        torch.arange(-radius_axial, radius_axial + 1),
        torch.arange(-radius_lateral, radius_lateral + 1),
        indexing="ij",
    )
    return torch.stack((dy.reshape(-1), dx.reshape(-1)), dim=1)


def transposed_correlation(
    r: torch.Tensor, f: torch.Tensor, radius_axial: int, radius_lateral: int
) -> torch.Tensor:
    """Adjoint of the correlation in its first argument.

    out[n, c, y, x] = (1 / C) sum_k r[n, k, y, x] f[n, c, y + dy_k, x + dx_k]
    (f zero outside the image), so that <correlation(a, f), r> = <a, out>.

    Shapes: r N x D x H x W, f N x C x H x W -> N x C x H x W. One displacement
    at a time over a zero-padded f, accumulated in place: memory O(N C H W)
    whatever D, also under autograd (each step saves only views).
    """
    ra, rl = radius_axial, radius_lateral
    n, c, h, w = f.shape
    if r.shape != (n, (2 * ra + 1) * (2 * rl + 1), h, w):
        raise ValueError(
            f"transposed_correlation: r has shape {tuple(r.shape)}, expected N x D x H x W for f {tuple(f.shape)}"
        )
    fp = F.pad(f, (rl, rl, ra, ra))
    out = torch.zeros_like(f, dtype=torch.promote_types(r.dtype, f.dtype))
    k = 0
    for dy in range(2 * ra + 1):
        for dx in range(2 * rl + 1):
            out.addcmul_(r[:, k : k + 1], fp[:, :, dy : dy + h, dx : dx + w])
            k += 1
    return out / c


class GOCorrelation(nn.Module):
    """Optimized local correspondence volume (see module docstring).

    Args:
        radius_axial, radius_lateral: window radii (level pixels).
        num_steps: unrolled steepest-descent steps K (0 = plain correlation).
        target_sigma: initial width (pixels) of the Gaussian target y(d).
        init_weight: initial data weight m(d) (constant over d).
        init_reg: initial lambda.

    forward(f1, f2): N x C x H x W each -> N x D x H x W, D = (2ra+1)(2rl+1).
    """

    def __init__(
        self,
        radius_axial: int,
        radius_lateral: int,
        num_steps: int = 3,
        *,
        target_sigma: float = 1.0,
        init_weight: float = 1.0,
        init_reg: float = 0.1,
    ) -> None:
        super().__init__()
        self.radius_axial, self.radius_lateral, self.num_steps = radius_axial, radius_lateral, num_steps
        dist = window_offsets(radius_axial, radius_lateral).to(torch.float32).norm(dim=1)  # D
        num_bins = int(math.ceil(float(dist.max()))) + 1
        centers = torch.arange(num_bins, dtype=torch.float32)
        # Triangular (linear-interpolation) basis over integer distance bins: D x num_bins.
        basis = (1.0 - (dist[:, None] - centers[None, :]).abs()).clamp_min(0.0)
        self.register_buffer("basis", basis, persistent=False)  # derived from the radii, not state
        self.target_bins = nn.Parameter(torch.exp(-0.5 * (centers / target_sigma) ** 2))
        inv_softplus = math.log(math.expm1(init_weight))
        self.weight_bins = nn.Parameter(torch.full((num_bins,), inv_softplus))
        self.log_reg = nn.Parameter(torch.tensor(math.log(init_reg)))
        self.step_logit = nn.Parameter(torch.tensor(0.0))  # gain = 2 sigmoid(.) = 1 at init

    # -- learned functions of the displacement, each a length-D vector
    def target(self) -> torch.Tensor:
        return self.basis @ self.target_bins

    def weights(self) -> torch.Tensor:
        return F.softplus(self.basis @ self.weight_bins)

    def reg(self) -> torch.Tensor:
        return self.log_reg.exp()

    def objective(self, w: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        """L(w) per pixel: N x H x W (for tests and diagnostics)."""
        ra, rl = self.radius_axial, self.radius_lateral
        c = f1.shape[1]
        s = correlation(w, f1, ra, rl)
        y, m = self.target().view(1, -1, 1, 1), self.weights().view(1, -1, 1, 1)
        return 0.5 * (m * (s - y) ** 2).sum(1) + 0.5 * self.reg() / c * (w * w).sum(1)

    def gradient(self, w: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        """Closed-form dL/dw per pixel: N x C x H x W."""
        ra, rl = self.radius_axial, self.radius_lateral
        y, m = self.target().view(1, -1, 1, 1), self.weights().view(1, -1, 1, 1)
        r = m * (correlation(w, f1, ra, rl) - y)
        return transposed_correlation(r, f1, ra, rl) + (self.reg() / f1.shape[1]) * w

    def step(self, w: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        """One steepest-descent step with exact line search: N x C x H x W -> same."""
        m = self.weights().view(1, -1, 1, 1)
        g = self.gradient(w, f1)
        q = correlation(g, f1, self.radius_axial, self.radius_lateral)
        gg = (g * g).sum(1, keepdim=True)
        curvature = (m * q * q).sum(1, keepdim=True) + (self.reg() / f1.shape[1]) * gg
        # eps only shortens the step (still a descent step) and keeps 0/0 out of the backward.
        alpha = gg / (curvature + 1e-8)
        gain = 2.0 * torch.sigmoid(self.step_logit)
        return w - gain * alpha * g

    def optimize(self, f1: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        """The optimized filters after ``num_steps`` (default K) steps: N x C x H x W."""
        w = f1
        for _ in range(self.num_steps if num_steps is None else num_steps):
            w = self.step(w, f1)
        return w

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        dtype = f1.dtype
        # Steps in fp32 (fp64 kept): the line search divides small numbers.
        work = torch.float64 if dtype == torch.float64 else torch.float32
        a, b = f1.to(work), f2.to(work)
        w = self.optimize(a)
        return correlation(w, b, self.radius_axial, self.radius_lateral).to(dtype)

    def extra_repr(self) -> str:
        return f"radius_axial={self.radius_axial}, radius_lateral={self.radius_lateral}, num_steps={self.num_steps}"
