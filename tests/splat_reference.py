"""A pure-PyTorch 3D Gaussian splat renderer: the test oracle for `sie3d.export.splats` (not shipped).

The forward pass of the INRIA 3DGS rasterizer, written for clarity: each Gaussian's 3D covariance
R S S^T R^T is carried into the camera and projected with the Jacobian of the perspective (EWA
splatting), widened by 0.3 px^2 as the reference code does; Gaussians are sorted by camera depth and
composited front to back per 16 x 16 pixel tile, alpha = min(0.99, opacity * exp(-d^T S2^-1 d / 2)),
contributions below 1/255 dropped. Conventions of `sie3d.render.camera`: OpenCV cameras, pixel centres at
+0.5. Colours are composited as they are (display colours, as splat viewers do).
"""

from __future__ import annotations

import numpy as np
import torch

TILE = 16


def quaternion_matrices(quats: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotation matrices of (N, 4) quaternions (w, x, y, z), normalised first."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=1).unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=1).reshape(-1, 3, 3)  # fmt: skip


def render_splats(means: np.ndarray, quats: np.ndarray, scales: np.ndarray, colors: np.ndarray,
                  opacities: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray, width: int, height: int,
                  background: tuple[float, float, float]) -> np.ndarray:  # fmt: skip
    """(H, W, 3) float image of N Gaussians: ``means`` (N, 3) world, ``quats`` (N, 4) (w, x, y, z),
    ``scales`` (N, 3) standard deviations, ``colors`` (N, 3), ``opacities`` (N,); ``K`` (3, 3) pixel
    intrinsics, ``world_to_cam`` (4, 4) world -> OpenCV camera."""
    t = {k: torch.as_tensor(np.asarray(v), dtype=torch.float64)
         for k, v in dict(means=means, quats=quats, scales=scales, colors=colors, opacities=opacities, K=K,
                          w2c=world_to_cam).items()}  # fmt: skip
    rotation, translation = t["w2c"][:3, :3], t["w2c"][:3, 3]
    cam = t["means"] @ rotation.T + translation
    front = cam[:, 2] > 0.01
    cam = cam[front]
    r = quaternion_matrices(t["quats"][front])
    m = r * t["scales"][front][:, None, :]
    cov_world = m @ m.transpose(1, 2)
    cov_cam = rotation @ cov_world @ rotation.T
    fx, fy, cx, cy = t["K"][0, 0], t["K"][1, 1], t["K"][0, 2], t["K"][1, 2]
    x, y, z = cam.unbind(1)
    jac = torch.zeros(len(cam), 2, 3, dtype=torch.float64)
    jac[:, 0, 0], jac[:, 0, 2] = fx / z, -fx * x / z**2
    jac[:, 1, 1], jac[:, 1, 2] = fy / z, -fy * y / z**2
    cov2 = jac @ cov_cam @ jac.transpose(1, 2) + 0.3 * torch.eye(2, dtype=torch.float64)
    conic = torch.linalg.inv(cov2)
    centre = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=1)
    radius = 3 * torch.sqrt(torch.linalg.eigvalsh(cov2)[:, 1])
    color, opacity = t["colors"][front], t["opacities"][front]
    order = torch.argsort(z)  # front to back
    centre, radius, conic, color, opacity = centre[order], radius[order], conic[order], color[order], opacity[order]

    image = torch.empty(height, width, 3, dtype=torch.float64)
    bg = torch.tensor(background, dtype=torch.float64)
    for y0 in range(0, height, TILE):
        for x0 in range(0, width, TILE):
            y1, x1 = min(y0 + TILE, height), min(x0 + TILE, width)
            hit = ((centre[:, 0] + radius >= x0) & (centre[:, 0] - radius <= x1) & (centre[:, 1] + radius >= y0)
                   & (centre[:, 1] - radius <= y1)).nonzero()[:, 0]  # fmt: skip
            py, px = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64) + 0.5,
                                    torch.arange(x0, x1, dtype=torch.float64) + 0.5, indexing="ij")  # fmt: skip
            pixels = torch.stack([px.reshape(-1), py.reshape(-1)], dim=1)  # (P, 2)
            if len(hit) == 0:
                image[y0:y1, x0:x1] = bg
                continue
            d = pixels[None] - centre[hit][:, None]  # (G, P, 2)
            q = conic[hit]
            power = -0.5 * (q[:, None, 0, 0] * d[..., 0] ** 2 + 2 * q[:, None, 0, 1] * d[..., 0] * d[..., 1]
                            + q[:, None, 1, 1] * d[..., 1] ** 2)  # fmt: skip
            alpha = torch.clamp(opacity[hit][:, None] * torch.exp(power), max=0.99)
            alpha = torch.where((alpha >= 1 / 255) & (power <= 0), alpha, torch.zeros_like(alpha))
            transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:1]), 1 - alpha]), dim=0)  # (G+1, P)
            weights = alpha * transmittance[:-1]
            rgb = weights.T @ color[hit] + transmittance[-1][:, None] * bg
            image[y0:y1, x0:x1] = rgb.reshape(y1 - y0, x1 - x0, 3)
    return image.numpy()
