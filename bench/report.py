"""
The tables of BENCHMARKS.md from a results file of bench/run.py:

    python bench/report.py [bench/results/latest.json]

Prints Markdown: one table per section that the run measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _latency(r: dict) -> str:
    return f"{_n(r['p50_ms'], 2)} / {_n(r['p99_ms'], 2)}"


def versusPeer(results: dict, runtimes: list[str]) -> list[str]:
    lines = ["| endpoint | runtime | presenced req/s | mod_webpresence req/s | ratio | presenced p50 / p99 ms "
             "| CPU s per 10k: presenced / mod_webpresence | CPU ratio |", "|---|---|---:|---:|---:|---|---|---:|"]
    for mode in ("public", "subscribers_only"):
        for kind, row in results.get(mode, {}).items():
            peer = row["mod_webpresence"]
            for name in runtimes:
                r, ratio = row[f"presenced_{name}"], row["ratios"][name]
                lines.append(f"| {mode.replace('_', '-')} {kind} | {name} | {_n(r['requests_per_second'])} "
                             f"| {_n(peer['requests_per_second'])} | **{ratio['requests']:.2f}** | {_latency(r)} "
                             f"| {r['cpu_seconds_per_10k']:.3f} / {peer['cpu_seconds_per_10k']:.3f} "
                             f"| **{ratio['cpu']:.2f}** |")
    return lines


def ceilings(results: dict, runtimes: list[str]) -> list[str]:
    c = results["ceilings"]
    lines = ["| server | req/s | p50 / p99 ms | CPU s per 10k |", "|---|---:|---|---:|"]
    for name, r in c.items():
        if not name.startswith("presenced_over"):
            lines.append(f"| {name} | {_n(r['requests_per_second'])} | {_latency(r)} | {r['cpu_seconds_per_10k']:.3f} |")
    lines.append("")
    lines.append("| runtime | presenced image / bare twisted.web | presenced image / nginx |")
    lines.append("|---|---:|---:|")
    for name in runtimes:
        lines.append(f"| {name} | {c['presenced_over_bare_twisted_web'][name]['requests']:.2f} "
                     f"| {c['presenced_over_nginx'][name]['requests']:.2f} |")
    return lines


def ratioTable(section: dict, title: str) -> list[str]:
    lines = [f"| runtime | {title} | req/s | p50 / p99 ms | CPU s per 10k | ratio req/s | ratio CPU |",
             "|---|---|---:|---|---:|---:|---:|"]
    for name, row in section.items():
        ratios = row["ratios"]
        for kind, r in row.items():
            if kind == "ratios":
                continue
            ratio = ratios.get(kind) or ratios.get(f"{kind}_over_image")
            shown = ("", "") if ratio is None else (f"{ratio['requests']:.2f}", f"{ratio['cpu']:.2f}")
            lines.append(f"| {name} | {kind} | {_n(r['requests_per_second'])} | {_latency(r)} "
                         f"| {r['cpu_seconds_per_10k']:.3f} | {shown[0]} | {shown[1]} |")
    return lines


def warmUp(results: dict) -> list[str]:
    lines = ["| runtime | started in | steady req/s | first second / steady | 90% of steady after | requests by then |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, w in results["warm_up"].items():
        lines.append(f"| {name} | {results['start_seconds'][name]:.1f} s | {_n(w['steady_requests_per_second'])} "
                     f"| {w['first_second_over_steady']:.2f} | {w['seconds_to_90_percent']} s "
                     f"| {_n(w['requests_to_90_percent'])} |")
    return lines


def scale(results: dict, runtimes: list[str]) -> list[str]:
    s = results["scale"]
    lines = ["| measure | " + " | ".join(runtimes) + " |", "|---|" + "---:|" * len(runtimes)]

    def row(label: str, values) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("ingestion, stanzas/s, store off", [_n(s["ingest"][n]["stanzas_per_second"]) for n in runtimes])
    row("ingestion, stanzas/s, store on", [_n(s["ingest_with_store"][n]["stanzas_per_second"]) for n in runtimes])
    row("store on / off", [f"{s['ingest_store_over_off'][n]:.2f}" for n in runtimes])
    row("the store's thread then writing the offline users",
        [f"{s['ingest_with_store'][n]['stored_users']:,} in {s['ingest_with_store'][n]['store_write_seconds']:.3f} s"
         for n in runtimes])
    first = runtimes[0]
    for layer in s["ingest_layers"][first]:
        if layer != "stanzas":
            row(f"µs per stanza, {layer} (first pass / best)",
                [f"{s['ingest_layers'][n][layer]['first_us_per_stanza']:.1f} / "
                 f"{s['ingest_layers'][n][layer]['best_us_per_stanza']:.1f}" for n in runtimes])
    for users in s["memory"][first]:
        row(f"RSS per tracked online user, {int(users):,} users",
            [f"{s['memory'][n][users]['bytes_per_user']:,.0f} B" for n in runtimes])
    sizes = sorted({int(key.rsplit("_", 1)[1]) for key in s["http_by_users"]})
    for users in sizes:
        row(f"image req/s with {users:,} users tracked",
            [_n(s["http_by_users"][f"{n}_{users}"]["requests_per_second"]) for n in runtimes])
    row("large / small", [f"{s['http_large_over_small'][n]:.2f}" for n in runtimes])
    return lines


def streams(results: dict) -> list[str]:
    lines = ["| measure | " + " | ".join(results["streams"]) + " |", "|---|" + "---:|" * len(results["streams"])]
    rows = {
        "streams open at once": lambda r: f"{r['streams']:,}",
        "seconds to open them": lambda r: f"{r['seconds_to_open']}",
        "RSS per open stream": lambda r: f"{r['rss_bytes_per_stream']:,} B",
        "streams told of one change": lambda r: f"{r['fanout']:,}",
        "change → event, p50 / p99 / max": lambda r: "{p50} / {p99} / {max} ms".format(**r["fanout_latency_ms"]),
        "image req/s, streams open": lambda r: _n(r["image_rps_with_streams"]),
        "image req/s, no stream open": lambda r: _n(r["image_rps_without_streams"]),
        "open / none": lambda r: f"{r['image_ratio']:.2f}",
    }
    for label, figure in rows.items():
        lines.append(f"| {label} | " + " | ".join(figure(r) for r in results["streams"].values()) + " |")
    return lines


def main(path: Path) -> None:
    results = json.loads(path.read_text())
    runtimes = list(results["machine"]["interpreters"])
    sections = [
        ("public", "Against mod_webpresence", lambda: versusPeer(results, runtimes)),
        ("ceilings", "Ceilings", lambda: ceilings(results, runtimes)),
        ("web_api", "Web API", lambda: ratioTable(results["web_api"], "answer")),
        ("observing", "Access log and metrics", lambda: ratioTable(results["observing"], "kept")),
        ("warm_up", "Warm-up", lambda: warmUp(results)),
        ("scale", "Scale", lambda: scale(results, runtimes)),
        ("streams", "Event streams", lambda: streams(results)),
    ]
    for key, title, table in sections:
        if key in results:
            print(f"### {title}\n")
            print("\n".join(table()))
            print()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "latest.json")
