"""The released generator: an MLP G(z, y) with one softmax head per column.

Rules:
1. The architecture is fully described by ``GeneratorConfig`` (JSON-safe) and
   the codec's layout; weights are loaded only into a module built from them.
2. ``G`` reads fresh Gaussian noise ``z`` and a one-hot class ``y`` (the
   target, for conditional sampling as in the AC-GAN of the seed paper). It
   never reads a real row.
3. Output: logits for every column's codes and offsets in [-1, 1] (tanh);
   ``relaxed`` gives the Gumbel-softmax rows used in training, ``draw`` the
   discrete codes used in sampling (a draw from the same softmax).
4. ``offsets = "uniform"`` (an engine that fits codes only): ``draw`` places
   each value uniformly inside its bin instead of using the offset head.
5. ``offsets = "table"``: ``draw`` places each value by a piecewise-uniform
   distribution over ``offset_cells`` equal sub-cells of its bin, one per
   (offset column, code): the buffer ``offset_table`` (n_offsets x codes x
   cells) of probabilities, saved with the weights. ``offset_heads`` names the
   head of each offset column. The table is whatever the engine fitted (for
   the marginal engine, a DP release); it is checked on load (rule 1).
6. ``context_dim > 0``: each head also reads the codes drawn before it, so
   the model is autoregressive given (z, y): head j adds
   ``V_j relu(P h + sum_{i before j} E[c_i])`` to its logits (``E``: a
   ``context_dim`` embedding of every code, ``P``: a projection of the body's
   output ``h``, ``V_j``: head j's read-out). The heads are drawn in
   ``draw_order`` (a permutation of the heads; empty: the codec's order),
   which the engine chooses. ``forward`` then needs the codes (teacher
   forcing: head j's logits given the row's codes drawn before j); ``draw``
   draws the heads in that order. ``relaxed`` is for ``context_dim = 0``
   only (the GAN engine).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

GUMBEL_TAU = 0.2  # CTGAN's temperature (Xu et al. 2019)
OFFSET_MODES = ("learned", "uniform", "table")
MAX_OFFSET_CELLS = 64


@dataclass(frozen=True)
class GeneratorConfig:
    latent_dim: int
    hidden: tuple[int, ...]
    n_classes: int
    head_sizes: tuple[int, ...]
    n_offsets: int
    offsets: str = "learned"
    offset_heads: tuple[int, ...] = ()   # "table": the head of each offset column
    offset_cells: int = 0                # "table": sub-cells per bin
    context_dim: int = 0                 # > 0: heads read the codes drawn before them (rule 6)
    draw_order: tuple[int, ...] = ()     # context_dim > 0: the heads' order (rule 6); (): the codec's

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("hidden", "head_sizes", "offset_heads", "draw_order"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, raw: dict) -> GeneratorConfig:
        """Validate types and ranges; raise ValueError naming the field."""
        expected = {"latent_dim", "hidden", "n_classes", "head_sizes", "n_offsets", "offsets",
                    "offset_heads", "offset_cells", "context_dim", "draw_order"}
        if not isinstance(raw, dict) or set(raw) != expected:
            raise ValueError(f"architecture must have exactly the fields {sorted(expected)}")
        ints = {k: raw[k] for k in ("latent_dim", "n_classes", "n_offsets", "context_dim")}
        for k, v in ints.items():
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 100_000:
                raise ValueError(f"architecture.{k} must be an integer in [0, 100000]")
        for k in ("hidden", "head_sizes"):
            v = raw[k]
            if not isinstance(v, list) or not v or not all(
                isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 100_000 for x in v
            ):
                raise ValueError(f"architecture.{k} must be a non-empty list of positive integers")
        if raw["latent_dim"] < 1 or raw["n_classes"] < 1:
            raise ValueError("architecture.latent_dim and n_classes must be positive")
        if raw["offsets"] not in OFFSET_MODES:
            raise ValueError(f"architecture.offsets must be one of {', '.join(OFFSET_MODES)}")
        _check_offset_table_fields(raw)
        _check_draw_order(raw)
        return cls(raw["latent_dim"], tuple(raw["hidden"]), raw["n_classes"], tuple(raw["head_sizes"]),
                   raw["n_offsets"], raw["offsets"], tuple(raw["offset_heads"]), raw["offset_cells"],
                   raw["context_dim"], tuple(raw["draw_order"]))

    @property
    def order(self) -> tuple[int, ...]:
        """The heads in the order they are drawn (rule 6)."""
        return self.draw_order or tuple(range(len(self.head_sizes)))

    @property
    def offset_codes(self) -> int:
        """Rows of ``offset_table`` per column: the largest offset head."""
        return max((self.head_sizes[h] for h in self.offset_heads), default=0)


def _check_offset_table_fields(raw: dict) -> None:
    heads, cells = raw["offset_heads"], raw["offset_cells"]
    if not isinstance(heads, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in heads):
        raise ValueError("architecture.offset_heads must be a list of head indices")
    if not isinstance(cells, int) or isinstance(cells, bool) or not 0 <= cells <= MAX_OFFSET_CELLS:
        raise ValueError(f"architecture.offset_cells must be an integer in [0, {MAX_OFFSET_CELLS}]")
    if raw["offsets"] != "table":
        if heads or cells:
            raise ValueError('architecture.offset_heads and offset_cells are for offsets = "table" only')
        return
    if cells < 1 or len(heads) != raw["n_offsets"] or sorted(set(heads)) != heads \
            or not all(0 <= h < len(raw["head_sizes"]) for h in heads):
        raise ValueError('architecture with offsets = "table" needs offset_cells >= 1 and one increasing '
                         'head index per offset column in offset_heads')


def _check_draw_order(raw: dict) -> None:
    order = raw["draw_order"]
    if not isinstance(order, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in order):
        raise ValueError("architecture.draw_order must be a list of head indices")
    if order and (not raw["context_dim"] or not _names_every_head_once(order, len(raw["head_sizes"]))):
        raise ValueError("architecture.draw_order must be empty, or with context_dim > 0 name every head once")


def _names_every_head_once(order: list[int] | tuple[int, ...], n_heads: int) -> bool:
    """True when ``order`` is a permutation of the heads 0 .. n_heads - 1."""
    return sorted(order) == list(range(n_heads))


def sub_cells(offsets: np.ndarray, cells: int) -> np.ndarray:
    """The sub-cell (rule 5) of each offset in [-1, 1]: ``cells`` equal parts of the bin; the
    inverse of the place ``draw`` gives a sub-cell."""
    return np.clip(np.floor((offsets + 1.0) / 2.0 * cells), 0, cells - 1).astype(np.int64)


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.latent_dim + config.n_classes
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.logits = nn.Linear(width, sum(config.head_sizes))
        self.offsets = nn.Linear(width, max(config.n_offsets, 1))
        if config.context_dim:
            self._init_context(width)
        if config.offsets == "table":
            uniform = torch.full((config.n_offsets, config.offset_codes, config.offset_cells), 1 / config.offset_cells)
            self.register_buffer("offset_table", uniform)

    def _init_context(self, width: int) -> None:
        """Rule 6's parameters; the read-outs start at zero (the heads start independent given z)."""
        sizes, r = self.config.head_sizes, self.config.context_dim
        self.code_embedding = nn.Embedding(sum(sizes), r)
        self.context_from_latent = nn.Linear(width, r)
        self.context_logits = nn.Parameter(torch.zeros(len(sizes), r, max(sizes)))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        valid = np.concatenate([j * max(sizes) + np.arange(size) for j, size in enumerate(sizes)])
        self.register_buffer("head_starts", torch.as_tensor(starts, dtype=torch.int64), persistent=False)
        self.register_buffer("valid_logits", torch.as_tensor(valid, dtype=torch.int64), persistent=False)
        self.register_buffer("earlier", self._earlier(), persistent=False)

    def _earlier(self) -> torch.Tensor:
        """``earlier[j, i]`` is 1 where head i is drawn before head j (rule 6), else 0."""
        position = np.argsort(self.config.order)
        return torch.as_tensor(position[None, :] < position[:, None], dtype=torch.float32)

    def reorder(self, order: tuple[int, ...]) -> None:
        """Draw the heads in ``order`` (a permutation of the heads) from now on; the
        parameters are kept (an engine may change the order while it fits)."""
        if not _names_every_head_once(order, len(self.config.head_sizes)) or not self.config.context_dim:
            raise ValueError("a draw order names every head once, for a generator with context_dim > 0")
        self.config = replace(self.config, draw_order=tuple(order))
        self.earlier.copy_(self._earlier())

    def check_offset_table(self) -> None:
        """Raise ValueError unless every row of ``offset_table`` is a probability vector."""
        if self.config.offsets != "table":
            return
        table = self.offset_table
        if (table < 0).any() or not torch.allclose(table.sum(-1), torch.ones_like(table[..., 0]), atol=1e-4):
            raise ValueError("offset_table rows must be non-negative and sum to 1")

    def forward(self, z: torch.Tensor, y: torch.Tensor,
                codes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, sum heads), offsets (B, n_offsets) in [-1, 1]). With ``context_dim > 0``,
        ``codes`` (B, columns) are required: each head's logits given the codes before it."""
        h = self._body(z, y)
        logits = self.logits(h)
        if self.config.context_dim:
            if codes is None:
                raise ValueError("this generator's heads read the codes before them (context_dim > 0): "
                                 "pass codes, or use draw")
            logits = logits + self._context_logits(h, codes)
        return logits, torch.tanh(self.offsets(h))[:, : self.config.n_offsets]

    def _body(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z, F.one_hot(y, self.config.n_classes).to(z.dtype)], dim=1))

    def _context_logits(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Rule 6's term of every head, given the codes (teacher forcing). Laid out columns
        first (columns x B x r): the sum over the columns drawn before is one product with the
        0/1 matrix ``earlier`` (torch's cumsum is slower on CPU), the read-outs one bmm."""
        embedded = self.code_embedding(codes.T + self.head_starts[:, None])  # columns x B x r
        before = (self.earlier @ embedded.flatten(1)).view_as(embedded)      # sum over i before j
        context = F.relu(before + self.context_from_latent(h)[None])
        padded = torch.bmm(context, self.context_logits)                     # columns x B x max head
        return padded.transpose(0, 1).reshape(len(h), -1).index_select(1, self.valid_logits)

    def relaxed(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Differentiable rows shaped like the codec's vectors (Gumbel-softmax heads)."""
        if self.config.context_dim:
            raise ValueError("relaxed rows are for generators with context_dim = 0")
        logits, offsets = self(z, y)
        heads = [F.gumbel_softmax(part, tau=GUMBEL_TAU)
                 for part in logits.split(list(self.config.head_sizes), dim=1)]
        return torch.cat(heads + [offsets], dim=1)

    @torch.no_grad()
    def draw(self, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Discrete codes (B, columns) drawn from each head's softmax, in the draw order
        (rule 6), and offsets."""
        h = self._body(z, y)
        offsets = torch.tanh(self.offsets(h))[:, : self.config.n_offsets]
        codes = self._draw_codes(h, self.logits(h), generator)
        if self.config.offsets == "uniform":
            offsets = torch.rand(offsets.shape, generator=generator, device=offsets.device) * 2 - 1
        elif self.config.offsets == "table":
            offsets = self._table_offsets(torch.cat(codes, dim=1), generator)
        return torch.cat(codes, dim=1), offsets

    def forced_draw(self, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, codes): codes drawn as ``draw`` draws them, and every head's logits given
        the codes drawn before it, differentiable (teacher forcing on the generator's own
        draw): ``forward(z, y, codes)`` with one pass of the body."""
        if not self.config.context_dim:
            raise ValueError("forced_draw is for generators whose heads read earlier codes (context_dim > 0)")
        h = self._body(z, y)
        logits = self.logits(h)
        with torch.no_grad():
            codes = torch.cat(self._draw_codes(h, logits, generator), dim=1)
        return logits + self._context_logits(h, codes), codes

    def _draw_codes(self, h: torch.Tensor, logits: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """One code per head (in the columns' order), drawn in the draw order: the Gumbel-max
        draw from its softmax (argmax of logits plus Gumbel noise, the same law as a
        multinomial draw)."""
        sizes = list(self.config.head_sizes)
        uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
        noisy = logits - torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-7)))
        if not self.config.context_dim:
            return [part.argmax(1, keepdim=True) for part in noisy.split(sizes, dim=1)]
        parts, latent = noisy.split(sizes, dim=1), self.context_from_latent(h)
        before, codes = 0.0, [None] * len(sizes)
        for j in self.config.order:
            part = parts[j] + F.relu(before + latent) @ self.context_logits[j, :, : sizes[j]]
            codes[j] = part.argmax(1, keepdim=True)
            before = before + self.code_embedding(codes[j][:, 0] + self.head_starts[j])
        return codes

    def _table_offsets(self, codes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Offsets in [-1, 1]: a sub-cell drawn from the code's row of ``offset_table``, then
        a uniform place inside it (rule 5)."""
        cells = self.config.offset_cells
        columns = []
        for k, head in enumerate(self.config.offset_heads):
            probs = self.offset_table[k, codes[:, head]]
            cell = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            inside = torch.rand(cell.shape, generator=generator, device=cell.device)
            columns.append((cell + inside) / cells * 2 - 1)
        return torch.stack(columns, dim=1) if columns else codes.new_zeros((len(codes), 0), dtype=torch.float32)
