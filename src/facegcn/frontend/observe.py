"""``observe(photo)``: everything the losses need to know about a photo, per face."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from facegcn.errors import ConfigError, InputError, NoFaceError
from facegcn.frontend.align import (
    ALIGNED_SIZE,
    Alignment,
    align_photo,
    estimate_alignment,
    five_from_68,
    photo_coverage,
)
from facegcn.frontend.detect import (
    Candidate,
    DetectorConfig,
    dlib_rect_from_box,
    dlib_rect_from_points5,
    find_faces,
    shape_points,
)
from facegcn.frontend.dense import DenseFace, face_spec, observe_dense, points5_from_dense
from facegcn.frontend.geometry import compose_affine
from facegcn.frontend.identity import IdentityEncoder, chip_from_photo, face_chip_transform
from facegcn.frontend.mask import FACE_LABELS, FaceSegmenter, LandmarkSkinSegmenter
from facegcn.io.image import Photo, load_image


@dataclass(frozen=True)
class FrontendConfig:
    """Options of :func:`observe`.

    ``rotate``: fit the in-plane rotation in the alignment (False = scale + translation only, as
    Deep3DFaceRecon). ``identity``: "port" (the PyTorch port on dlib's chip, default), "dlib"
    (dlib's own ``compute_face_descriptor``) or None (skip; ``identity`` is then all-NaN).
    ``segmenter``: any :class:`FaceSegmenter` (default :class:`LandmarkSkinSegmenter`).
    ``dense``: also run MediaPipe's face mesh + iris networks (:mod:`facegcn.frontend.dense`) and
    fill the observation's ``dense*`` / ``iris*`` / ``head_pose`` fields."""

    detection: DetectorConfig = field(default_factory=DetectorConfig)
    rotate: bool = True
    identity: str | None = "port"
    segmenter: FaceSegmenter | None = None
    dense: bool = True


@dataclass(frozen=True, eq=False)
class FaceObservation:
    """One face of a photo. Coordinates are (x, y) pixels, pixel centres at integers.

    Tensors (torch): ``image`` (3,224,224) float32 in [0,1] — the aligned crop (black outside the
    photo); ``labels`` (224,224) int64 region ids (0 background, 1 skin, 2 brows, 3 eyes, 4 nose,
    5 mouth, 6 facial hair); ``skin_weight`` (224,224) float32 in [0,1]; ``face_mask`` (224,224)
    bool = the labels of :data:`~facegcn.frontend.mask.FACE_LABELS` (facial hair is not skin);
    ``identity`` (128,) float32 dlib descriptor of the photo (computed the dlib way: 5-point shape
    predictor, 150² chip with padding 0.25, ResNet).

    Arrays (numpy float64): ``transform`` (2,3) similarity photo → aligned and ``transform_inv``
    aligned → photo; ``landmarks`` (68,2) in the aligned crop, ``landmarks_photo`` (68,2) in the
    photo; ``points5``/``points5_photo`` the 5 alignment points (eye centres, nose tip, mouth
    corners); ``box`` (4,) x1,y1,x2,y2 in the photo; ``chip_transform`` (2,3) maps identity-chip
    pixels → aligned pixels (for :func:`facegcn.frontend.identity.chip_from_aligned`).
    ``score``: face probability in [0,1]; ``detector_score``: the detector's raw score.

    Dense landmarks (None when ``FrontendConfig.dense`` is off): ``dense_photo`` (468,3) MediaPipe's
    face mesh in photo pixels (x, y, z: relative depth in the x/y scale, smaller = nearer) and
    ``dense`` (468,3) the same in the aligned crop (z scaled like x, y); ``dense_score`` the mesh
    network's face probability; ``iris_photo`` / ``iris`` (2,5,3) image-left then image-right iris
    (centre first); ``head_pose`` (3,) degrees pitch, yaw, roll from the dense points
    (:func:`facegcn.frontend.dense.head_pose`, the renderer's angle convention)."""

    image: torch.Tensor
    transform: np.ndarray
    transform_inv: np.ndarray
    landmarks: np.ndarray
    landmarks_photo: np.ndarray
    points5: np.ndarray
    points5_photo: np.ndarray
    box: np.ndarray
    score: float
    detector_score: float
    detector: str
    labels: torch.Tensor
    skin_weight: torch.Tensor
    face_mask: torch.Tensor
    identity: torch.Tensor
    chip_transform: np.ndarray
    photo_size: tuple[int, int]  # (width, height)
    dense: np.ndarray | None = None
    dense_photo: np.ndarray | None = None
    dense_score: float | None = None
    iris: np.ndarray | None = None
    iris_photo: np.ndarray | None = None
    head_pose: np.ndarray | None = None

    @property
    def alignment(self) -> Alignment:
        return Alignment(self.transform, self.transform_inv, ALIGNED_SIZE)

    @property
    def yaw_deg(self) -> float | None:
        """The yaw estimated from the dense landmarks (degrees; None without them)."""
        return None if self.head_pose is None else float(self.head_pose[1])


def _identity(pixels: np.ndarray, rect, mode: str | None) -> tuple[torch.Tensor, np.ndarray]:
    pts5 = shape_points(pixels, rect, "sp5")
    if mode is None:
        return torch.full((128,), float("nan")), pts5
    if mode == "dlib":
        import dlib

        from facegcn.frontend.detect import _get
        from facegcn.frontend.models import RESNET, dlib_model_path

        rec = _DLIB_REC.get("net")
        if rec is None:
            rec = _DLIB_REC.setdefault("net", dlib.face_recognition_model_v1(str(dlib_model_path(RESNET))))
        shape = _get("sp5")(pixels, rect)
        return torch.tensor(np.asarray(rec.compute_face_descriptor(pixels, shape)), dtype=torch.float32), pts5
    if mode != "port":
        raise ConfigError(f"unknown identity mode {mode!r} (choose 'port', 'dlib' or None)")
    chip = chip_from_photo(pixels, pts5)
    with torch.no_grad():
        return IdentityEncoder().embed_chips(chip)[0].float(), pts5


_DLIB_REC: dict[str, object] = {}


def _observe_one(photo: Photo, cand: Candidate, cfg: FrontendConfig) -> FaceObservation:
    px = photo.pixels
    dense = None
    if cand.detector == "blazeface":  # BlazeFace has no mouth corners: the face mesh gives the 5 points
        assert cand.keypoints is not None
        dense = observe_dense(px, face_spec(cand.box, cand.keypoints[:2]))
        p5 = points5_from_dense(dense.points)
        rect = dlib_rect_from_points5(p5)
        lm = shape_points(px, rect)
    elif cand.detector == "mtcnn":
        assert cand.points5 is not None
        rect = dlib_rect_from_points5(cand.points5)
        lm = shape_points(px, rect)
        rect = dlib_rect_from_points5(five_from_68(lm))  # one refinement with the 68-derived points
        lm = shape_points(px, rect)
        p5 = np.asarray(cand.points5, np.float64)
    else:
        rect = dlib_rect_from_box(cand.box)
        lm = shape_points(px, rect)
        p5 = five_from_68(lm)
    if dense is None and cfg.dense:
        dense = observe_dense(px, face_spec(cand.box, p5[:2]))
    al = estimate_alignment(p5, rotation=cfg.rotate)
    image = align_photo(px, al)
    lm_al = al.to_aligned(lm)
    valid = photo_coverage(px.shape[:2], al)
    img_u8 = (image.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    seg = (cfg.segmenter or LandmarkSkinSegmenter()).segment(img_u8, lm_al, valid=valid)
    labels = np.where(valid, seg.labels, 0).astype(np.int64)
    skin_w = np.where(valid, seg.skin_weight, 0.0).astype(np.float32)
    identity, pts5_sp = _identity(px, rect, cfg.identity)
    chip_tf = compose_affine(al.matrix, face_chip_transform(pts5_sp))
    return FaceObservation(
        image=image.contiguous(),
        transform=al.matrix,
        transform_inv=al.inverse,
        landmarks=lm_al,
        landmarks_photo=lm,
        points5=al.to_aligned(p5),
        points5_photo=p5,
        box=np.asarray(cand.box, np.float64),
        score=float(cand.confidence),
        detector_score=float(cand.detector_score),
        detector=cand.detector,
        labels=torch.from_numpy(labels),
        skin_weight=torch.from_numpy(skin_w),
        face_mask=torch.from_numpy(np.isin(labels, FACE_LABELS)),
        identity=identity,
        chip_transform=chip_tf,
        photo_size=photo.size,
        **(_dense_fields(dense, al) if dense is not None and cfg.dense else {}),
    )


def _to_aligned(points: np.ndarray, al: Alignment) -> np.ndarray:
    """(..., 3) photo (x, y, z) → aligned crop (z scaled by the alignment's scale)."""
    p = np.asarray(points, np.float64)
    flat = p.reshape(-1, 3)
    out = np.concatenate([al.to_aligned(flat[:, :2]), flat[:, 2:] * al.scale], 1)
    return out.reshape(p.shape)


def _dense_fields(dense: DenseFace, al: Alignment) -> dict:
    return {"dense": _to_aligned(dense.points, al), "dense_photo": dense.points, "dense_score": dense.score,
            "iris": _to_aligned(dense.iris, al), "iris_photo": dense.iris, "head_pose": dense.pose_deg}


def observe(
    photo, *, detector: str = "cascade", all_faces: bool = False, config: FrontendConfig | None = None
) -> list[FaceObservation]:
    """Detect, align, landmark, segment and embed the face(s) of ``photo``.

    ``photo``: a :class:`~facegcn.io.image.Photo`, a path or a numpy array (see ``load_image``).
    ``detector``: "cascade" (default: dlib's HOG, plus BlazeFace for the faces it misses, MTCNN
    when neither finds one — :mod:`facegcn.frontend.cascade`), "dlib" (HOG + 68-point predictor)
    or "mtcnn" (its 5 points align the face; dlib's predictor still gives the 68 landmarks).
    BlazeFace faces are aligned by the 5 points of their dense landmarks. Returns the best face
    only, or every face with ``all_faces=True``, best first. Raises NoFaceError when none is found."""
    cfg = config or FrontendConfig()
    if detector not in ("cascade", "dlib", "mtcnn"):
        raise ConfigError(f"unknown detector {detector!r} (choose 'cascade', 'dlib' or 'mtcnn')")
    if not isinstance(photo, Photo):
        photo = load_image(photo)
    if not isinstance(photo, Photo):  # pragma: no cover
        raise InputError("observe needs a Photo, a path or an image array")
    faces, rejected = find_faces(photo.pixels, detector, cfg.detection)
    if not faces:
        extra = f" ({rejected} candidate(s) rejected as non-faces)" if rejected else ""
        raise NoFaceError(f"{photo.name}: no face found by the {detector} detector{extra}")
    if not all_faces:
        faces = faces[:1]
    return [_observe_one(photo, c, cfg) for c in faces]
