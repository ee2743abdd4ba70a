"""The texture generator's two branches on two CPU threads.

The generator is ``merger(decoder(identity), refiner(photo colours))``: the decoder and the
refiner share no weights and no inputs, so their forward and backward passes can run at the same
time. Torch's CPU kernels release the GIL, so a second Python thread running the decoder uses a
second core, with each op still on one intra-op thread: no OpenMP team, so no spin-waiting pool
(which degrades badly on a small or shared machine) and nothing to lose when the second core is
busy — the two lanes then just take turns.

One step::

    out = lanes.forward(identity, x)      # decoder ∥ refiner, then the merger (on leaves)
    loss(out).backward()                  # the merger and the loss, down to the two leaves
    lanes.backward()                      # decoder ∥ refiner backward, from the leaves' grads

Gradients equal those of ``generator(identity, x)`` up to float rounding (the engine sums the
same terms in another order), checked in the tests against the sequential generator.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["BranchLanes"]


def _vjp(out: torch.Tensor, grad: torch.Tensor) -> None:
    """``out.backward(grad)`` as the backward of the scalar ``sum(out * grad)`` (the same
    gradients, bitwise): torch's ``backward`` with explicit gradients imports sympy (0.7 s) on its
    first call."""
    (out * grad).sum().backward()


def _grad_call(enabled: bool, fn, *args):
    with torch.set_grad_enabled(enabled):
        return fn(*args)


class BranchLanes:
    """Runs a :class:`~facegcn.graph.TextureGenerator`'s decoder and refiner on two threads.

    Args:
        generator: the generator (its ``decoder``, ``refiner`` and ``merger`` are used).

    Use as a context manager (or call :meth:`close`) so that the worker thread ends.
    """

    def __init__(self, generator):
        self.gen = generator
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="facegcn-decoder")
        self._branches: tuple | None = None

    def forward(self, identity: torch.Tensor, refiner_input: torch.Tensor) -> torch.Tensor:
        """``identity (B, F)``, ``refiner_input (B, V, C)`` -> the merger's output ``(B, V, 3)``;
        the merger's inputs are leaves whose gradients :meth:`backward` sends down the branches."""
        grad = torch.is_grad_enabled()
        fut = self._pool.submit(_grad_call, grad, self.gen.decoder, identity)
        ref = self.gen.refiner(refiner_input)
        dec = fut.result()
        if not grad:
            self._branches = None
            return self.gen.merger(dec, ref)
        dl, rl = dec.detach().requires_grad_(), ref.detach().requires_grad_()
        self._branches = (dec, dl, ref, rl)
        return self.gen.merger(dl, rl)

    def backward(self) -> None:
        """Back-propagate the leaves' gradients (set by the loss's ``backward``) through both
        branches at once; accumulates into the parameters' ``.grad`` like ``backward`` does."""
        if self._branches is None:
            raise RuntimeError("BranchLanes.backward() needs a forward() with gradients first")
        dec, dl, ref, rl = self._branches
        self._branches = None
        fut = None
        if dl.grad is not None:
            fut = self._pool.submit(_vjp, dec, dl.grad)
        try:
            if rl.grad is not None:
                _vjp(ref, rl.grad)
        finally:
            if fut is not None:
                fut.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "BranchLanes":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
