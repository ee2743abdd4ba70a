"""Parameter counts of the networks."""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters", "parameter_table", "print_parameter_counts"]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_table(modules: dict[str, nn.Module] | None = None, **named: nn.Module) -> str:
    """A table of parameter counts: one row per network and per direct child, then the total."""
    items = dict(modules or {}, **named)
    rows = []
    total = 0
    for name, m in items.items():
        n = count_parameters(m)
        total += n
        rows.append((name, n))
        for cname, child in m.named_children():
            c = count_parameters(child)
            if c:
                rows.append((f"  {name}.{cname}", c))
    rows.append(("total", total))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{r[0]:<{width}}  {r[1]:>12,}" for r in rows)


def print_parameter_counts(modules: dict[str, nn.Module] | None = None, **named: nn.Module) -> str:
    text = parameter_table(modules, **named)
    print(text)
    return text
