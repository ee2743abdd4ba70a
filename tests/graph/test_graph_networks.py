"""Decoder / refiner / merger / generator / critic: shapes, wiring, devices, parameter counts."""

from __future__ import annotations

import pytest
import torch

from facegcn.errors import ConfigError
from facegcn.graph import (
    ChebResBlock,
    ImageCritic,
    MeshOperators,
    TextureDecoder,
    TextureGenerator,
    TextureMerger,
    TextureRefiner,
    count_parameters,
    gradient_penalty,
    parameter_table,
    print_parameter_counts,
)


@pytest.fixture(scope="module")
def ops(ict_hierarchy):
    return MeshOperators.from_hierarchy(ict_hierarchy)


def test_decoder_shapes_and_defaults(ops, torch_seed):
    dec = TextureDecoder(ops)
    assert dec.widths == (16, 16, 16, 3) and dec.fc_channels == 32 and dec.in_features == 128
    assert dec.fc.out_features == ops.sizes[-1] * 32
    y = dec(torch.randn(2, 128))
    assert y.shape == (2, ops.sizes[0], 3) and torch.isfinite(y).all()
    assert y.min() >= -1.0  # ELU output
    with pytest.raises(ConfigError):
        TextureDecoder(ops, widths=(16, 3))
    with pytest.raises(ValueError):
        dec(torch.randn(2, 64))


def test_refiner_shapes(ops, torch_seed):
    ref = TextureRefiner(ops)
    assert [b.conv1.out_channels for b in ref.blocks] == [16, 32, 32, 16, 3]
    x = torch.randn(2, ops.sizes[0], 7, requires_grad=True)
    y = ref(x)
    assert y.shape == (2, ops.sizes[0], 3)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # level-1 blocks really run on the coarse level
    assert ref.blocks[1].conv1.in_channels == 16


def test_generator_and_merger(ops, torch_seed):
    gen = TextureGenerator(ops)
    assert gen.decoder.ops is gen.refiner.ops is gen.merger.ops is ops  # shared, not copied
    z = torch.randn(3, 128)
    x = torch.randn(3, ops.sizes[0], 7)
    out, dec, ref = gen(z, x, return_parts=True)
    assert out.shape == (3, ops.sizes[0], 3) and out.abs().max() < 1
    torch.testing.assert_close(out, gen.merger(dec, ref))
    torch.testing.assert_close(out, gen.merger(torch.cat([dec, ref], -1)))
    out.square().mean().backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None, name
    assert gen.merger.conv.bias is None  # as the authors' mesh_concat
    with pytest.raises(ValueError):
        TextureMerger(ops)(dec)
    # batch items are independent
    out1 = gen(z[1:2], x[1:2])
    torch.testing.assert_close(out1[0], out[1], atol=1e-5, rtol=1e-4)


def test_state_dict_roundtrip_without_graph(ops, torch_seed):
    gen = TextureGenerator(ops)
    sd = gen.state_dict()
    assert not any(k.endswith(("crow", "col", "values")) for k in sd)
    gen2 = TextureGenerator(ops)
    gen2.load_state_dict(sd)
    z, x = torch.randn(1, 128), torch.randn(1, ops.sizes[0], 7)
    torch.testing.assert_close(gen(z, x), gen2(z, x))


def test_generator_dtype_move(ops, torch_seed):
    own = MeshOperators([m.to_scipy() for m in ops.laplacians], [m.to_scipy() for m in ops.down],
                        [m.to_scipy() for m in ops.up])  # a private copy: .double() must not touch `ops`
    gen = TextureGenerator(own)
    z, x = torch.randn(1, 128), torch.randn(1, ops.sizes[0], 7)
    y32 = gen(z, x)
    gen.double()
    assert gen.ops.laplacians[0].values.dtype == torch.float64
    y64 = gen(z.double(), x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
def test_generator_on_cuda(ops, torch_seed):
    gen = TextureGenerator(ops)
    z, x = torch.randn(1, 128), torch.randn(1, ops.sizes[0], 7)
    y = gen(z, x)
    gen_cuda = gen.cuda()
    yc = gen_cuda(z.cuda(), x.cuda())
    torch.testing.assert_close(yc.cpu(), y, atol=1e-4, rtol=1e-4)
    gen.cpu()


def test_resblock_zero_init_and_activation_errors(ops):
    blk = ChebResBlock(4, 6)
    assert torch.count_nonzero(blk.conv2.weight) == 0 and blk.shortcut is not None
    L = ops.laplacians[-1]
    x = torch.randn(2, L.shape[0], 4)
    # at initialisation the block is act(shortcut(x) + b2) with b2 = 0
    torch.testing.assert_close(blk(x, L), torch.nn.functional.elu(blk.shortcut(x, L)))
    assert ChebResBlock(6, 6).shortcut is None
    with pytest.raises(ConfigError):
        ChebResBlock(4, 4, act="swishy")


def test_critic(torch_seed):
    critic = ImageCritic()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    convs = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 512, 1]
    img = torch.rand(2, 3, 224, 224) * 2 - 1
    assert critic.head(critic.features(img)).shape == (2, 1, 1, 1)
    s = critic(img)
    assert s.shape == (2,)
    # per-sample: no batch statistics
    torch.testing.assert_close(critic(img[:1]), s[:1], atol=1e-5, rtol=1e-4)
    gp = gradient_penalty(critic, img, torch.rand_like(img) * 2 - 1)
    gp.backward()
    assert torch.isfinite(gp) and critic.head.weight.grad is not None
    assert ImageCritic(norm="none")(img).shape == (2,)
    with pytest.raises(ConfigError):
        ImageCritic(norm="batch")


def test_parameter_counts(ops, capsys):
    gen = TextureGenerator(ops)
    critic = ImageCritic()
    counts = {
        "decoder": count_parameters(gen.decoder),
        "refiner": count_parameters(gen.refiner),
        "merger": count_parameters(gen.merger),
        "critic": count_parameters(critic),
    }
    V4 = ops.sizes[-1]
    assert counts["decoder"] == (128 + 1) * V4 * 32 + 11756  # FC + 4 residual blocks
    assert counts["refiner"] == 30044
    assert counts["merger"] == 6 * 6 * 3
    assert counts["critic"] == 1599489
    text = print_parameter_counts(decoder=gen.decoder, refiner=gen.refiner, merger=gen.merger, critic=critic)
    out = capsys.readouterr().out
    assert text in out and "total" in text and f"{sum(counts.values()):,}" in text
    assert parameter_table({"generator": gen}).splitlines()[0].split()[-1] == f"{count_parameters(gen):,}"
