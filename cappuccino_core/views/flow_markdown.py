"""What the health and tournament flow runs say in the Prefect UI: their result as a short markdown document.

The first line under the title is the headline (it is also the artifact's description); then
the detail a person needs to act: the health findings with their level, or the arena's king,
streak and the matches just played. Plain functions of the flows' reports (no Prefect here).
"""

from __future__ import annotations

from typing import Any


def artifact_key(prefix: str, name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) for ``prefix`` and ``name``."""
    return f"{prefix}-" + "".join(c if c.isalnum() else "-" for c in name.lower())


def health_headline(report: dict[str, Any]) -> str:
    """One line: how many traders were watched and what was found."""
    findings, watched = report["findings"], report["watched"]
    traders = f"{len(watched)} trader{'' if len(watched) == 1 else 's'} watched"
    if not findings:
        return f"Healthy: no finding ({traders}, bars up to {_minute(report['expected_bar'])} UTC expected)"
    levels = sorted({f["level"] for f in findings})
    return f"{len(findings)} finding{'' if len(findings) == 1 else 's'} ({', '.join(levels)}; {traders})"


def health_markdown(report: dict[str, Any]) -> str:
    """The health check's result: headline, the traders watched, one row per finding."""
    lines = [f"# Cappuccino health at {_minute(report['at'])} UTC", "", f"**{health_headline(report)}**", ""]
    if report["watched"]:
        lines += ["| trader | role | model |", "|---|---|---|"]
        lines += [f"| {t['trader_id']} | {t['role']} | `{t['model_id']}` |" for t in report["watched"]]
        lines.append("")
    else:
        lines += ["No sandbox, production or live trader to watch.", ""]
    if report["findings"]:
        lines += ["| level | check | subject | message |", "|---|---|---|---|"]
        lines += [f"| {f['level']} | {f['check']} | {f['subject']} | {_cell(f['message'])} |" for f in report["findings"]]
        lines.append("")
    return "\n".join(lines)


def tournament_headline(report: dict[str, Any]) -> str:
    """One line: the king and its streak after the run, and what the run did."""
    status = report["status"]
    king = f"king {status['king']} (streak {status['streak']} of {status['rules']['promotion_streak']})" \
        if status["king"] else "no king yet"
    return (f"{king}; admitted {len(report['admitted'])}, played {len(report['played'])} match"
            f"{'' if len(report['played']) == 1 else 'es'}, {status['waiting']} waiting")


def tournament_markdown(report: dict[str, Any]) -> str:
    """The tournament run's result: headline, the arena's counts, each match played with its note."""
    status = report["status"]
    lines = [f"# Cappuccino tournament, arena {report['arena']}", "", f"**{tournament_headline(report)}**", "",
             f"{status['matches_played']} matches played in all; {status['eliminated']} eliminated, "
             f"{status['promoted']} promoted" + (f" ({', '.join(f'`{m}`' for m in status['promoted_models'])})"
                                                  if status["promoted_models"] else "") + ".", ""]
    if report["repaired_mirror"]:
        lines += [f"Redid the MLflow mirror of {report['repaired_mirror']} match(es) an earlier run left undone.", ""]
    if report["played"]:
        lines += ["Matches played by this run (vN: version N of the registered model):", "",
                  "| match | king | score | challenger | score | outcome | streak | note |", "|---|---|---|---|---|---|---|---|"]
        for m in report["played"]:
            lines.append(f"| {m['match']} | {_short(m['king'])} | {_score(m['king_score'])} | {_short(m['challenger'])} | "
                         f"{_score(m['challenger_score'])} | {m['outcome']} | {m['streak']} | {_cell(_note(m))} |")
        lines.append("")
    else:
        lines += ["No match was pending.", ""]
    return "\n".join(lines)


def _note(match: dict[str, Any]) -> str:
    if match["promoted"]:
        return f"promoted {match['promoted']}"
    if match["rejected"]:
        edge = match.get("edge_test") or {}
        return f"edge test refused {match['rejected']}: " + "; ".join(edge.get("reasons") or [])
    return f"forfeit: {match['forfeit']}" if match["forfeit"] else ""


def _short(model: str) -> str:
    """``models:/name/12`` as ``v12`` (the table is narrow in the UI); other ids as they are."""
    return "v" + model.rsplit("/", 1)[1] if model.startswith("models:/") and model.rsplit("/", 1)[1].isdigit() else f"`{model}`"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _minute(iso: str) -> str:
    return str(iso)[:16].replace("T", " ")
