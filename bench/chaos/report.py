"""
The scenarios' figures as a table for the terminal and as RELIABILITY.md,
with the machine and the command that measured them.
"""

from __future__ import annotations

import inspect
import re
import subprocess
from typing import Iterable

from bench.chaos.harness import Figure, Figures


def show(value) -> str:
    """
    A figure's value in one line.
    """
    if isinstance(value, dict):
        return ", ".join(f"{k}: {show(v)}" for k, v in value.items()) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value) or "none"
    return str(value)


def verdict(figure: Figure) -> str:
    if figure.met is None:
        return ""
    return f"{'met' if figure.met else 'NOT MET'} ({figure.criterion})"


def passed(results: Iterable[Figures]) -> bool:
    return not any(figures.failed for figures in results)


def table(results: list[Figures]) -> str:
    """
    Every scenario's figures, one line each, the criteria and whether they
    are met.
    """
    lines = []
    for figures in results:
        size = "full" if figures.full else "short"
        lines.append(f"\n{figures.number}. {figures.title} on {figures.interpreter} ({size}, "
                     f"{figures.seconds:.0f} s)")
        width = max(len(f.name) for f in figures.figures)
        for f in figures.figures:
            lines.append(f"   {f.name:<{width}}  {show(f.value)}" + (f"   [{verdict(f)}]" if f.met is not None else ""))
        for note in figures.notes:
            lines.append(f"   note: {note}")
    lines.append("\nevery criterion met" if passed(results) else "\nSOME CRITERIA NOT MET")
    return "\n".join(lines)


def prosodyVersion() -> str:
    found = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "prosody"], capture_output=True, text=True)
    return f"Prosody {found.stdout.strip()}" if found.returncode == 0 else "Prosody (version unknown)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def described(docstring: str) -> str:
    """
    A scenario module's docstring as Markdown: its epytext C{code} as code.
    """
    return re.sub(r"[CL]\{([^}]*)\}", r"`\1`", inspect.cleandoc(docstring))


def earlier(text: str, numbers: set[int]) -> dict:
    """
    From an earlier RELIABILITY.md, what a report of other scenarios keeps:
    the sections of the scenarios not in C{numbers}, by number, where each
    was measured (the command and date, as a line of the header) and
    whether that run met every criterion.
    """
    field = lambda name: (re.search(rf"^- {name}: (.*)$", text, re.MULTILINE) or [None, ""])[1]  # noqa: E731
    origins = {}
    for found in re.finditer(r"^- scenarios ([\d, ]+): from (.*)$", text, re.MULTILINE):
        origins.update({int(n): found.group(2) for n in found.group(1).split(", ")})
    sections, measured = {}, {}
    for found in re.finditer(r"^## (\d+)\. .*?(?=^## |\Z)", text, re.MULTILINE | re.DOTALL):
        number = int(found.group(1))
        if number not in numbers:
            sections[number] = found.group(0).rstrip("\n") + "\n"
            measured[number] = origins.get(number, f"{field('command')}, {field('date')}")
    return {"sections": sections, "measured": measured, "met": field("result") == "every criterion met"}


def criteria(figures: list[Figure], interpreters: list[str]) -> str:
    """
    The criterion of one figure as each interpreter's run judged it: one,
    or each interpreter's where they differ.
    """
    judged = [(interpreter, f.criterion) for interpreter, f in zip(interpreters, figures) if f.met is not None]
    if len({criterion for _, criterion in judged}) <= 1:
        return judged[0][1] if judged else ""
    return "; ".join(f"{interpreter}: {criterion}" for interpreter, criterion in judged)


def markdown(results: list[Figures], machine: dict, command: str, date: str, descriptions: dict[int, str],
             kept: dict | None = None) -> str:
    """
    RELIABILITY.md: what was run, where, and every figure, each scenario
    with its C{descriptions}; with the sections C{kept} from an earlier
    run (see L{earlier}) of the scenarios not run.
    """
    sections = (kept or {}).get("sections", {})
    met = passed(results) and (not sections or kept["met"])
    origins: dict[str, list[int]] = {}
    for number in sorted(sections):
        origins.setdefault(kept["measured"][number], []).append(number)
    before = [f"- scenarios {', '.join(map(str, numbers))}: from {origin}" for origin, numbers in origins.items()]
    out = [
        "# presenced's reliability",
        "",
        "What `scripts/chaos` measured: the real `twistd -n presenced` against a real",
        "Prosody on loopback, under hostile input and faults. Every loop is bounded in",
        "count and time; see `bench/chaos/` for what each scenario does and",
        "`tests/integration/test_chaos.py` for the short version the test suite runs.",
        "",
        f"- command: `{command}`",
        f"- date: {date}",
        *before,
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_kib'] / 1024 / 1024:.1f} GiB RAM,"
        f" Linux {machine['kernel']}",
        *(f"- {name}: {version}" for name, version in machine["interpreters"].items()),
        f"- {prosodyVersion()}",
        f"- result: {'every criterion met' if met else '**some criteria not met**'}",
        "",
    ]
    for number in sorted({f.number for f in results} | set(sections)):
        if number in sections:
            out += [sections[number]]
            continue
        runs = [f for f in results if f.number == number]
        out += [f"## {number}. {runs[0].title}", ""]
        if number in descriptions:
            out += [described(descriptions[number]), ""]
        interpreters = [f.interpreter for f in runs]
        out.append("| figure | " + " | ".join(interpreters) + " | criterion |")
        out.append("|---|" + "---|" * len(runs) + "---|")
        for row, figure in enumerate(runs[0].figures):
            cells = []
            for figures in runs:
                f = figures.figures[row] if row < len(figures.figures) else None
                cells.append("" if f is None else _cell(show(f.value)) + (" ✗" if f.met is False else ""))
            criterion = criteria([figures.figures[row] for figures in runs if row < len(figures.figures)], interpreters)
            out.append(f"| {_cell(figure.name)} | " + " | ".join(cells) + f" | {_cell(criterion)} |")
        out.append("")
        out.append("Seconds: " + ", ".join(f"{f.interpreter} {f.seconds:.0f}" for f in runs) + ".")
        notes = [f"{f.interpreter}: {note}" for f in runs for note in f.notes]
        if notes:
            out += [""] + [f"- {_cell(note)}" for note in notes]
        out.append("")
    return "\n".join(out)

