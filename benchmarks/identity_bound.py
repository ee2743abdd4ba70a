"""How close can a skin-only reconstruction get to issue 14's identity target? An upper bound from the photos.

    python benchmarks/identity_bound.py PHOTO_DIR

The texture issue asks for renders that dlib accepts as the same person as the person's *other*
photos (mean distance <= 0.45, >= 85 % accepted at 0.6) while the exported head carries nothing
but skin outside the face (no hair, no background). This script scores, against the other photos
of each person (sub-folders of PHOTO_DIR are persons), what a perfect reconstruction could at best
show in the photo's own view: the aligned photo itself with everything outside the front-end's
face labels (:data:`facegcn.frontend.mask.FACE_LABELS`; ``+beard`` adds label 6, facial hair)
replaced by mid-grey (the fidelity renders' background) or by the face's mean colour (a bald,
skin-coloured head, crudely). Descriptors are computed exactly as for the fidelity renders
(:func:`facegcn.apps.evaluate.fidelity.render_descriptor`). Rows: the photos as they are, then each
variant; columns: mean distance over the ordered (variant, other photo) pairs, acceptance, misses.
It is a same-view bound: the fidelity metric's ±30 degree renders have no photo to copy from.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
SAME_PERSON = 0.6


def variants(obs) -> dict[str, torch.Tensor]:
    from facegcn.frontend.mask import FACE_LABELS

    img, lab = obs.image, obs.labels.numpy()
    out = {}
    for name, keep in (("face", np.isin(lab, FACE_LABELS)), ("face+beard", lab > 0)):
        m = torch.from_numpy(keep)[None].to(img.dtype)
        mean = (img * m).sum((1, 2)) / m.sum().clamp_min(1)
        out[f"{name} over grey"] = img * m + 0.5 * (1 - m)
        out[f"{name} over its mean colour"] = img * m + mean[:, None, None] * (1 - m)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo_dir", type=Path)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    from facegcn.apps.evaluate.fidelity import render_descriptor
    from facegcn.evaluate.machine import commit_line, machine_line
    from facegcn.frontend.observe import observe

    photos = sorted(p for p in a.photo_dir.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    rows = []
    for p in photos:
        obs = observe(p)[0]
        descs = {"photo as it is": obs.identity.double().numpy()}
        descs.update({k: render_descriptor(v) for k, v in variants(obs).items()})
        rows.append((p.parent.name, descs))
        print(f"  {p.relative_to(a.photo_dir)}", flush=True)
    print(f"{'variant (same view)':32s} {'pairs':>5s} {'mean dist':>9s} {'accepted':>8s} {'misses':>6s}")
    for var in rows[0][1]:
        d = []
        for (pa, va), (pb, vb) in itertools.permutations(rows, 2):
            if pa == pb:
                d.append(np.inf if va[var] is None else float(np.linalg.norm(va[var] - vb["photo as it is"])))
        d = np.asarray(d)
        fin = d[np.isfinite(d)]
        print(f"{var:32s} {len(d):5d} {fin.mean() if len(fin) else float('nan'):9.3f} "
              f"{np.mean(d < SAME_PERSON) if len(d) else float('nan'):8.2f} {int(np.sum(~np.isfinite(d))):6d}")
    print(machine_line())
    print(commit_line(REPO))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
