"""The ICT-FaceKit head as a small, batched, differentiable PyTorch module.

    verts = neutral + identity @ identity_basis + expression @ expression_basis
            + eyeBlink_L/R * the person's lid corrections (`sie3d.head.eyelids`)

Units are centimetres; axes +x = the subject's left, +y up, +z out of the face (as glTF).

sie3d's rig is ICT's with two changes. `RIG_GAINS`: ICT's ``browDown`` at 1.0 lowers the brow by at most
3.4 mm (0.65 cm of movement, mostly towards the nose), which MediaPipe's blendshape model -- the tracker that
drives our avatars and the fit's own observer, not a judge -- reads back as 0.27 on a render of shared photos'
people (0.13 at their rest), where it reads 0.91 on a real scowl (`max_angry.jpg`); the mouth's shapes at 1.0
read 0.7-0.9. Doubled, the same people read 0.47 (0.18 at rest): still short of a full scowl, and the brows
stay clear of the lids.

`EYE_TURNS`: ICT's gaze shapes (``eyeLook*``) move only the lids, around eyeballs that ICT's own pipeline turns
with joints; in sie3d's rig the same shapes also turn the eyeball, about the centre of the sphere its sclera
lies on (`HeadModel.eyeball_centres`), so that everything that reads coefficients -- renders, GLB morph
targets, face trackers driving them by ARKit name -- turns the eyes. The turn is a morph like every other
shape (what glTF and ARKit rigs carry): the offset of each eyeball vertex is weight x (R - I)(p - centre), with
p the person's own eyeball, so in between the iris moves along a chord rather than an arc (at half of a 30
degree turn the eyeball is 3 % smaller).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from sie3d.assets import ict
from sie3d.head.names import ICT_NAMES

if TYPE_CHECKING:  # imported on first use (it needs the texture module's eyelash cards)
    from sie3d.head.eyelids import EyelidRig

N_IDENTITY = ict.N_IDENTITY
N_EXPRESSION = len(ICT_NAMES)
# ICT shape -> factor on its vertex offsets in sie3d's rig (the fit, renders, wrinkles and every export).
RIG_GAINS: dict[str, float] = {"browDown_L": 2.0, "browDown_R": 2.0}
BLINKS = [ICT_NAMES.index("eyeBlink_L"), ICT_NAMES.index("eyeBlink_R")]  # the shapes `lids` corrects
# Gaze shape -> (axis of the turn in head space, degrees at weight 1); the head's axes: +x the subject's left,
# +y up, +z out of the face, so a positive turn about +y looks toward the subject's left and one about +x looks
# down. 30 degrees sideways and 25 up or down: a comfortable range of gaze without turning the head.
EYE_TURNS: dict[str, tuple[tuple[float, float, float], float]] = {
    "eyeLookOut_L": ((0.0, 1.0, 0.0), 30.0), "eyeLookIn_L": ((0.0, 1.0, 0.0), -30.0),
    "eyeLookIn_R": ((0.0, 1.0, 0.0), 30.0), "eyeLookOut_R": ((0.0, 1.0, 0.0), -30.0),
    "eyeLookUp_L": ((1.0, 0.0, 0.0), -25.0), "eyeLookDown_L": ((1.0, 0.0, 0.0), 25.0),
    "eyeLookUp_R": ((1.0, 0.0, 0.0), -25.0), "eyeLookDown_R": ((1.0, 0.0, 0.0), 25.0),
}  # fmt: skip
EYEBALL_MATERIALS = {"L": ("M_ScleraLeft", "M_IrisLeft"), "R": ("M_ScleraRight", "M_IrisRight")}


@dataclass(frozen=True)
class HeadTopology:
    """Everything about the mesh that does not change with the coefficients."""

    faces: np.ndarray  # (F, 3) int64 triangles
    uvs: np.ndarray  # (T, 2) float32, UDIM tiles along u
    uv_faces: np.ndarray  # (F, 3) int64
    face_material: np.ndarray  # (F,) int16 index into material_names
    material_names: tuple[str, ...]
    landmarks_68: np.ndarray  # (68,) vertex ids

    def faces_of(self, *materials: str) -> np.ndarray:
        """Indices of the triangles whose material is one of `materials`."""
        ids = [self.material_names.index(m) for m in materials]
        return np.flatnonzero(np.isin(self.face_material, ids))


class HeadModel(nn.Module):
    """ICT-FaceKit: (identity (B,100), expression (B,53)) -> vertices (B,V,3) in centimetres."""

    def __init__(self, arrays: ict.IctArrays | None = None) -> None:
        super().__init__()
        arrays = with_rig_gains(arrays or ict.load())
        self.arrays = arrays  # the converted model with sie3d's gains (exporters read its bases and materials)
        if arrays.expression_names != ICT_NAMES:
            raise ValueError("ICT-FaceKit expression order differs from sie3d.head.names.ICT_NAMES")
        self.register_buffer("neutral", torch.from_numpy(arrays.neutral.astype(np.float32)))
        # Bases kept as (K, V*3) matrices: one matmul per evaluation.
        n_verts = arrays.neutral.shape[0]
        self.register_buffer(
            "identity_basis", torch.from_numpy(arrays.identity_basis.astype(np.float32).reshape(-1, n_verts * 3))
        )
        self.register_buffer(
            "expression_basis",
            torch.from_numpy(arrays.expression_basis.astype(np.float32).reshape(-1, n_verts * 3)),
        )
        self.topology = HeadTopology(
            faces=arrays.faces.astype(np.int64),
            uvs=arrays.uvs,
            uv_faces=arrays.uv_faces.astype(np.int64),
            face_material=arrays.polygon_material[arrays.face_polygon],
            material_names=arrays.material_names,
            landmarks_68=arrays.landmarks_68.astype(np.int64),
        )
        self.expression_names = ICT_NAMES
        # The eyeballs' vertices (2, N) -- left, right -- and per eye its gaze shapes and their (R - I).
        eyes = [np.unique(self.topology.faces[self.topology.faces_of(*EYEBALL_MATERIALS[side])])
                for side in ("L", "R")]  # fmt: skip
        self.register_buffer("eyeball_vertices", torch.from_numpy(np.stack(eyes)))
        # Each eyeball turns about the centre of the sphere its sclera lies on (`eyeball_centres`): ICT's eyeball
        # is no ball around the mean of its vertices (a dense cornea in front, a stalk behind), and turned about
        # that mean the sclera bulged 2.4 mm out of its own place at 30 degrees.
        neutral = arrays.neutral.astype(np.float64)
        spheres = [_sphere_vertices(neutral, np.unique(self.topology.faces[self.topology.faces_of(EYEBALL_MATERIALS[
            side][0])])) for side in ("L", "R")]  # fmt: skip
        self.register_buffer("eyeball_sphere_vertices", torch.from_numpy(np.stack(spheres)))
        shapes = [[n for n in EYE_TURNS if n.endswith(f"_{side}")] for side in ("L", "R")]
        self.register_buffer("eye_turn_shapes", torch.tensor([[ICT_NAMES.index(n) for n in s] for s in shapes]))
        self.register_buffer("eye_turn_matrices", torch.from_numpy(np.stack(
            [[rotation_matrix(*EYE_TURNS[n]) - np.eye(3) for n in s] for s in shapes]).astype(np.float32)))

    @property
    def n_verts(self) -> int:
        return int(self.neutral.shape[0])

    def forward(self, identity: Tensor | None = None, expression: Tensor | None = None, *,
                own_lids: bool = True) -> Tensor:  # fmt: skip
        """identity (B,100) and/or expression (B,53), either may be None (zeros) -> (B,V,3). The eyeBlink shapes
        carry the identity's lid corrections (`lids`, in-between shapes included; no gradient to the identity;
        identity None: the mean head's, as for zeros); `own_lids` False: ICT's plain shapes (the comparison)."""
        batch = _batch_size(identity, expression)
        shape = self.neutral.expand(batch, -1, -1)
        if identity is not None:
            _check(identity, N_IDENTITY, "identity")
            shape = shape + (identity.reshape(batch, -1) @ self.identity_basis).reshape(batch, self.n_verts, 3)
        if expression is None:
            return shape.clone() if identity is None else shape
        _check(expression, N_EXPRESSION, "expression")
        verts = shape + (expression.reshape(batch, -1) @ self.expression_basis).reshape(batch, self.n_verts, 3)
        weights = expression.reshape(batch, -1)[:, self.eye_turn_shapes]  # (B, 2 eyes, 4 shapes)
        if bool((weights != 0).any()):
            turns = torch.einsum("bek,bekni->beni", weights, self.eye_turn_offsets(shape))
            verts = verts.index_add(1, self.eyeball_vertices.reshape(-1), turns.reshape(batch, -1, 3))
        if not own_lids:
            return verts
        from sie3d.head.eyelids import inbetween_weights

        blink = expression.reshape(batch, -1)[:, BLINKS]  # (B, 2)
        if not bool((blink != 0).any()):  # (so at a blink of exactly 0 the gradient is ICT's own)
            return verts
        hats = inbetween_weights(blink)  # (B, 2, J)
        identities = np.zeros((batch, N_IDENTITY), np.float32) if identity is None else \
            identity.reshape(batch, -1).detach().cpu().numpy()  # fmt: skip
        people, person = np.unique(identities, axis=0, return_inverse=True)
        for k, one in enumerate(people):  # usually one person, posed B times
            rows = torch.from_numpy(np.flatnonzero(person.ravel() == k)).to(verts.device)
            shapes = self.lids.shapes(one)
            full, inbetween = (torch.from_numpy(a).to(verts) for a in (shapes.full, shapes.inbetween))
            lids = torch.einsum("bk,kvc->bvc", blink[rows], full)
            lids = lids + torch.einsum("bkj,kjvc->bvc", hats[rows], inbetween)
            verts = verts.index_add(0, rows, lids)
        return verts

    def expression_deltas(self, identity: np.ndarray | Tensor | None = None, *, lids: bool = True) -> Tensor:
        """(53, V, 3) per-blendshape vertex offsets: ICT's with sie3d's rig (`RIG_GAINS`, and `EYE_TURNS` for
        the mean head's eyeballs: what the lid corrections start from); with `identity` (100,), the person's
        morph targets -- their eyeballs turned about their own centres, their eyeBlink shapes corrected as
        `forward` poses them at full weight (the in-between shapes are targets of their own:
        `sie3d.avatar.lid_target_names`; `lids` False: ICT's plain eyeBlink shapes)."""
        deltas = self.expression_basis.reshape(N_EXPRESSION, self.n_verts, 3).clone()
        shape = self.neutral[None]
        if identity is not None:
            identity = torch.as_tensor(identity).detach().to(shape).reshape(1, -1)
            shape = shape + (identity @ self.identity_basis).reshape(1, self.n_verts, 3)
        turns = self.eye_turn_offsets(shape)[0]  # (2, 4, N, 3)
        for eye in range(2):
            deltas[self.eye_turn_shapes[eye][:, None], self.eyeball_vertices[eye][None]] += turns[eye]
        if identity is None or not lids:
            return deltas
        lids = self.lids.shapes(identity[0].cpu().numpy()).full
        deltas[BLINKS] += torch.from_numpy(lids).to(deltas)
        return deltas

    def eye_turn_offsets(self, shape: Tensor) -> Tensor:
        """(B, 2, 4, N, 3) the offsets of each eyeball's vertices (`eyeball_vertices`) of the heads `shape`
        (B, V, 3) under its four gaze shapes (`eye_turn_shapes`) at weight 1: (R - I)(p - centre)."""
        eyes = shape[:, self.eyeball_vertices] - self.eyeball_centres(shape)[:, :, None]  # (B, 2, N, 3)
        return torch.einsum("ekij,benj->bekni", self.eye_turn_matrices, eyes)

    def eyeball_centres(self, shape: Tensor) -> Tensor:
        """(B, 2, 3) the centres the eyeballs (left, right) of the heads `shape` (B, V, 3) turn about: the
        least-squares sphere through each sclera's ball (`eyeball_sphere_vertices`)."""
        return sphere_centre(shape[:, self.eyeball_sphere_vertices])

    @cached_property
    def lids(self) -> EyelidRig:
        """The per-identity eyeBlink corrections (`sie3d.head.eyelids`)."""
        from sie3d.head.eyelids import EyelidRig
        from sie3d.head.texture import material_parts

        return EyelidRig(self.neutral.cpu().numpy(), self.identity_basis.cpu().numpy(),
                         self.expression_deltas().cpu().numpy(), self.topology.faces,
                         material_parts(self, "M_EyeLashes"))  # fmt: skip

    def surface_points(self, tri: Tensor, bary: Tensor) -> SurfacePointModel:
        """A linear model of the points (triangle `tri`, barycentrics `bary`) on the surface."""
        return SurfacePointModel.build(self, tri, bary)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals of a triangle mesh (counter-clockwise = outward); numpy (the
    renderer's, for tensors: `sie3d.render.shade.vertex_normals`)."""
    face_normals = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    normals = np.zeros_like(verts)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    return normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12)


def sphere_centre(points: Tensor) -> Tensor:
    """(..., 3) the centre of the least-squares sphere through `points` (..., N, 3): |p|^2 = 2 c.p + k."""
    a = torch.cat([2 * points, torch.ones_like(points[..., :1])], -1)
    b = (points * points).sum(-1, keepdim=True)
    return torch.linalg.solve(a.transpose(-1, -2) @ a, a.transpose(-1, -2) @ b)[..., :3, 0]


def _sphere_vertices(verts: np.ndarray, ids: np.ndarray, tolerance_cm: float = 0.05) -> np.ndarray:
    """The vertices of `ids` that lie on one sphere: fitted to all, then again to those within `tolerance_cm` of
    the last fit, four times in all (ICT's sclera also has a stalk behind the eyeball)."""
    kept = ids
    for _ in range(4):
        points = torch.from_numpy(verts[kept])
        centre = sphere_centre(points).numpy()
        radius = np.sqrt(((verts[kept] - centre) ** 2).sum(1)).mean()
        kept = ids[np.abs(np.linalg.norm(verts[ids] - centre, axis=1) - radius) < tolerance_cm]
    return kept


def rotation_matrix(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    """(3, 3) the rotation by `degrees` about the unit `axis` (right-handed)."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def with_rig_gains(arrays: ict.IctArrays, gains: dict[str, float] = RIG_GAINS) -> ict.IctArrays:
    """ICT's arrays with each shape of `gains` scaled by its factor (a new expression basis; the other arrays
    shared)."""
    basis = arrays.expression_basis.copy()
    for name, gain in gains.items():
        basis[arrays.expression_names.index(name)] *= gain
    return dataclasses.replace(arrays, expression_basis=basis)


@dataclass
class SurfacePointModel:
    """The head model evaluated only at N surface points: what a landmark fit needs (tiny and fast)."""

    neutral: Tensor  # (N, 3)
    identity_basis: Tensor  # (100, N*3)
    expression_basis: Tensor  # (53, N*3)

    @staticmethod
    def build(head: HeadModel, tri: Tensor, bary: Tensor) -> SurfacePointModel:
        corners = torch.as_tensor(head.topology.faces, device=tri.device)[tri]  # (N, 3) vertex ids

        def at_points(per_vertex: Tensor) -> Tensor:  # (K, V*3) -> (K, N*3)
            k = per_vertex.shape[0]
            grid = per_vertex.reshape(k, head.n_verts, 3)[:, corners]  # (K, N, 3 corners, 3 xyz)
            return (grid * bary[None, :, :, None]).sum(2).reshape(k, -1)

        return SurfacePointModel(
            neutral=at_points(head.neutral.reshape(1, -1))[0].reshape(-1, 3),
            identity_basis=at_points(head.identity_basis),
            expression_basis=at_points(head.expression_basis),
        )

    @staticmethod
    def cat(*models: SurfacePointModel) -> SurfacePointModel:
        """One model of all the points of `models`, in order."""

        def joined(name: str) -> Tensor:
            parts = [getattr(m, name) for m in models]
            return torch.cat([p.reshape(len(p), -1, 3) for p in parts], 1).reshape(len(parts[0]), -1)

        return SurfacePointModel(torch.cat([m.neutral for m in models]), joined("identity_basis"),
                                 joined("expression_basis"))  # fmt: skip

    def __call__(self, identity: Tensor, expression: Tensor) -> Tensor:
        """identity (B,100), expression (B,53) -> (B,N,3)."""
        offsets = identity @ self.identity_basis + expression @ self.expression_basis
        return self.neutral + offsets.reshape(offsets.shape[0], -1, 3)


def _batch_size(*tensors: Tensor | None) -> int:
    sizes = {t.shape[0] for t in tensors if t is not None}
    if len(sizes) > 1:
        raise ValueError(f"identity and expression batch sizes differ: {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def _check(coefficients: Tensor, width: int, name: str) -> None:
    if coefficients.ndim != 2 or coefficients.shape[1] != width:
        raise ValueError(f"{name} coefficients must have shape (B, {width}), got {tuple(coefficients.shape)}")
