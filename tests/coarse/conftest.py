from dataclasses import replace

import torch


def random_face(model, seed: int, batch: int = 1):
    """Known random identity / expression / albedo / pose / light (the synthetic ground truth)."""
    L = model.layout
    g = torch.Generator().manual_seed(seed)
    c = L.split(torch.zeros(batch, L.total))
    return replace(
        c,
        id=torch.randn(batch, L.id, generator=g) * 0.8,
        exp=torch.rand(batch, L.exp, generator=g) * 0.3,
        tex=torch.randn(batch, L.tex, generator=g) * 0.7,
        angles=(torch.rand(batch, 3, generator=g) - 0.5) * 0.5,
        trans=(torch.rand(batch, 3, generator=g) - 0.5) * 0.4,
        sh=torch.randn(batch, 27, generator=g) * 0.1,
    )
