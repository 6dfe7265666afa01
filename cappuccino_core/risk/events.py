"""What one ``apply_risk`` call decided: the actions, the trigger masks and, on request, the events.

The hot path keeps triggers as boolean tensors; ``RiskDecision.events`` turns them into
``RiskEvent`` objects (with the measured value and a sentence) only when someone journals them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cappuccino_core.risk.config import RiskConfig
from cappuccino_core.risk.state import RiskRule, RiskState

# The order in which apply_risk evaluates the rules; events are listed in it, per book.
APPLICATION_ORDER: tuple[RiskRule, ...] = (
    RiskRule.CONVICTION,
    RiskRule.PORTFOLIO_TRAILING_STOP,
    RiskRule.MOVE_TO_CASH,
    RiskRule.PROFIT_TAKE,
    RiskRule.STOP_LOSS,
    RiskRule.TRAILING_STOP,
    RiskRule.POSITION_TRIM,
    RiskRule.COOLDOWN,
    RiskRule.POSITION_CAP,
)


@dataclass(frozen=True)
class RiskEvent:
    """One rule triggering on one book (and asset, for position rules).

    Attributes:
        book: the book's label (the row index unless labels were given).
        asset: the asset's column, ``None`` for portfolio rules.
        rule: which rule triggered.
        reason: a sentence for the journal.
        value: the measured quantity (see ``RiskDecision.events`` for each rule's definition).
        threshold: the configured threshold it was compared with.
    """

    book: int
    asset: int | None
    rule: RiskRule
    reason: str
    value: float
    threshold: float


@dataclass(frozen=True, eq=False)
class DecisionMeasures:
    """The tensors behind a decision's events (references, not copies; ``None`` when the rule is off)."""

    equity: torch.Tensor
    equity_peak: torch.Tensor
    book_peak: torch.Tensor
    cycle_start_equity: torch.Tensor
    cooldown: torch.Tensor
    prices: torch.Tensor
    entry_price: torch.Tensor
    high_water: torch.Tensor
    value: torch.Tensor
    spend: torch.Tensor | None
    score: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class RiskDecision:
    """The outcome of ``apply_risk``.

    Attributes:
        actions: ``[N, A]`` the actions to execute (``accounting`` mapping).
        state: the state to pass to ``update_after_fills`` once these actions are filled.
        triggers: per enabled rule, ``[N]`` (portfolio rules) or ``[N, A]`` (position rules)
            bool masks of where it triggered at this decision. Rules that are off are absent.
        config: the config the decision was made with.
        measures: the tensors ``events`` reads.
    """

    actions: torch.Tensor
    state: RiskState
    triggers: dict[RiskRule, torch.Tensor]
    config: RiskConfig
    measures: DecisionMeasures

    def count(self, rule: RiskRule) -> torch.Tensor:
        """Return ``[N]`` int64: how often ``rule`` triggered per book at this decision (0 when off)."""
        mask = self.triggers.get(RiskRule(rule))
        if mask is None:
            return torch.zeros(self.actions.shape[0], dtype=torch.int64, device=self.actions.device)
        return mask.long() if mask.dim() == 1 else mask.sum(dim=-1)

    def events(self, row_labels: Sequence[int] | None = None) -> list[RiskEvent]:
        """Materialise every trigger as a ``RiskEvent``, by book, in application order.

        Values: trailing stop ``equity / cycle peak - 1``; move-to-cash ``equity / book peak - 1``;
        profit-taking ``equity / cycle start equity - 1``; stop-loss ``price / entry - 1``;
        trailing stop ``price / high-water mark - 1``; trim the position's weight; cap the
        weight the buy would have reached; cooldown the bars left; conviction the score.

        Args:
            row_labels: the book label of each row (e.g. episode or account ids); default the row index.
        """
        if row_labels is not None and len(row_labels) != self.actions.shape[0]:
            raise ValueError(f"row_labels has {len(row_labels)} labels for {self.actions.shape[0]} books")
        events: list[RiskEvent] = []
        for rule in APPLICATION_ORDER:
            mask = self.triggers.get(rule)
            if mask is None or not bool(mask.any()):
                continue
            threshold = self._threshold(rule)
            for index in mask.nonzero().tolist():
                row, asset = index[0], (index[1] if len(index) > 1 else None)
                value = self._value(rule, row, asset)
                events.append(
                    RiskEvent(
                        book=int(row_labels[row]) if row_labels is not None else row,
                        asset=asset,
                        rule=rule,
                        reason=self._reason(rule, value, threshold),
                        value=value,
                        threshold=threshold,
                    )
                )
        order = {rule: i for i, rule in enumerate(APPLICATION_ORDER)}
        return sorted(events, key=lambda e: (e.book, order[e.rule], -1 if e.asset is None else e.asset))

    def _threshold(self, rule: RiskRule) -> float:
        c = self.config
        thresholds = {
            RiskRule.CONVICTION: c.conviction_threshold,
            RiskRule.PORTFOLIO_TRAILING_STOP: -(c.portfolio_trailing_stop or 0.0),
            RiskRule.MOVE_TO_CASH: -(c.move_to_cash_threshold or 0.0),
            RiskRule.PROFIT_TAKE: c.profit_take_threshold,
            RiskRule.STOP_LOSS: -(c.stop_loss or 0.0),
            RiskRule.TRAILING_STOP: -(c.trailing_stop or 0.0),
            RiskRule.POSITION_TRIM: c.max_position_fraction,
            RiskRule.POSITION_CAP: c.max_position_fraction,
            RiskRule.COOLDOWN: float(c.cooldown_bars),
        }
        return float(thresholds[rule])

    def _value(self, rule: RiskRule, row: int, asset: int | None) -> float:
        m = self.measures
        equity = float(m.equity[row])
        if rule is RiskRule.PORTFOLIO_TRAILING_STOP:
            return equity / float(m.equity_peak[row]) - 1.0
        if rule is RiskRule.MOVE_TO_CASH:
            return equity / float(m.book_peak[row]) - 1.0
        if rule is RiskRule.PROFIT_TAKE:
            return equity / float(m.cycle_start_equity[row]) - 1.0
        if rule is RiskRule.COOLDOWN:
            return float(m.cooldown[row])
        assert asset is not None
        price = float(m.prices[row, asset])
        if rule is RiskRule.STOP_LOSS:
            return price / float(m.entry_price[row, asset]) - 1.0
        if rule is RiskRule.TRAILING_STOP:
            return price / float(m.high_water[row, asset]) - 1.0
        if rule is RiskRule.POSITION_TRIM:
            return float(m.value[row, asset]) / equity
        if rule is RiskRule.POSITION_CAP:
            assert m.spend is not None
            return (float(m.value[row, asset]) + float(m.spend[row, asset])) / equity
        assert m.score is not None
        return float(m.score[row, asset])

    def _reason(self, rule: RiskRule, value: float, threshold: float) -> str:
        c = self.config
        reasons = {
            RiskRule.CONVICTION: f"buy dropped: conviction score {value:.3f} below {threshold:.3f}",
            RiskRule.PORTFOLIO_TRAILING_STOP: (
                f"equity {value:+.2%} from the cycle's peak, at or below {threshold:+.2%}: sell everything"
            ),
            RiskRule.MOVE_TO_CASH: (
                f"equity {value:+.2%} from the book's peak, at or below {threshold:+.2%}: "
                f"sell everything and block buys for {c.cooldown_bars} bars"
            ),
            RiskRule.PROFIT_TAKE: (
                f"equity {value:+.2%} since the cycle started, at or above {threshold:+.2%}: "
                f"sell {c.profit_take_fraction:.0%} of every position (once per cycle)"
            ),
            RiskRule.STOP_LOSS: (
                f"price {value:+.2%} from the average entry price, at or below {threshold:+.2%}: sell the position"
            ),
            RiskRule.TRAILING_STOP: (
                f"price {value:+.2%} from the position's high-water mark, at or below {threshold:+.2%}: "
                "sell the position"
            ),
            RiskRule.POSITION_TRIM: (
                f"position is {value:.2%} of equity, above the {threshold:.2%} cap: sell down to it"
            ),
            RiskRule.COOLDOWN: f"buys blocked: {value:.0f} of {threshold:.0f} cooldown bars left after move-to-cash",
            RiskRule.POSITION_CAP: (
                f"buy would take the position to {value:.2%} of equity, above the {threshold:.2%} cap: reduced to it"
            ),
        }
        return reasons[rule]
