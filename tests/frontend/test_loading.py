"""Front-end model loading shortcuts: the remembered digest of dlib's ResNet file (reference:
hashlib over the file) and the identity network built without a random initialisation
(reference: the network built the plain way, same weights)."""

from __future__ import annotations

import hashlib

import torch

import facegcn.frontend.identity as ident


def test_source_digest_is_the_sha256_and_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path))
    dat = tmp_path / "model.dat"
    dat.write_bytes(b"dlib weights" * 1000)
    calls = []
    real = ident._file_sha256
    monkeypatch.setattr(ident, "_file_sha256", lambda p: calls.append(p) or real(p))
    want = hashlib.sha256(dat.read_bytes()).hexdigest()
    assert ident._source_digest(dat) == want and len(calls) == 1
    assert ident._source_digest(dat) == want and len(calls) == 1  # from the index, not hashed again
    dat.write_bytes(b"other weights" * 1000)  # a changed file (size / mtime) is hashed again
    assert ident._source_digest(dat) == hashlib.sha256(dat.read_bytes()).hexdigest() and len(calls) == 2


def test_identity_net_loaded_without_init_equals_a_plain_load():
    from safetensors.torch import load_file

    net = ident.load_identity_net()
    plain = ident.DlibResNet()
    plain.load_state_dict(load_file(str(ident.converted_weights_path())))
    plain.eval()
    for (n1, a), (n2, b) in zip(net.state_dict().items(), plain.state_dict().items()):
        assert n1 == n2 and torch.equal(a, b), n1
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    x = torch.rand(1, 3, 150, 150, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x), plain(x), rtol=1e-5, atol=1e-6)
