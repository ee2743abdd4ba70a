"""Worker process for the load_image fuzz test: reads one path per line on stdin, loads it, and
writes one JSON line per input on stdout. Run as ``python fuzz_worker.py``; a hang is detected
(and the worker killed and replaced) by the parent, which waits at most a few seconds per input."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def check(path: str) -> dict:
    import numpy as np

    from facegcn.errors import FaceGCNError, InputError
    from facegcn.io.image import MAX_PIXELS, MIN_SIDE, Photo, load_image

    t0 = time.perf_counter()
    try:
        photo = load_image(path)
    except InputError as exc:
        return {"status": "input_error", "msg": str(exc), "s": time.perf_counter() - t0}
    except FaceGCNError as exc:
        return {"status": "other_facegcn_error", "type": type(exc).__name__, "msg": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - the point is to see every escape
        return {"status": "uncaught", "type": type(exc).__name__, "msg": str(exc)[:500],
                "tb": "".join(traceback.format_exception(exc))[-3000:]}
    px = photo.pixels
    ok = (isinstance(photo, Photo) and isinstance(px, np.ndarray) and px.dtype == np.uint8 and px.ndim == 3
          and px.shape[2] == 3 and min(px.shape[:2]) >= MIN_SIDE and px.shape[0] * px.shape[1] <= MAX_PIXELS
          and str(photo.path) == path)
    return {"status": "ok" if ok else "bad_photo", "shape": list(px.shape), "dtype": str(px.dtype),
            "s": time.perf_counter() - t0}


def main() -> None:
    import facegcn.io.image  # noqa: F401  (import before the first timed input)

    out = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol channel
    os.dup2(2, 1)  # anything else printed to stdout lands in stderr, which the parent checks
    print(json.dumps({"status": "ready"}), file=out)
    for line in sys.stdin:
        path = line.rstrip("\n")
        if path:
            print(json.dumps(check(path)), file=out)


if __name__ == "__main__":
    main()
