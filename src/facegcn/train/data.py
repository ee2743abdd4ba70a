"""The training cache: observed faces stacked into safetensors shards, and :class:`FaceDataset`.

Layout of a cache folder::

    index.json                 format, version, seed, held-out fraction, shards, items (+ split)
    failed.csv                 source,error   (one row per skipped photo)
    shards/shard-00000.safetensors

Each shard holds the stacked tensors of up to ``shard_size`` input files (failed files have no
row) and, in its JSON metadata, the list of its input files with their status — a shard file is
complete by construction (atomic write), so an interrupted ``prepare`` redoes only the shard it
was working on. Tensors per shard (N rows):

=================  ====================  =====================================================
``image``          uint8 (N,3,224,224)   aligned crop, RGB
``landmarks``      float32 (N,68,2)      68 landmarks in aligned-crop pixels
``face_mask``      bool (N,224,224)      face region (skin, brows, eyes, nose, mouth)
``skin_weight``    float16 (N,224,224)   soft skin weight in [0, 1]
``identity``       float32 (N,128)       dlib descriptor of the photo (NaN when not computed)
``chip_transform`` float64 (N,2,3)       identity-chip pixels → aligned pixels
``coeffs``         float32 (N,K)         optional: ground-truth coefficients (synthetic data)
=================  ====================  =====================================================

The train / held-out split is a seeded hash of each item's source path (stable when photos are
added), recorded in ``index.json``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from facegcn.errors import ConfigError, ModelFileError
from facegcn.io.atomic import atomic_write_bytes, atomic_write_text

CACHE_FORMAT = "facegcn-face-cache"
CACHE_VERSION = 1
IMAGE_SIZE = 224
INDEX_NAME = "index.json"
FAILED_NAME = "failed.csv"
SHARD_DIR = "shards"
FIELDS = ("image", "landmarks", "face_mask", "skin_weight", "identity", "chip_transform")

# dlib / iBUG 68-point mirror permutation (left ↔ right), used by the flip augmentation.
FLIP_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose bottom
    + [45, 44, 43, 42, 47, 46]  # right eye ← left eye
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48]  # outer lip top
    + [59, 58, 57, 56, 55]  # outer lip bottom
    + [64, 63, 62, 61, 60]  # inner lip top
    + [67, 66, 65]  # inner lip bottom
)


def subseed(*parts) -> int:
    """A 63-bit seed from any parts (stable across runs, processes and ranks).

    Args:
        parts: anything with a stable ``str`` (joined with ``":"`` and hashed with SHA-256).

    Returns:
        An int in ``[0, 2**63)``.
    """
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def uniform(*parts) -> float:
    """A deterministic uniform number in ``[0, 1)`` (53 bits) from ``parts`` (see :func:`subseed`)."""
    return (subseed(*parts) >> 10) / float(2**53)


def split_of(source: str, seed: int, held_out: float) -> str:
    """``"held_out"`` for a ``held_out`` fraction of sources (seeded hash of the path), else ``"train"``."""
    return "held_out" if uniform("split", seed, source) < held_out else "train"


# ---------------------------------------------------------------------------------------- rows
@dataclass
class FaceRow:
    """One cached face (numpy, the shard dtypes)."""

    image: np.ndarray  # uint8 (3,224,224)
    landmarks: np.ndarray  # float32 (68,2)
    face_mask: np.ndarray  # bool (224,224)
    skin_weight: np.ndarray  # float16 (224,224)
    identity: np.ndarray  # float32 (128,)
    chip_transform: np.ndarray  # float64 (2,3)
    coeffs: np.ndarray | None = None

    @classmethod
    def from_observation(cls, obs) -> "FaceRow":
        """The row of a front-end :class:`~facegcn.frontend.FaceObservation` (image rounded half
        up to uint8)."""
        # ``+ 0.5`` then truncation (round half up) is the cache format; imageops.to_uint8 rounds
        # half to even and would change the stored images at exact ties
        img = (obs.image.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        return cls(
            image=img,
            landmarks=np.asarray(obs.landmarks, np.float32),
            face_mask=obs.face_mask.cpu().numpy().astype(bool),
            skin_weight=obs.skin_weight.cpu().numpy().astype(np.float16),
            identity=obs.identity.detach().cpu().numpy().astype(np.float32),
            chip_transform=np.asarray(obs.chip_transform, np.float64),
        )


def shard_name(k: int) -> str:
    """Path of shard ``k`` relative to the cache root: ``shards/shard-<k:05d>.safetensors``."""
    return f"{SHARD_DIR}/shard-{k:05d}.safetensors"


def write_shard(path: str | Path, rows: list[FaceRow], items: list[dict], meta: dict | None = None) -> Path:
    """Atomically write one shard: stacked tensors of ``rows`` + ``items`` (one per input file:
    ``{"source", "status": "ok"|"failed", "row"|"error"}``) in the metadata.

    Args:
        path: the shard file.
        rows: the faces (tensors are stacked with the dtypes of the module table).
        items: one entry per input file of the shard, failed ones included.
        meta: more JSON metadata.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    n = len(rows)
    S = IMAGE_SIZE

    def stack(name, shape, dtype):
        if n == 0:
            return torch.zeros((0, *shape), dtype=dtype)
        return torch.from_numpy(np.ascontiguousarray(np.stack([getattr(r, name) for r in rows])))

    t = {
        "image": stack("image", (3, S, S), torch.uint8),
        "landmarks": stack("landmarks", (68, 2), torch.float32),
        "face_mask": stack("face_mask", (S, S), torch.bool),
        "skin_weight": stack("skin_weight", (S, S), torch.float16),
        "identity": stack("identity", (128,), torch.float32),
        "chip_transform": stack("chip_transform", (2, 3), torch.float64),
    }
    if n and all(r.coeffs is not None for r in rows):
        t["coeffs"] = torch.from_numpy(np.stack([np.asarray(r.coeffs, np.float32) for r in rows]))
    md = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "rows": n, "items": items, **(meta or {})}
    return atomic_write_bytes(path, save(t, metadata={"facegcn": json.dumps(md, sort_keys=True)}))


def read_shard_meta(path: str | Path) -> dict | None:
    """The shard's metadata, or None when the file is missing / unreadable / not a shard."""
    try:
        with safe_open(str(path), framework="pt") as f:
            md = json.loads((f.metadata() or {}).get("facegcn", "{}"))
    except Exception:  # noqa: BLE001 - anything unreadable counts as "not done"
        return None
    if md.get("format") != CACHE_FORMAT or not isinstance(md.get("items"), list):
        return None
    return md


def write_index(root: str | Path, shard_metas: list[tuple[str, dict]], *, seed: int, held_out: float,
                extra: dict | None = None) -> dict:
    """Build and atomically write ``index.json`` and ``failed.csv`` from the shards' metadata.

    Args:
        root: the cache folder.
        shard_metas: ``(shard path relative to root, its metadata)`` in shard order.
        seed, held_out: the train / held-out split (:func:`split_of`).
        extra: more top-level index entries.

    Returns:
        The index as written.
    """
    root = Path(root)
    items, failed, shards = [], [], []
    for name, md in shard_metas:
        shards.append({"file": name, "rows": int(md.get("rows", 0)), "files": len(md["items"])})
        for it in md["items"]:
            if it.get("status") == "ok":
                items.append({"source": it["source"], "shard": len(shards) - 1, "row": int(it["row"]),
                              "split": split_of(it["source"], seed, held_out)})
            else:
                failed.append((it["source"], it.get("error", "")))
    index = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "image_size": IMAGE_SIZE,
        "split": {"seed": int(seed), "held_out_fraction": float(held_out), "method": "sha256(split:seed:source)",
                  "train": sum(i["split"] == "train" for i in items),
                  "held_out": sum(i["split"] == "held_out" for i in items)},
        "counts": {"ok": len(items), "failed": len(failed)},
        "shards": shards,
        "items": items,
        "failed": [{"source": s, "error": e} for s, e in failed],
        **(extra or {}),
    }
    atomic_write_text(root / INDEX_NAME, json.dumps(index, indent=1))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source", "error"])
    w.writerows(failed)
    atomic_write_text(root / FAILED_NAME, buf.getvalue())
    return index


def load_index(root: str | Path) -> dict:
    """Read and check a cache's ``index.json``.

    Raises:
        ModelFileError: no cache at ``root``, an unreadable index, another format, or a newer
            cache version.
    """
    p = Path(root) / INDEX_NAME
    try:
        index = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{root} is not a training cache (no {INDEX_NAME}; run `facegcn prepare` first)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"cannot read {p}: {exc}") from None
    if index.get("format") != CACHE_FORMAT:
        raise ModelFileError(f"{p} is not a facegcn cache index")
    if int(index.get("version", 0)) > CACHE_VERSION:
        raise ModelFileError(f"{p}: cache version {index.get('version')} is newer than this facegcn ({CACHE_VERSION})")
    return index


# ------------------------------------------------------------------------------------ dataset
def flip_sample(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mirror a sample left ↔ right: image / masks flipped, landmarks mirrored and re-indexed,
    chip transform composed with the mirror (the identity chip becomes the mirrored chip).

    Shapes:
        the :class:`FaceDataset` item layout (image ``(3, H, W)``, masks ``(1, H, W)``, landmarks
        ``(68, 2)``, chip_transform ``(2, 3)``); returns a new dict, the input is not modified.
    """
    W = s["image"].shape[-1]
    out = dict(s)
    out["image"] = s["image"].flip(-1)
    out["face_mask"] = s["face_mask"].flip(-1)
    out["skin_weight"] = s["skin_weight"].flip(-1)
    lm = s["landmarks"][torch.from_numpy(FLIP_68)].clone()
    lm[:, 0] = (W - 1) - lm[:, 0]
    out["landmarks"] = lm
    ct = s["chip_transform"].clone()
    ct[0] = -ct[0]
    ct[0, 2] += W - 1
    out["chip_transform"] = ct
    return out


class FaceDataset(torch.utils.data.Dataset):
    """A cache made by ``facegcn prepare`` (or :func:`facegcn.train.synthetic.make_synthetic_cache`).

    ``split``: "train", "held_out" or "all". Items are dicts of float tensors: ``image``
    (3,224,224) in [0, 1], ``landmarks`` (68,2), ``face_mask`` (1,224,224) 0/1, ``skin_weight``
    (1,224,224), ``identity`` (128,) (NaN = not available), ``chip_transform`` (2,3), ``index``
    (the dataset index, int64) and ``coeffs`` when the cache has them.

    ``flip``: mirror each item with probability 0.5, decided by a hash of (seed, epoch, index) —
    call :meth:`set_epoch` each epoch; the augmentation is therefore identical on every rank,
    worker and resumed run.
    """

    def __init__(self, root: str | Path, split: str = "train", *, flip: bool = False, seed: int = 0):
        if split not in ("train", "held_out", "all"):
            raise ConfigError(f"unknown split {split!r} (choose train, held_out or all)")
        self.root = Path(root)
        self.index = load_index(self.root)
        items = self.index["items"]
        self.items = items if split == "all" else [it for it in items if it["split"] == split]
        self.split = split
        self.shards = [s["file"] for s in self.index["shards"]]
        self.flip = bool(flip)
        self.seed = int(seed)
        self.epoch = 0
        self._handles: dict[int, object] = {}
        self._pid = None
        self._has_coeffs: bool | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self):  # open shard handles stay in their process (DataLoader workers, spawn)
        st = dict(self.__dict__)
        st["_handles"], st["_pid"] = {}, None
        return st

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the flip augmentation (call it at the start of every epoch)."""
        self.epoch = int(epoch)

    def sources(self) -> list[str]:
        """The source path of every item of this split, in item order."""
        return [it["source"] for it in self.items]

    def _handle(self, k: int):
        if self._pid != os.getpid():  # fresh handles in each DataLoader worker
            self._handles, self._pid = {}, os.getpid()
        h = self._handles.get(k)
        if h is None:
            path = self.root / self.shards[k]
            try:
                h = safe_open(str(path), framework="pt")
            except Exception as exc:  # noqa: BLE001
                raise ModelFileError(f"cannot read cache shard {path}: {type(exc).__name__}") from None
            self._handles[k] = h
        return h

    def raw(self, i: int) -> dict[str, torch.Tensor]:
        """Item ``i`` as stored (shard dtypes, no flip, no ``index``)."""
        it = self.items[i]
        h = self._handle(int(it["shard"]))
        r = int(it["row"])
        keys = set(h.keys())
        out = {name: h.get_slice(name)[r : r + 1][0] for name in FIELDS}
        if "coeffs" in keys:
            out["coeffs"] = h.get_slice("coeffs")[r : r + 1][0]
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self.items):
            raise IndexError(i)
        raw = self.raw(i)
        s = {
            "image": raw["image"].float() / 255.0,
            "landmarks": raw["landmarks"].float(),
            "face_mask": raw["face_mask"].float()[None],
            "skin_weight": raw["skin_weight"].float()[None],
            "identity": raw["identity"].float(),
            "chip_transform": raw["chip_transform"].float(),
            "index": torch.tensor(i, dtype=torch.int64),
        }
        if "coeffs" in raw:
            s["coeffs"] = raw["coeffs"].float()
        if self.flip and uniform("flip", self.seed, self.epoch, i) < 0.5:
            s = flip_sample(s)
        return s
