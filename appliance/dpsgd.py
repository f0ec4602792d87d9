"""DP-SGD for the discriminator: Poisson batches, per-sample clipping, Gaussian noise.

The algorithm is DP-SGD (Abadi et al. 2016, "Deep Learning with Differential
Privacy"). One step obeys these rules; ``appliance/accounting.py`` charges it as
one ``subsampled_gaussian`` step at rate ``q`` and noise multiplier ``sigma``.

1. Sampling. Each private row joins the batch independently with probability
   ``q`` (Poisson sampling, ``poisson_sample``), as the RDP analysis of the
   sampled Gaussian mechanism assumes (Mironov, Talwar, Zhang 2019, "Renyi
   Differential Privacy of the Sampled Gaussian Mechanism"). The batch size is
   random and may be 0; a step with an empty batch still adds noise.
2. Per-sample losses. ``per_sample_loss(module)`` returns one loss per row of
   the batch, and loss ``i`` depends on row ``i`` only. Modules that mix rows
   (BatchNorm) or carry parameters we cannot clip (anything but ``nn.Linear``)
   are refused on construction with ``TypeError``.
3. Clipping. The gradient ``g_i`` of loss ``i`` over all trainable parameters
   is scaled by ``min(1, C / (||g_i|| + 1e-6))`` (Opacus' factor), so each row
   moves the summed gradient by at most ``C`` in L2 norm.
4. Noise. ``N(0, (sigma * C)^2 I)`` is added to the clipped sum, over every
   trainable parameter (also those the loss did not reach), drawn from the
   caller's ``torch.Generator`` on the parameters' device.
5. Normalisation. The noisy sum is divided by the public expected batch size
   ``q * n`` (fixed for the run), never by the realised batch size, which would
   reveal whether a row was sampled.
6. The result is added to ``p.grad``, so a non-private term (the loss on
   generated rows, post-processing) can be backpropagated first.

Backends. ``"ghost"`` (default) never materialises per-sample gradients. For an
``nn.Linear`` on 2-D input, sample ``i``'s weight gradient is ``g_i a_i^T``
(``g_i``: gradient of the summed loss w.r.t. the layer's output row, ``a_i``:
its input row), so ``||.||^2 = ||g_i||^2 ||a_i||^2`` and the bias' is
``||g_i||^2`` (Goodfellow 2015, arXiv:1510.01799). One backward pass to the
captured layer outputs gives every norm; the clipped sum is ``(c * G)^T A`` per
layer. A layer called k times in one pass gets the cross terms
``sum_kl (g_k . g_l)(a_k . a_l)``. ``"opacus"`` is the reference: Opacus'
``GradSampleModule`` hooks materialise ``p.grad_sample``, then the same clipping
and noise apply. It exists to cross-check the ghost norms and to benchmark.

Hooks exist only inside ``accumulate``: ordinary forward and backward calls on
the module (the generated-data term, generator updates through the
discriminator) are untouched and cost nothing extra.

Limitations.
- torch's PRNG (Philox / Mersenne Twister) is not cryptographically secure, and
  ``torch.normal`` is not hardened against floating-point attacks on the
  Gaussian mechanism (Jin et al. 2021). Opacus' ``secure_mode`` uses torchcsprng,
  which is not available here; the guarantee holds against an adversary who
  cannot predict the generator's state.
- Inclusion is ``u < q`` with ``u`` a float64 uniform, so the realised rate
  exceeds ``q`` by less than 2**-53 (negligible against the accounting).
- Ghost norms need 2-D Linear inputs (batch, features) and no in-place op on a
  Linear's output; both are checked and raise ``RuntimeError``.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable

import torch
from torch import nn

BACKENDS = ("ghost", "opacus")
_EPS = 1e-6  # added to the norm in the clip factor, as Opacus' DPOptimizer

PerSampleLoss = Callable[[nn.Module], torch.Tensor]


def poisson_sample(n_rows: int, sample_rate: float, generator: torch.Generator,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Indices (int64, sorted) of rows each included independently with prob. ``sample_rate``.

    Drawn on the generator's device, returned on ``device`` (default: the same).
    May be empty.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if not 0.0 <= sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
    u = torch.rand(n_rows, generator=generator, device=generator.device, dtype=torch.float64)
    idx = torch.nonzero(u < sample_rate).squeeze(1)
    return idx.to(device) if device is not None else idx


class PrivateGradient:
    """Adds the DP-SGD gradient of a per-sample loss to module's ``.grad``.

    The module is checked once, here (rule 2). "Parameters" below means those
    with ``requires_grad``; frozen ones get neither gradient nor noise.
    """

    def __init__(self, module: nn.Module, *, max_grad_norm: float, noise_multiplier: float,
                 expected_batch_size: float, generator: torch.Generator,
                 backend: str = "ghost") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        if not noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        if not expected_batch_size > 0:
            raise ValueError(f"expected_batch_size must be > 0, got {expected_batch_size}")
        self.module = module
        self.max_grad_norm = float(max_grad_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.expected_batch_size = float(expected_batch_size)
        self.generator = generator
        self.backend = backend
        self._layers = _check_module(module)
        self._params = [p for p in module.parameters() if p.requires_grad]
        self._sizes = [p.numel() for p in self._params]
        self._n_coordinates = sum(self._sizes)

    def accumulate(self, per_sample_loss: PerSampleLoss) -> torch.Tensor:
        """Add ``(sum_i clip_C(grad_i) + N(0, (sigma*C)^2 I)) / expected_batch_size`` to ``.grad``.

        ``per_sample_loss(module)`` is called once; it runs the forward pass on the
        private batch and returns a 1-D tensor of per-sample losses (length B,
        B may be 0).
        Returns the per-sample gradient norms before clipping (detached, length B).
        """
        device = self._check_device()
        if self.backend == "ghost":
            norms, sums = _ghost_clipped_sums(self._layers, per_sample_loss, self.module, self.max_grad_norm)
        else:
            norms, sums = _opacus_clipped_sums(self.module, self._params, per_sample_loss, self.max_grad_norm)
        noise = self._noise(device)
        for p, noise_p in zip(self._params, noise):
            update = sums.get(p)  # a fresh tensor, owned here
            if update is None:
                update = torch.zeros_like(p)
            if noise_p is not None:
                update.add_(noise_p)
            update.div_(self.expected_batch_size)
            if p.grad is None:
                p.grad = update
            else:
                p.grad.add_(update)
        return norms.detach()

    def _noise(self, device: torch.device) -> list[torch.Tensor | None]:
        """One draw of N(0, (sigma*C)^2) per coordinate of every trainable parameter (rule 4)."""
        std = self.noise_multiplier * self.max_grad_norm
        if std == 0.0:
            return [None] * len(self._params)
        flat = torch.randn(self._n_coordinates, generator=self.generator, device=device,
                           dtype=self._params[0].dtype)
        flat.mul_(std)
        return [chunk.view_as(p) for chunk, p in zip(flat.split(self._sizes), self._params)]

    def _check_device(self) -> torch.device:
        if not self._params:
            raise RuntimeError("the module has no trainable parameters")
        device = self._params[0].device
        if any(p.device != device or p.dtype != self._params[0].dtype for p in self._params):
            raise RuntimeError("all trainable parameters must share one device and dtype")
        if _canonical(self.generator.device) != _canonical(device):
            raise RuntimeError(f"the noise generator is on {self.generator.device} but the module is on "
                               f"{device}; create the torch.Generator on the module's device")
        return device


def _canonical(device: torch.device | str) -> torch.device:
    """``cuda`` and ``cuda:<current>`` name the same device."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


# --- module validation ----------------------------------------------------------

_ROW_MIXING = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def _check_module(module: nn.Module) -> list[nn.Linear]:
    """The trainable Linear layers; TypeError for any other module with parameters or buffers.

    Normalisation layers are refused even without parameters: BatchNorm mixes
    rows, and the others are refused for one simple rule ("Linear layers and
    parameter-free activations only").
    """
    layers: list[nn.Linear] = []
    owners: dict[int, str] = {}
    for name, sub in module.named_modules():
        own = list(sub.parameters(recurse=False))
        label = f"{name or '<root>'} ({type(sub).__name__})"
        if isinstance(sub, _ROW_MIXING) or (own and type(sub) is not nn.Linear):
            raise TypeError(f"DP-SGD supports nn.Linear layers and parameter-free activations only; "
                            f"module {label} is not supported")
        if list(sub.buffers(recurse=False)):
            raise TypeError(f"DP-SGD refuses modules with buffers (state computed from data); "
                            f"module {label} has one")
        for p in own:
            if id(p) in owners:
                raise TypeError(f"parameter shared by {owners[id(p)]} and {label}: not supported")
            owners[id(p)] = label
        if any(p.requires_grad for p in own):
            layers.append(sub)
    return layers


def _check_loss(loss: torch.Tensor) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.dim() != 1:
        raise RuntimeError("per_sample_loss must return a 1-D tensor with one loss per sampled row")
    return loss


# --- ghost backend ---------------------------------------------------------------

class _LinearTape:
    """While open, records (input, output, their versions) of every call of the given layers."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        self.layers = layers
        self.calls: dict[nn.Linear, list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "_LinearTape":
        for layer in self.layers:
            self.calls[layer] = []
            self._handles.append(layer.register_forward_hook(self._record))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _record(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        a = inputs[0]
        self.calls[layer].append((a.detach(), output, (a._version, output._version)))

    def checked(self, batch: int) -> list[tuple[nn.Linear, torch.Tensor, torch.Tensor]]:
        """(layer, input, output) for each call; RuntimeError where ghost norms do not apply."""
        out = []
        for layer, calls in self.calls.items():
            for a, z, versions in calls:
                if a.dim() != 2 or a.shape[0] != batch:
                    raise RuntimeError(f"ghost norms need 2-D input of {batch} rows to every Linear; "
                                       f"got shape {tuple(a.shape)}")
                if (a._version, z._version) != versions:
                    raise RuntimeError("a Linear's input or output was modified in place (e.g. an "
                                       "inplace=True activation); per-sample norms need the originals")
                if not z.requires_grad:
                    raise RuntimeError("a Linear ran without autograd (torch.no_grad) inside per_sample_loss")
                out.append((layer, a, z))
        return out


def _ghost_clipped_sums(layers: list[nn.Linear], per_sample_loss: PerSampleLoss, module: nn.Module,
                        max_grad_norm: float) -> tuple[torch.Tensor, dict[torch.Tensor, torch.Tensor]]:
    """Per-sample norms and clipped gradient sums, from one backward pass to the layer outputs."""
    with _LinearTape(layers) as tape, torch.enable_grad():
        loss = _check_loss(per_sample_loss(module))
    batch = loss.shape[0]
    if batch == 0:
        return loss.new_zeros(0).detach(), {}
    calls = tape.checked(batch)
    if not calls:
        raise RuntimeError("per_sample_loss did not run any trainable layer of the module")
    grads = torch.autograd.grad(loss.sum(), [z for _, _, z in calls], allow_unused=True,
                                materialize_grads=True)
    by_layer: dict[nn.Linear, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for (layer, a, _), g in zip(calls, grads):
        by_layer.setdefault(layer, []).append((a, g.detach()))
    norms = _add(_ghost_sq_norms(layer, pairs) for layer, pairs in by_layer.items()).sqrt()
    clip = (max_grad_norm / (norms + _EPS)).clamp(max=1.0)
    sums: dict[torch.Tensor, torch.Tensor] = {}
    for layer, pairs in by_layer.items():
        sums.update(_ghost_clipped_sum(layer, pairs, clip))
    return norms, sums


def _ghost_sq_norms(layer: nn.Linear, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Squared per-sample gradient norm of one layer's trainable parameters.

    Weight: ``||sum_k g_k a_k^T||^2 = sum_kl (g_k . g_l)(a_k . a_l)``; with one
    call ``||g||^2 ||a||^2``. Bias: ``||sum_k g_k||^2``.
    """
    weight, bias = layer.weight.requires_grad, layer.bias is not None and layer.bias.requires_grad
    if len(pairs) == 1:  # the common case: ||g||^2 (||a||^2 + 1)
        a, g = pairs[0]
        g_sq = _row_sq_norms(g)
        a_sq = _row_sq_norms(a) if weight else torch.zeros_like(g_sq)
        return g_sq * (a_sq + 1.0) if bias else g_sq * a_sq
    total = torch.zeros_like(pairs[0][1][:, 0])
    if weight:
        for a_k, g_k in pairs:
            for a_l, g_l in pairs:
                total += (g_k * g_l).sum(1) * (a_k * a_l).sum(1)
    if bias:
        total += _row_sq_norms(_add(g for _, g in pairs))
    return total


def _row_sq_norms(t: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(t, dim=1).square()


def _ghost_clipped_sum(layer: nn.Linear, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                       clip: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """``sum_i c_i g_i a_i^T`` for the weight and ``sum_i c_i g_i`` for the bias."""
    out: dict[torch.Tensor, torch.Tensor] = {}
    column = clip[:, None]
    if layer.weight.requires_grad:  # scale the narrower of G and A by c
        out[layer.weight] = _add((g.t() @ (a * column)) if a.shape[1] <= g.shape[1] else ((g * column).t() @ a)
                                 for a, g in pairs)
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = _add(torch.mv(g.t(), clip) for _, g in pairs)
    return out


def _add(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum of a non-empty sequence of tensors, without the ``0 + t`` copy of ``sum``."""
    it = iter(tensors)
    total = next(it)
    for t in it:
        total = total + t
    return total


# --- opacus backend (reference) --------------------------------------------------

def _opacus_clipped_sums(module: nn.Module, params: list[torch.Tensor], per_sample_loss: PerSampleLoss,
                         max_grad_norm: float) -> tuple[torch.Tensor, dict[torch.Tensor, torch.Tensor]]:
    """Per-sample gradients from Opacus' GradSampleModule hooks, clipped as DPOptimizer does.

    The hooks live only for this call; ``grad_sample`` and the hooks' other
    attributes are removed before returning, so later backward passes are plain.
    """
    from opacus import GradSampleModule  # imported here: only the reference backend needs it

    if not module.training:
        raise RuntimeError("the opacus backend records activations in training mode only; call module.train()")
    full_hook_flags = {sub: sub._is_full_backward_hook for sub in module.modules()}
    gsm = GradSampleModule(module, batch_first=True, loss_reduction="sum", strict=True)
    try:
        with torch.enable_grad():
            loss = _check_loss(per_sample_loss(module))
        batch = loss.shape[0]
        if batch == 0:
            return loss.new_zeros(0).detach(), {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            torch.autograd.grad(loss.sum(), params, allow_unused=True)
        samples = [_grad_sample(p, batch) for p in params]
    finally:
        gsm.cleanup()
        for sub, flag in full_hook_flags.items():
            for attr in ("activations", "max_batch_len"):
                if hasattr(sub, attr):
                    delattr(sub, attr)
            sub._is_full_backward_hook = flag
    norms = torch.stack([g.reshape(batch, -1).norm(2, dim=1) for g in samples], dim=1).norm(2, dim=1)
    clip = (max_grad_norm / (norms + _EPS)).clamp(max=1.0)
    return norms, {p: torch.einsum("i,i...", clip, g) for p, g in zip(params, samples)}


def _grad_sample(p: torch.Tensor, batch: int) -> torch.Tensor:
    """``p.grad_sample`` as one (batch, *p.shape) tensor; zeros where the loss did not reach p."""
    gs = getattr(p, "grad_sample", None)
    if gs is None:
        return torch.zeros((batch, *p.shape), device=p.device, dtype=p.dtype)
    if not isinstance(gs, torch.Tensor) or gs.shape[0] != batch:
        raise RuntimeError("Opacus recorded per-sample gradients of more than one batch")
    return gs
