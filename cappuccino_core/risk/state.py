"""What the risk layers remember per book between bars, and the fixed set of rules.

A ``RiskState`` holds ``N`` books (training episodes, backtest windows, or the one live
account) as tensors: ``[N]`` per book, ``[N, A]`` per book and asset. It is immutable: the
risk functions return a new state instead of changing this one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum

import torch


class RiskRule(StrEnum):
    """Every rule that can trigger. Portfolio rules are per book, position rules per book and asset."""

    PORTFOLIO_TRAILING_STOP = "portfolio_trailing_stop"
    PROFIT_TAKE = "profit_take"
    MOVE_TO_CASH = "move_to_cash"
    COOLDOWN = "cooldown"  # buys requested while the move-to-cash cooldown runs were blocked
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    POSITION_TRIM = "position_trim"  # a position above the cap was sold down to it
    POSITION_CAP = "position_cap"  # a buy was reduced so the position lands at the cap
    CONVICTION = "conviction"  # a policy buy was dropped for low conviction


BOOK_RULES: tuple[RiskRule, ...] = (
    RiskRule.PORTFOLIO_TRAILING_STOP,
    RiskRule.PROFIT_TAKE,
    RiskRule.MOVE_TO_CASH,
    RiskRule.COOLDOWN,
)
ASSET_RULES: tuple[RiskRule, ...] = (
    RiskRule.STOP_LOSS,
    RiskRule.TRAILING_STOP,
    RiskRule.POSITION_TRIM,
    RiskRule.POSITION_CAP,
    RiskRule.CONVICTION,
)


@dataclass(frozen=True)
class RiskState:
    """Per-book memory of the risk layers (tensors; ``N`` books, ``A`` assets).

    A state is built for one ``RiskConfig``: fields that only a rule which is off would read
    are not maintained, so switching a rule on mid-run starts it from stale values.

    Attributes:
        entry_price: ``[N, A]`` volume-weighted average fill price of the open position
            (slippage included, fees excluded); 0 when flat. Unchanged by partial sells.
        high_water: ``[N, A]`` highest price seen since the position was opened (fill and
            mark prices); 0 when flat. Maintained only when ``trailing_stop`` is set.
        equity: ``[N]`` equity at the last mark (decision prices or prices after fills).
        equity_peak: ``[N]`` highest equity of the current cycle (portfolio trailing stop);
            restarts at the cycle's start equity when a cycle opens.
        book_peak: ``[N]`` highest equity since the book was reset or last moved to cash
            (move-to-cash and the conviction score's drawdown); maintained only when one of
            them is on.
        cycle_start_equity: ``[N]`` equity just before the fill that opened the current cycle.
        in_cycle: ``[N]`` bool, the book is in a cycle (invested since its last flat point).
        profit_taken: ``[N]`` bool, profit-taking already fired in the current cycle.
        cooldown: ``[N]`` int64, decisions left in which buys stay blocked after move-to-cash.
        last_price: ``[N, A]`` decision prices of the previous bar; this and the three averages
            below are maintained only while the conviction filter is on.
        return_fast: ``[N, A]`` fast exponential average of log returns (conviction).
        variance_fast: ``[N, A]`` fast exponential average of squared log returns.
        variance_slow: ``[N, A]`` slow exponential average of squared log returns.
        book_counts: ``[N, len(BOOK_RULES)]`` int64 trigger counts per portfolio rule.
        asset_counts: ``[N, len(ASSET_RULES), A]`` int64 trigger counts per position rule and asset.
    """

    entry_price: torch.Tensor
    high_water: torch.Tensor
    equity: torch.Tensor
    equity_peak: torch.Tensor
    book_peak: torch.Tensor
    cycle_start_equity: torch.Tensor
    in_cycle: torch.Tensor
    profit_taken: torch.Tensor
    cooldown: torch.Tensor
    last_price: torch.Tensor
    return_fast: torch.Tensor
    variance_fast: torch.Tensor
    variance_slow: torch.Tensor
    book_counts: torch.Tensor
    asset_counts: torch.Tensor

    @classmethod
    def initial(
        cls, n: int, a: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> RiskState:
        """Return the state of ``n`` flat books over ``a`` assets that have seen no bar yet."""
        if n < 1 or a < 1:
            raise ValueError(f"a risk state needs at least one book and one asset, got n={n}, a={a}")

        def zeros(*shape: int, kind: torch.dtype = dtype) -> torch.Tensor:
            return torch.zeros(*shape, dtype=kind, device=device)

        return cls(
            entry_price=zeros(n, a),
            high_water=zeros(n, a),
            equity=zeros(n),
            equity_peak=zeros(n),
            book_peak=zeros(n),
            cycle_start_equity=zeros(n),
            in_cycle=zeros(n, kind=torch.bool),
            profit_taken=zeros(n, kind=torch.bool),
            cooldown=zeros(n, kind=torch.int64),
            last_price=zeros(n, a),
            return_fast=zeros(n, a),
            variance_fast=zeros(n, a),
            variance_slow=zeros(n, a),
            book_counts=zeros(n, len(BOOK_RULES), kind=torch.int64),
            asset_counts=zeros(n, len(ASSET_RULES), a, kind=torch.int64),
        )

    @property
    def num_books(self) -> int:
        """Number of books ``N``."""
        return int(self.entry_price.shape[0])

    @property
    def num_assets(self) -> int:
        """Number of assets ``A``."""
        return int(self.entry_price.shape[1])

    def reset_rows(self, mask: torch.Tensor) -> RiskState:
        """Return a state whose rows in ``mask`` (``[N]`` bool) are back to ``initial`` (counters too).

        The environment calls this for the episodes it restarts; other rows are untouched.
        """
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.entry_price.device)
        if mask.shape != (self.num_books,):
            raise ValueError(f"reset mask must have shape ({self.num_books},), got {tuple(mask.shape)}")
        changes = {}
        for field in fields(self):
            value = getattr(self, field.name)
            row_mask = mask.view(-1, *([1] * (value.dim() - 1)))
            changes[field.name] = torch.where(row_mask, torch.zeros_like(value), value)
        return replace(self, **changes)

    def count(self, rule: RiskRule) -> torch.Tensor:
        """Return ``[N]`` int64: how often ``rule`` triggered per book (position rules summed over assets)."""
        rule = RiskRule(rule)
        if rule in BOOK_RULES:
            return self.book_counts[:, BOOK_RULES.index(rule)].clone()
        return self.asset_counts[:, ASSET_RULES.index(rule)].sum(dim=-1)

    def assign(self, mask: torch.Tensor, rows: RiskState) -> RiskState:
        """Return this state with the books in ``mask`` (``[N]`` bool) replaced by ``rows`` (in order)."""
        changes = {}
        for field in fields(self):
            value = getattr(self, field.name).clone()
            value[mask] = getattr(rows, field.name)
            changes[field.name] = value
        return replace(self, **changes)

    def select(self, rows: torch.Tensor | slice | list[int]) -> RiskState:
        """Return the books at ``rows`` as a new state (e.g. one book out of a batch)."""
        return replace(self, **{field.name: getattr(self, field.name)[rows] for field in fields(self)})
