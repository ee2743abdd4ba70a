"""The morphable model: one ``nn.Module`` with buffers, batch-first, used by every later stage.

Geometry is in decimetres (the unit of Deep3DFaceRecon's BFM_model_front.mat, so its camera —
distance 10, focal 1015 at 224² — applies unchanged); the mean shape is centred at the origin,
y up, the face looking down +z. Colours (albedo) are floats in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from facegcn.morphable.layout import CoeffLayout, Coefficients
from facegcn.morphable.parts import ModelParts


@dataclass(frozen=True)
class FaceMesh:
    """A batch of face meshes in model space (before the rigid transform)."""

    vertices: torch.Tensor  # (B, V, 3) decimetres
    normals: torch.Tensor  # (B, V, 3) unit
    albedo: torch.Tensor  # (B, V, 3) in [0, 1] (unclamped during optimisation)
    faces: torch.Tensor  # (F, 3) int64


def vertex_face_table(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(V, D) table of the triangles adjacent to each vertex, padded with F (a dummy zero normal)."""
    faces = np.asarray(faces, np.int64)
    F = len(faces)
    vid = faces.reshape(-1)
    fid = np.repeat(np.arange(F), 3)
    order = np.argsort(vid, kind="stable")
    vid, fid = vid[order], fid[order]
    counts = np.bincount(vid, minlength=n_vertices)
    D = max(int(counts.max()) if len(counts) else 1, 1)
    table = np.full((n_vertices, D), F, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(vid)) - starts[vid]
    table[vid, pos] = fid
    return table


@dataclass
class ModelData:
    """Plain numpy arrays a loader produces (decimetres, [0,1] colours, 0-based indices)."""

    name: str
    mean_shape: np.ndarray  # (V, 3)
    id_basis: np.ndarray  # (3V, n_id), row 3*v + axis
    exp_basis: np.ndarray  # (3V, n_exp)
    mean_albedo: np.ndarray  # (V, 3)
    albedo_basis: np.ndarray  # (3V, n_tex)
    faces: np.ndarray  # (F, 3)
    landmarks68: np.ndarray  # (68,)
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    uv: np.ndarray | None = None  # (T, 2) in [0, 1], v up (OBJ convention)
    faces_uv: np.ndarray | None = None  # (F, 3) into uv
    exp_names: list[str] | None = None
    skin_weight: np.ndarray | None = None  # (V,) in [0, 1]
    info: dict[str, str] = field(default_factory=dict)
    recenter: bool = True
    parts: ModelParts | None = None  # the closing parts (ICT), same units and coefficients
    # the albedo basis in Kronecker form (phi (V, k), colour (n_tex, k, 3)) when it has one (ICT's
    # synthetic basis: facegcn.morphable.albedo.albedo_factors): albedo() then reads ~9x fewer bytes
    albedo_factors: tuple[np.ndarray, np.ndarray] | None = None


class MorphableModel(nn.Module):
    """Linear 3DMM: S = S̄ + B_id α + B_exp β,  T = T̄ + B_tex δ."""

    def __init__(self, data: ModelData):
        super().__init__()
        V = data.mean_shape.shape[0]
        self.name = data.name
        self.info = dict(data.info)
        self.exp_names = list(data.exp_names) if data.exp_names is not None else None
        mean = np.asarray(data.mean_shape, np.float32)
        offset = np.zeros((1, 3), np.float32)
        if data.recenter:
            offset = mean.mean(0, keepdims=True)
            mean = mean - offset
        _check(data.id_basis.shape == (3 * V, data.id_basis.shape[1]), "identity basis shape")
        _check(data.exp_basis.shape[0] == 3 * V, "expression basis shape")
        _check(data.albedo_basis.shape[0] == 3 * V, "albedo basis shape")
        _check(data.mean_albedo.shape == (V, 3), "mean albedo shape")
        _check(data.faces.ndim == 2 and data.faces.shape[1] == 3, "faces must be (F, 3)")
        _check(int(data.faces.min()) >= 0 and int(data.faces.max()) < V, "face indices out of range")
        _check(data.landmarks68.shape == (68,) and int(data.landmarks68.max()) < V, "68 landmark indices")
        f32 = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        self.register_buffer("mean_shape", f32(mean))
        self.register_buffer("id_basis", f32(data.id_basis))
        self.register_buffer("exp_basis", f32(data.exp_basis))
        self.register_buffer("mean_albedo", f32(data.mean_albedo))
        self.register_buffer("albedo_basis", f32(data.albedo_basis))
        self.register_buffer("albedo_phi", None, persistent=False)
        self.register_buffer("albedo_colour", None, persistent=False)
        if data.albedo_factors is not None:
            phi, colour = data.albedo_factors
            _check(phi.shape[0] == V and colour.shape == (data.albedo_basis.shape[1], phi.shape[1], 3),
                   "albedo factor shapes")
            self.register_buffer("albedo_phi", f32(phi), persistent=False)
            self.register_buffer("albedo_colour", f32(colour.reshape(len(colour), -1)), persistent=False)
        self.register_buffer("faces", torch.as_tensor(np.asarray(data.faces, np.int64)))
        self.register_buffer("landmark_idx", torch.as_tensor(np.asarray(data.landmarks68, np.int64)))
        self.register_buffer("point_buf", torch.as_tensor(vertex_face_table(data.faces, V)))
        skin = data.skin_weight
        if skin is None:
            skin = np.zeros(V, np.float32)
            if "skin" in data.regions:
                skin[np.asarray(data.regions["skin"], np.int64)] = 1.0
            else:
                skin[:] = 1.0
        self.register_buffer("skin_weight", f32(skin))
        self.region_names = sorted(data.regions)
        for k, v in data.regions.items():
            self.register_buffer(f"region_{k}", torch.as_tensor(np.asarray(v, np.int64)), persistent=False)
        if data.uv is not None and data.faces_uv is not None:
            self.register_buffer("uv", f32(data.uv))
            self.register_buffer("faces_uv", torch.as_tensor(np.asarray(data.faces_uv, np.int64)))
        else:
            self.uv = None
            self.faces_uv = None
        self.layout = CoeffLayout(
            id=self.id_basis.shape[1], exp=self.exp_basis.shape[1], tex=self.albedo_basis.shape[1]
        )
        self._init_parts(data.parts, offset[0])

    def _init_parts(self, parts: ModelParts | None, offset: np.ndarray) -> None:
        """The closing parts, moved by the same recentring offset as the face (buffers are not
        persistent: they come from the model file, not from checkpoints)."""
        self.parts = None if parts is None else parts.shifted(offset)
        if self.parts is None:
            return
        p, V = self.parts, self.n_vertices
        _check(p.n_face_vertices == V and p.id_deltas.shape[0] == self.layout.id
               and p.exp_deltas.shape[0] == self.layout.exp, "parts do not match the face model")
        P = p.n_vertices
        self.register_buffer("part_mean", torch.from_numpy(p.neutral), persistent=False)
        self.register_buffer("part_id_deltas", torch.from_numpy(p.id_deltas.reshape(-1, 3 * P)), persistent=False)
        self.register_buffer("part_exp_deltas", torch.from_numpy(p.exp_deltas.reshape(-1, 3 * P)), persistent=False)
        faces = np.concatenate([self.faces.numpy(), p.faces])
        self.register_buffer("closed_faces", torch.as_tensor(faces, dtype=torch.int64), persistent=False)
        # smoothing surfaces: the skin (face + head_and_neck) and each interior part on its own
        skin = p.group_index("head_and_neck")
        vs = np.concatenate([np.zeros(V, np.int64), np.where(p.vertex_group == skin, 0, p.vertex_group + 1)])
        fs = np.concatenate([np.zeros(self.n_faces, np.int64), np.where(p.face_group == skin, 0, p.face_group + 1)])
        self.register_buffer("_closed_corner_weight", torch.as_tensor(vs[faces] == fs[:, None], dtype=torch.float32),
                             persistent=False)

    # ----------------------------------------------------------------- sizes
    @property
    def n_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def n_faces(self) -> int:
        return self.faces.shape[0]

    @property
    def has_uv(self) -> bool:
        return self.uv is not None

    def region(self, name: str) -> torch.Tensor:
        if name not in self.region_names:
            raise KeyError(f"model {self.name!r} has no region {name!r} (has {self.region_names})")
        return getattr(self, f"region_{name}")

    # ------------------------------------------------------------- geometry
    def shape(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_id), (B, n_exp) → vertices (B, V, 3) in decimetres."""
        offs = id_coeff @ self.id_basis.T
        if exp_coeff is not None:
            offs = offs + exp_coeff @ self.exp_basis.T
        return self.mean_shape.unsqueeze(0) + offs.view(id_coeff.shape[0], -1, 3)

    @property
    def n_closed_vertices(self) -> int:
        """V + P: the face's vertices followed by the parts' (V without parts)."""
        return self.n_vertices + (self.parts.n_vertices if self.parts is not None else 0)

    def closed_shape(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor | None = None) -> torch.Tensor:
        """The closed head: the face (:meth:`shape`) followed by the part vertices.

        Args:
            id_coeff: ``(B, n_id)``; exp_coeff: ``(B, n_exp)`` or None (the same as :meth:`shape`).

        Returns:
            ``(B, V + P, 3)`` float32 in the model's units (decimetres); the first ``V`` rows are
            exactly :meth:`shape`. Without parts (BFM...): :meth:`shape`, ``(B, V, 3)``.
        """
        face = self.shape(id_coeff, exp_coeff)
        if self.parts is None:
            return face
        offs = id_coeff @ self.part_id_deltas
        if exp_coeff is not None:
            offs = offs + exp_coeff @ self.part_exp_deltas
        return torch.cat([face, self.part_mean.unsqueeze(0) + offs.view(id_coeff.shape[0], -1, 3)], 1)

    def closed_mesh_faces(self) -> torch.Tensor:
        """``(F + Fp, 3)`` int64: the face's triangles, then the parts' (:attr:`faces` without parts)."""
        return self.closed_faces if self.parts is not None else self.faces

    def closed_vertex_normals(self, verts: torch.Tensor) -> torch.Tensor:
        """Unit normals ``(B, V + P, 3)`` of :meth:`closed_shape` vertices: area-weighted over the
        triangles of the vertex's own surface — the skin (face + head and neck) or its interior
        part — so the mouth / eye sockets hanging off the lips and lids do not bend the skin's
        normals. Without parts: :meth:`vertex_normals`."""
        if self.parts is None:
            return self.vertex_normals(verts)
        f = self.closed_faces
        v0, v1, v2 = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
        fn = torch.cross(v1 - v0, v2 - v0, dim=-1)
        vn = torch.zeros_like(verts)
        w = self._closed_corner_weight.to(verts.dtype)
        for k in range(3):
            vn = vn.index_add(1, f[:, k], fn * w[:, k, None])
        return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)

    def albedo(self, tex_coeff: torch.Tensor) -> torch.Tensor:
        """(B, n_tex) → per-vertex albedo (B, V, 3) in [0, 1] (not clamped). By the basis's Kronecker
        factors when the model has them (``phi @ (δ @ colour)``), else (and in
        :meth:`albedo_reference`) by the dense ``(3V, n_tex)`` basis."""
        if self.albedo_phi is None:
            return self.albedo_reference(tex_coeff)
        B = tex_coeff.shape[0]
        mix = (tex_coeff @ self.albedo_colour).view(B, self.albedo_phi.shape[1], 3)  # (B, k, 3)
        return self.mean_albedo.unsqueeze(0) + torch.matmul(self.albedo_phi, mix)

    def albedo_reference(self, tex_coeff: torch.Tensor) -> torch.Tensor:
        """:meth:`albedo` by the dense basis: ``mean + B_tex δ``."""
        offs = tex_coeff @ self.albedo_basis.T
        return self.mean_albedo.unsqueeze(0) + offs.view(tex_coeff.shape[0], -1, 3)

    def face_normals(self, verts: torch.Tensor) -> torch.Tensor:
        f = self.faces
        v0, v1, v2 = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
        return torch.cross(v1 - v0, v2 - v0, dim=-1)  # area-weighted (not normalised)

    def vertex_normals(self, verts: torch.Tensor) -> torch.Tensor:
        """Area-weighted average of adjacent face normals, unit length; (B, V, 3).

        The sum over the incident faces is a sparse vertex × face incidence product with a
        hand-written backward (:class:`_NormalSums`): the gather form
        (:meth:`vertex_normals_reference`) differentiates into accumulating ``index_put_``
        scatters, ~3x slower on a CPU and the largest cost of a 3DMM forward + backward."""
        vn = _NormalSums.apply(verts, self._incidence(verts))
        return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)

    def vertex_normals_reference(self, verts: torch.Tensor) -> torch.Tensor:
        """:meth:`vertex_normals` by gathering each vertex's faces (``point_buf``): the reference."""
        fn = self.face_normals(verts)
        fn = torch.cat([fn, fn.new_zeros(fn.shape[0], 1, 3)], dim=1)
        vn = fn[:, self.point_buf].sum(dim=2)
        return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)

    def _incidence(self, like: torch.Tensor) -> "_Incidence":
        key = (like.device, like.dtype)
        cache = self.__dict__.setdefault("_incidence_cache", {})
        inc = cache.get(key)
        if inc is None or inc.faces is not self.faces:
            inc = cache[key] = _Incidence(self.faces, self.n_vertices, like.dtype, like.device)
        return inc

    def landmarks(self, verts: torch.Tensor) -> torch.Tensor:
        """(B, V, D) → (B, 68, D): works on 3-D vertices and on projected 2-D points."""
        return verts[:, self.landmark_idx]

    # ---------------------------------------------------------- coefficients
    def split(self, coeffs: torch.Tensor) -> Coefficients:
        return self.layout.split(coeffs)

    def join(self, c: Coefficients) -> torch.Tensor:
        return self.layout.join(c)

    def forward(self, c: Coefficients | torch.Tensor) -> FaceMesh:
        if isinstance(c, torch.Tensor):
            c = self.split(c)
        verts = self.shape(c.id, c.exp)
        return FaceMesh(verts, self.vertex_normals(verts), self.albedo(c.tex), self.faces)

    def mirror_index(self) -> torch.Tensor:
        """Index of each vertex's left/right mirror (x → −x) on the mean shape (nearest vertex)."""
        from scipy.spatial import cKDTree

        v = self.mean_shape.detach().cpu().numpy()
        m = v * np.array([-1.0, 1.0, 1.0], np.float32)
        _, idx = cKDTree(v).query(m)
        return torch.as_tensor(idx, dtype=torch.long, device=self.mean_shape.device)

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "vertices": self.n_vertices,
            "triangles": self.n_faces,
            "identity_components": self.layout.id,
            "expression_components": self.layout.exp,
            "albedo_components": self.layout.tex,
            "coefficients": self.layout.total,
            "landmarks": int(self.landmark_idx.numel()),
            "uv": bool(self.has_uv),
            "regions": {k: int(self.region(k).numel()) for k in self.region_names},
            "units": "decimetres",
            **self.info,
        }


class _Incidence:
    """Sparse operators of a triangle list (CSR, values 1): ``sum_faces (V, F)`` (vertex ∋ face),
    its transpose, and ``corners (V, 3F)`` (vertex = corner ``k`` of face ``f``, column ``3f + k``)."""

    def __init__(self, faces: torch.Tensor, n_vertices: int, dtype: torch.dtype, device: torch.device):
        import warnings

        self.faces = faces
        f = faces.detach().to("cpu", torch.int64)
        self.faces_np = f.contiguous().numpy()
        F = f.shape[0]
        flat = f.reshape(-1)
        self.flat = flat.to(device)
        order = torch.argsort(flat, stable=True)  # corners c = 3f + k by vertex flat[c], then by c
        counts = torch.bincount(flat, minlength=n_vertices)
        crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        ones = torch.ones(3 * F, dtype=dtype)
        # vertex × face: the same rows, column f = c // 3 (a face with a repeated vertex counts twice,
        # as in the gather form's table)
        fcol = (order // 3)
        # face × vertex: row f has its three corners' vertices
        fcrow = torch.arange(0, 3 * F + 1, 3, dtype=torch.int64)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            mk = lambda cr, co, n: torch.sparse_csr_tensor(cr.to(device), co.to(device), ones.to(device),  # noqa: E731
                                                           size=n, check_invariants=False)
            self.sum_faces = mk(crow, fcol, (n_vertices, F))
            self.sum_faces_t = mk(fcrow, f.sort(dim=1).values.reshape(-1), (F, n_vertices))
            self.corners = mk(crow, order, (n_vertices, 3 * F))
        self.shape = (n_vertices, F)


class _NormalSums(torch.autograd.Function):
    """``vn[b, i] = sum_{f ∋ i} (v1 - v0) x (v2 - v0)`` (unnormalised), backward by hand:
    ``g_f = sum_faces^T g``, ``de1 = e2 x g_f``, ``de2 = g_f x e1``, scattered to the corners.
    CPU float tensors: one numba pass over the faces each way (:mod:`._normal_kernels`);
    elsewhere the sparse incidence products of :class:`_Incidence`."""

    @staticmethod
    def forward(ctx, verts, inc):
        ctx.inc = inc
        if _use_kernels(verts):
            from facegcn.morphable._normal_kernels import normal_sums

            v = verts.detach().contiguous()
            out = torch.empty_like(v)
            normal_sums(v.numpy(), inc.faces_np, out.numpy())
            ctx.save_for_backward(v)
            ctx.kernel = True
            return out
        ctx.kernel = False
        B = verts.shape[0]
        V, F = inc.shape
        t = verts.index_select(1, inc.flat).view(B, F, 3, 3)
        e1 = t[:, :, 1] - t[:, :, 0]
        e2 = t[:, :, 2] - t[:, :, 0]
        fn = torch.linalg.cross(e1, e2, dim=-1)  # (B, F, 3)
        vn = inc.sum_faces @ fn.transpose(0, 1).reshape(F, B * 3)
        ctx.save_for_backward(e1, e2)
        return vn.view(V, B, 3).transpose(0, 1)

    @staticmethod
    def backward(ctx, g):
        inc = ctx.inc
        if ctx.kernel:
            from facegcn.morphable._normal_kernels import normal_sums_backward

            (v,) = ctx.saved_tensors
            gc = g.to(v.dtype).contiguous()
            gv = torch.empty_like(v)
            normal_sums_backward(v.numpy(), inc.faces_np, gc.numpy(), gv.numpy())
            return gv, None
        e1, e2 = ctx.saved_tensors
        V, F = inc.shape
        B = g.shape[0]
        gf = (inc.sum_faces_t @ g.transpose(0, 1).reshape(V, B * 3)).view(F, B, 3).transpose(0, 1)
        ge1 = torch.linalg.cross(e2, gf, dim=-1)
        ge2 = torch.linalg.cross(gf, e1, dim=-1)
        corners = torch.stack([-(ge1 + ge2), ge1, ge2], 2)  # (B, F, 3 corners, 3)
        gv = inc.corners @ corners.permute(1, 2, 0, 3).reshape(3 * F, B * 3)
        return gv.view(V, B, 3).transpose(0, 1), None


def _use_kernels(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and _KERNELS_ENABLED


_KERNELS_ENABLED = True  # tests switch it off to check the torch (CUDA) form on the CPU


def _check(ok: bool, what: str) -> None:
    if not ok:
        from facegcn.errors import ModelFileError

        raise ModelFileError(f"invalid morphable model: {what}")
