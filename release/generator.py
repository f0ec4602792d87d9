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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["head_sizes"] = list(self.hidden), list(self.head_sizes)
        d["offset_heads"] = list(self.offset_heads)
        return d

    @classmethod
    def from_dict(cls, raw: dict) -> GeneratorConfig:
        """Validate types and ranges; raise ValueError naming the field."""
        expected = {"latent_dim", "hidden", "n_classes", "head_sizes", "n_offsets", "offsets",
                    "offset_heads", "offset_cells"}
        if not isinstance(raw, dict) or set(raw) != expected:
            raise ValueError(f"architecture must have exactly the fields {sorted(expected)}")
        ints = {k: raw[k] for k in ("latent_dim", "n_classes", "n_offsets")}
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
        return cls(raw["latent_dim"], tuple(raw["hidden"]), raw["n_classes"], tuple(raw["head_sizes"]),
                   raw["n_offsets"], raw["offsets"], tuple(raw["offset_heads"]), raw["offset_cells"])

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
        if config.offsets == "table":
            uniform = torch.full((config.n_offsets, config.offset_codes, config.offset_cells), 1 / config.offset_cells)
            self.register_buffer("offset_table", uniform)

    def check_offset_table(self) -> None:
        """Raise ValueError unless every row of ``offset_table`` is a probability vector."""
        if self.config.offsets != "table":
            return
        table = self.offset_table
        if (table < 0).any() or not torch.allclose(table.sum(-1), torch.ones_like(table[..., 0]), atol=1e-4):
            raise ValueError("offset_table rows must be non-negative and sum to 1")

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, sum heads), offsets (B, n_offsets) in [-1, 1])."""
        h = self.body(torch.cat([z, F.one_hot(y, self.config.n_classes).to(z.dtype)], dim=1))
        return self.logits(h), torch.tanh(self.offsets(h))[:, : self.config.n_offsets]

    def relaxed(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Differentiable rows shaped like the codec's vectors (Gumbel-softmax heads)."""
        logits, offsets = self(z, y)
        heads = [F.gumbel_softmax(part, tau=GUMBEL_TAU)
                 for part in logits.split(list(self.config.head_sizes), dim=1)]
        return torch.cat(heads + [offsets], dim=1)

    @torch.no_grad()
    def draw(self, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Discrete codes (B, columns) drawn from each head's softmax, and offsets."""
        logits, offsets = self(z, y)
        codes = [torch.multinomial(torch.softmax(part, dim=1), 1, generator=generator)
                 for part in logits.split(list(self.config.head_sizes), dim=1)]
        if self.config.offsets == "uniform":
            offsets = torch.rand(offsets.shape, generator=generator, device=offsets.device) * 2 - 1
        elif self.config.offsets == "table":
            offsets = self._table_offsets(torch.cat(codes, dim=1), generator)
        return torch.cat(codes, dim=1), offsets

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
