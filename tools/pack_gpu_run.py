#!/usr/bin/env python
"""Pack what ``benchmarks/gpu.py`` needs on a bare GPU machine into two folders of at most ~60 MB.

    .venv/bin/python tools/pack_gpu_run.py [--wheels DIR] [--out .]

A lent GPU machine (the ``device`` tool of this workplace) has torch, numpy, scipy, scikit-image,
numba, safetensors, typer and tqdm, no network, and accepts at most 64 MiB (the working tree
included) per call. What it lacks: the model files of ``face-recognition-models`` (dlib's
68-point predictor alone is 99.7 MB, 63.4 MB compressed), ``facenet-pytorch``'s MTCNN weights,
MediaPipe's four ``.tflite`` files, and the wheels of dlib-bin, trimesh, xatlas,
fast-simplification and tflite. This script writes

* ``.dev1/``: the wheels (``--wheels DIR``: cp312 manylinux wheels fetched beforehand with
  ``pip download --no-deps --only-binary=:all: --python-version 3.12 ...``), MTCNN's weights in a
  ``facenet_pytorch/data`` folder, and the first 44 MB of the xz-compressed 68-point predictor;
* ``.dev2/``: the rest of the predictor, the 5-point predictor and the ResNet (xz), the
  ``mediapipe/modules/...`` files, and ``go.sh``, which rebuilds a site folder in ``/tmp/site``
  (wheels installed, the model files decompressed and their SHA-256 printed — compare with the
  ``sha256`` lines this script prints) and runs ``benchmarks/gpu.py`` into ``$OUT``.

Both folders must be ignored by git (``.git/info/exclude``). Two device calls, back to back (a
machine goes back 30 s after a call; a carried folder does not survive into the next call, ``/tmp``
does): ``run(carry=[".dev1"], command="rm -rf /tmp/dev1 && cp -r .dev1 /tmp/dev1")``, then
``run(carry=[".dev2"], command="bash .dev2/go.sh <commit>")``. Move ``docs/`` and ``tests/`` out
of the working tree for the two calls if the tree plus a folder exceeds 64 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import shutil
import sys
from pathlib import Path

PART1 = 44_000_000  # bytes of the compressed 68-point predictor carried by the first call

GO = r"""#!/bin/bash
# benchmarks/gpu.py on a bare GPU machine; written by tools/pack_gpu_run.py. Usage: go.sh COMMIT
set -o pipefail
export PYTHONUNBUFFERED=1 FACEGCN_COMMIT=$1
[ -d /tmp/dev1 ] || { echo "go.sh: /tmp/dev1 missing: run the first call (copy .dev1 to /tmp/dev1) first"; exit 3; }
[ -d /tmp/site/trimesh ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/dev1/whl/*.whl || exit 3
cp -r /tmp/dev1/site/. .dev2/site/. /tmp/site/
M=/tmp/site/face_recognition_models/models
unxz() { python3 -c "import lzma,sys; sys.stdout.buffer.write(lzma.decompress(sys.stdin.buffer.read()))"; }
cat /tmp/dev1/sp68.xz.part1 .dev2/sp68.xz.part2 | unxz > $M/shape_predictor_68_face_landmarks.dat || exit 4
unxz < .dev2/sp5.xz > $M/shape_predictor_5_face_landmarks.dat || exit 4
unxz < .dev2/res.xz > $M/dlib_face_recognition_resnet_model_v1.dat || exit 4
sha256sum $M/*.dat
export PYTHONPATH=/tmp/site:$PWD/src
mkdir -p $OUT/fast
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 benchmarks/gpu.py --repeat 3 --batch 8 --profile --json $OUT/gpu.json 2>&1 | tee $OUT/gpu.log
python3 benchmarks/gpu.py --fast --no-cpu --repeat 2 --batch 4 --json $OUT/fast/gpu_fast.json 2>&1 | tee $OUT/gpu_fast.log
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", type=Path, required=True, help="folder of cp312 wheels (dlib-bin, trimesh, ...)")
    ap.add_argument("--out", type=Path, default=Path("."))
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from facegcn.errors import ModelFileError
    from facegcn.frontend.blazeface import FULL_RANGE, SHORT_RANGE
    from facegcn.frontend.facemesh import FACE_MODEL, IRIS_MODEL
    from facegcn.frontend.models import RESNET, SHAPE_5, SHAPE_68, dlib_model_path, mediapipe_model_path, mtcnn_weight_path

    dat = {"sp68": SHAPE_68, "sp5": SHAPE_5, "res": RESNET}
    tflite = (FACE_MODEL, IRIS_MODEL, SHORT_RANGE.model, FULL_RANGE.model)  # relative to the mediapipe package
    wheels = sorted(a.wheels.glob("*.whl"))
    if not wheels:
        sys.exit(f"pack_gpu_run: no .whl files in {a.wheels}")
    d1, d2 = a.out / ".dev1", a.out / ".dev2"
    for d in (d1, d2):
        shutil.rmtree(d, ignore_errors=True)
    (d1 / "whl").mkdir(parents=True)
    for w in wheels:
        shutil.copy2(w, d1 / "whl")
    fn = d1 / "site" / "facenet_pytorch"
    (fn / "data").mkdir(parents=True)
    (fn / "__init__.py").write_text("")  # located with find_spec, never imported
    mp = d2 / "site" / "mediapipe"
    frm = d2 / "site" / "face_recognition_models"
    (frm / "models").mkdir(parents=True)
    try:  # the files where the package itself looks for them
        for net in ("pnet", "rnet", "onet"):
            shutil.copy2(mtcnn_weight_path(net), fn / "data")
        for rel in tflite:
            (mp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(mediapipe_model_path(rel), mp / rel)
        raws = {key: dlib_model_path(name).read_bytes() for key, name in dat.items()}
    except ModelFileError as exc:
        sys.exit(f"pack_gpu_run: {exc}")
    (mp / "__init__.py").write_text("")
    (frm / "__init__.py").write_text("")
    for key, name in dat.items():
        raw = raws[key]
        print(f"sha256 {hashlib.sha256(raw).hexdigest()}  {name}")
        packed = lzma.compress(raw, preset=9 if key == "sp68" else 6)
        if key == "sp68":
            (d1 / "sp68.xz.part1").write_bytes(packed[:PART1])
            (d2 / "sp68.xz.part2").write_bytes(packed[PART1:])
        else:
            (d2 / f"{key}.xz").write_bytes(packed)
    (d2 / "go.sh").write_text(GO)
    for d in (d1, d2):
        size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
        print(f"{d}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
