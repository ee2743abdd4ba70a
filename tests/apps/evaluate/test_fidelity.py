"""Fidelity of the exported mesh (facegcn.apps.evaluate.fidelity): people from sub-folders and
labels, pair statistics against a brute-force double loop, and the render descriptor computed
through the full front-end path (a photo against itself: distance ≈ 0)."""

import math

import numpy as np
import pytest

from facegcn.apps.evaluate.fidelity import (
    MeshFidelity,
    add_pair_columns,
    person_of,
    read_labels,
    render_descriptor,
    view_name,
)
from facegcn.errors import InputError


def test_people_from_sub_folders_and_labels(tmp_path):
    from facegcn.apps.evaluate.photos import list_photos

    for rel in ("top.png", "ann/1.png", "ann/2.jpg", "bob/x.png", ".hidden/y.png", "ann/.z.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    rels = [p.relative_to(tmp_path).as_posix() for p in list_photos(tmp_path)]
    assert rels == ["ann/1.png", "ann/2.jpg", "bob/x.png", "top.png"]
    assert [person_of(r) for r in rels] == ["ann", "ann", "bob", None]
    csv = tmp_path / "labels.csv"
    csv.write_text("file,person\n# a comment\ntop.png,bob\nann/2.jpg, carol\n\n")
    labels = read_labels(csv)
    assert labels == {"top.png": "bob", "ann/2.jpg": "carol"}
    assert [person_of(r, labels) for r in rels] == ["ann", "carol", "bob", "bob"]
    bad = tmp_path / "bad.csv"
    bad.write_text("only-one-column\n")
    with pytest.raises(InputError, match="file,person"):
        read_labels(bad)
    with pytest.raises(InputError):
        read_labels(tmp_path / "missing.csv")
    assert [view_name(y) for y in (0.0, -30.0, 30.0)] == ["0", "m30", "p30"]


def test_pair_columns_match_brute_force():
    rng = np.random.default_rng(0)
    persons = ["a", "a", "b", None, "b", "a"]
    n = len(persons)
    centre = {p: rng.normal(size=128) * 0.1 for p in ("a", "b", None)}
    photo = [centre[p] + rng.normal(size=128) * rng.uniform(0.02, 0.045) for p in persons]
    results = []
    for i in range(n):
        descs = {y: photo[i] + rng.normal(size=128) * 0.02 for y in (0.0, -30.0, 30.0)}
        if i == 1:
            descs[30.0] = None  # a miss
        results.append({"final": MeshFidelity(1.0, {}, descs, {})})
    rows = [{"image": str(i)} for i in range(n)]
    add_pair_columns(rows, persons, photo, results)
    all_same = []
    for i in range(n):
        renders = [d for d in results[i]["final"].descriptors.values() if d is not None]
        same = [np.linalg.norm(d - photo[j]) for d in renders for j in range(n) if j != i and persons[i] is not None
                and persons[j] == persons[i]]
        other = [np.linalg.norm(d - photo[j]) for d in renders for j in range(n) if persons[i] is not None
                 and persons[j] is not None and persons[j] != persons[i]]
        if persons[i] is None:
            assert set(rows[i]) == {"image"}
            continue
        all_same += same
        assert rows[i]["idsame_final"] == pytest.approx(np.mean(same))
        assert rows[i]["idsame_accept_final"] == pytest.approx(np.mean(np.array(same) < 0.6))
        assert rows[i]["idother_reject_final"] == pytest.approx(np.mean(np.array(other) >= 0.6))
        ps = [np.linalg.norm(photo[i] - photo[j]) for j in range(n) if j != i and persons[j] == persons[i]]
        assert rows[i]["idsame_photo"] == pytest.approx(np.mean(ps))
    assert 0 < np.mean(np.array(all_same) < 0.6) < 1  # the draw has both accepted and rejected pairs


def test_render_descriptor_of_a_photo_is_its_own(astronaut):
    """The render path (float image → uint8 → observe) on the photo itself gives the photo's own
    descriptor; an image without a face is a miss."""
    import torch

    from facegcn.evaluate.fidelity import descriptor_distance
    from facegcn.frontend import observe
    from facegcn.io.image import photo_from_array

    want = observe(photo_from_array(astronaut))[0].identity
    img = torch.from_numpy(astronaut.copy()).permute(2, 0, 1).float() / 255.0
    got = render_descriptor(img)
    assert got is not None and got.shape == (128,)
    assert descriptor_distance(got, want) < 1e-5
    assert render_descriptor(torch.full((3, 200, 200), 0.5)) is None
    assert math.isfinite(descriptor_distance(got, want))
