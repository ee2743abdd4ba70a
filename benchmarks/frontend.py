"""Time the face front-end per photo: detection, landmarks, alignment, mask, identity embedding.

Usage: ``python benchmarks/frontend.py [--repeats N] [--threads T] [IMAGE ...]`` (default image:
``skimage.data.astronaut()``). Prints one line per stage and detector; the last line is the
headline figure: the median wall time of a full ``observe()`` with the default (dlib) detector.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscribing a shared CPU)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from facegcn.frontend import observe
    from facegcn.frontend.align import align_photo, estimate_alignment, five_from_68, photo_coverage
    from facegcn.frontend.detect import dlib_rect_from_box, find_faces, shape_points
    from facegcn.frontend.identity import chip_from_photo, embed, load_identity_net
    from facegcn.frontend.mask import LandmarkSkinSegmenter
    from facegcn.io.image import load_image, photo_from_array

    if args.images:
        photos = [load_image(p) for p in args.images]
    else:
        from skimage import data

        photos = [photo_from_array(data.astronaut())]
    net = load_identity_net()  # converts/caches the weights once (not timed)
    for photo in photos:
        observe(photo)  # warm-up: loads every model
        observe(photo, detector="mtcnn")

    headline = []
    for photo in photos:
        px = photo.pixels
        w, h = photo.size
        name = photo.name if photo.path is not None else "astronaut"
        faces, _ = find_faces(px, "dlib")
        cand = faces[0]
        rect = dlib_rect_from_box(cand.box)
        lm = shape_points(px, rect)
        al = estimate_alignment(five_from_68(lm))
        img = align_photo(px, al)
        img_u8 = (img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        lm_al = al.to_aligned(lm)
        valid = photo_coverage(px.shape[:2], al)
        seg = LandmarkSkinSegmenter()

        def embedding():
            chip = chip_from_photo(px, shape_points(px, rect, "sp5"))
            with torch.no_grad():
                embed(chip, net)

        stages = {
            "detect (dlib HOG + O-Net check)": lambda: find_faces(px, "dlib"),
            "detect (MTCNN)": lambda: find_faces(px, "mtcnn"),
            "landmarks (dlib 68)": lambda: shape_points(px, rect),
            "align (224 crop)": lambda: align_photo(px, al),
            "mask (polygons + skin model)": lambda: seg.segment(img_u8, lm_al, valid=valid),
            "embedding (5-pt + chip + ResNet port)": embedding,
        }
        for label, fn in stages.items():
            print(f"{name} {w}x{h}  {label:40s} {_median_ms(fn, args.repeats):8.1f} ms")
        t_mtcnn = _median_ms(lambda: observe(photo, detector="mtcnn"), args.repeats)
        print(f"{name} {w}x{h}  {'observe (mtcnn) total':40s} {t_mtcnn:8.1f} ms")
        t_dlib = _median_ms(lambda: observe(photo), args.repeats)
        print(f"{name} {w}x{h}  {'observe (dlib) total':40s} {t_dlib:8.1f} ms")
        headline.append(t_dlib)
    print(
        f"frontend: detect+landmarks+mask+embedding (observe, dlib) = {statistics.mean(headline):.1f} ms/photo "
        f"(median of {args.repeats}, {len(photos)} photo(s), {torch.get_num_threads()} threads, CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
