"""Render the README's result tables from ``benchmarks/results/*.json``.

    python benchmarks/render_readme.py           # rewrite every block in README.md
    python benchmarks/render_readme.py --check   # exit 1 when a block differs from its results file

A block is the text between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; NAME is the
results file (``benchmarks/results/NAME.json``), or several joined by ``+`` (one table from several
files). The renderer is chosen by NAME's prefix (``RENDERERS``). Each block ends with how its
numbers were made (command, commit, backend, machine, date). ``tests/test_readme_results.py`` runs
the check: a README number that no results file backs fails ``make test``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULTS = REPO / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w+.-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"README block {name!r}: {path.relative_to(REPO)} is missing; run make bench-full")
    return json.loads(path.read_text(encoding="utf-8"))


def provenance(*docs: dict) -> str:
    parts = []
    for d in docs:
        m = d.get("machine", {})
        dirty = "+local changes" if d.get("git_dirty") else ""
        parts.append(f"`{d['command']}`: fmal {d['fmal_version']}, commit {d['git_commit'][:10]}{dirty}, "
                     f"backend {d['backend']}, {m.get('cores', '?')} cores at {m.get('fp32_peak_gflops', '?')} "
                     f"GFLOP/s fp32 (measured), {d['date'][:10]}" + (f", {_dur(d['seconds'])}" if d.get("seconds") else ""))
    return "<sub>" + "; ".join(parts) + "</sub>"


def _dur(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _pm(ci: dict, scale: float = 1.0, digits: int = 1) -> str:
    return f"{scale * ci['mean']:.{digits}f} [{scale * ci['lo']:.{digits}f}, {scale * ci['hi']:.{digits}f}]"


def _signed(ci: dict, digits: int = 1) -> str:
    return f"{ci['mean']:+.{digits}f} [{ci['lo']:+.{digits}f}, {ci['hi']:+.{digits}f}]"


def _labels(v: object, max_budget: int) -> str:
    return f"> {max_budget}" if v is None else str(v)


def render_simulate(name: str) -> str:
    d = load(name)
    n = d["numbers"]
    mb = n["max_budget"]
    out = ["| strategy | AULC accuracy | vs random (paired) | macro-F1 AULC | labels to 90% of full | labels to 95% of full |",
           "|---|---|---|---:|---|---|"]
    given = d["settings"].get("strategies", [])
    order = ["random"] + [s for s in given if s != "random"] + sorted(set(n["strategies"]) - set(given) - {"random"})
    strategies = {s: n["strategies"][s] for s in order if s in n["strategies"]}
    for s, r in strategies.items():
        vs = "-"
        if r["vs_random"] and s != "random":
            vs = _signed(r["vs_random"])
            if r["vs_random"]["lo"] > 0:
                vs = f"**{vs}** above"
            elif r["vs_random"]["hi"] < 0:
                vs = f"**{vs}** below"
        out.append(f"| {s} | {_pm(r['aulc_accuracy'])} | {vs} | {r['aulc_macro_f1']:.1f} | "
                   f"{_labels(r['labels_to_90'], mb)} | {_labels(r['labels_to_95'], mb)} |")
    at = []
    for s, r in strategies.items():
        last = r["accuracy_per_step"][-1]
        cell = f"{s} {100 * last['mean']:.1f}%"
        if r["vs_random_per_step"] and s != "random":
            cell += f" ({_signed(r['vs_random_per_step'][-1])})"
        at.append(cell)
    fd = n["full_data"]
    out += ["", f"All {n['n_train']:,} train labels: {100 * fd['accuracy']:.1f}% accuracy (macro-F1 {100 * fd['macro_f1']:.1f}); "
                f"{n['n_test']:,} test rows; {n['seeds']} seeds; intervals: 95% t-intervals over seeds, in points. "
                f"At {mb} labels: " + ", ".join(at) + f". Verdict: *{n['verdict']}*.", "", provenance(d)]
    return "\n".join(out)


def render_simulate_multilabel(name: str) -> str:
    """benchmarks/simulate_multilabel.py: AULC of micro- and macro-F1, each paired against random."""
    d = load(name)
    n = d["numbers"]
    mb = n["max_budget"]

    def vs(ci: dict | None) -> str:
        if not ci:
            return "-"
        cell = _signed(ci)
        return f"**{cell}** above" if ci["lo"] > 0 else f"**{cell}** below" if ci["hi"] < 0 else cell

    out = ["| strategy | AULC micro-F1 | vs random (paired) | AULC macro-F1 | vs random (paired) | "
           f"at {mb} labels: micro-F1 / macro-F1 / subset acc. |", "|---|---|---|---|---|---|"]
    given = d["settings"].get("strategies", [])
    order = ["random"] + [s for s in given if s != "random"] + sorted(set(n["strategies"]) - set(given) - {"random"})
    for s in [s for s in order if s in n["strategies"]]:
        r = n["strategies"][s]
        v = r.get("vs_random") or {}
        at = r["at_max"]
        out.append(f"| {s} | {_pm(r['aulc_micro_f1'])} | {vs(v.get('aulc_micro_f1'))} | {_pm(r['aulc_macro_f1'])} | "
                   f"{vs(v.get('aulc_macro_f1'))} | {at['micro_f1']['mean']:.1f} / {at['macro_f1']['mean']:.1f} / "
                   f"{at['subset_accuracy']['mean']:.1f} |")
    fd = n["full_data"]
    counts = ", ".join(f"{c} {k:,}" for c, k in n["class_counts_train"].items())
    out += ["", f"All {n['n_train']:,} train rows ({n['mean_classes_per_row_train']:.2f} classes a row; {counts}): "
                f"micro-F1 {100 * fd['micro_f1']:.1f}, macro-F1 {100 * fd['macro_f1']:.1f}, subset accuracy "
                f"{100 * fd['subset_accuracy']:.1f}; {n['n_test']:,} test rows; {n['seeds']} seeds; intervals: 95% "
                f"t-intervals over seeds, in points. Verdict (micro-F1): *{n['verdict']}*.", "", provenance(d)]
    return "\n".join(out)


def render_seed_quality(name: str) -> str:
    d = load(name)
    n = d["numbers"]
    budgets = d["settings"]["budgets"]
    order = {"fmal": 0, "peer": 1, "random": 2}
    out = ["| dataset | method | " + " | ".join(map(str, budgets)) + " |", "|---|---|" + "---:|" * len(budgets)]
    notes = []
    datasets = [ds for ds in d["settings"].get("datasets", []) if ds in n] + sorted(set(n) - set(d["settings"].get("datasets", [])))
    for ds in datasets:
        dd = n[ds]
        methods = sorted(dd["methods"], key=lambda m: order["random" if m == "random" else ("peer" if "." in m else "fmal")])
        for m in methods:
            label = f"fmal {m}" if "." not in m and m != "random" else m
            out.append(f"| {ds} | {label} | " + " | ".join(
                f"{dd['methods'][m][str(b)]['mean']:.3f} ± {dd['methods'][m][str(b)]['std']:.3f}" for b in budgets) + " |")
        rnd = dd["methods"].get("random")
        parts = []
        for m in methods:
            if m == "random" or not rnd:
                continue
            label = f"fmal {m}" if "." not in m else m
            above, below, below_noise = [], [], []
            for b in budgets:
                x, r = dd["methods"][m][str(b)], rnd[str(b)]
                diff = x["mean"] - r["mean"]
                se = (x["std"] ** 2 / x["n"] + r["std"] ** 2 / r["n"]) ** 0.5
                cell = f"{b} ({diff:+.3f})"
                (above if diff > 2 * se else below if diff < -2 * se else below_noise if diff < 0 else []).append(cell)
            parts.append(f"{label} is above random at {', '.join(above) or 'no budget'}, below at {', '.join(below) or 'no budget'}"
                         + (f", and below within the noise at {', '.join(below_noise)}" if below_noise else ""))
        notes.append(f"**{ds}** (majority class: {dd['majority_share_test']:.3f} of the test rows): " + "; ".join(parts))
    out += ["", f"Mean ± standard deviation over {d['settings']['seeds']} seeds. Against random, counting a gap beyond two "
                "standard errors of the difference: " + ". ".join(notes) + ".", "", provenance(d)]
    return "\n".join(out)


def render_embed_backends(name: str) -> str:
    # the sizes that have a results file (make bench writes the small one only; make bench-full both)
    docs = [load(n) for n in name.split("+") if (RESULTS / f"{n}.json").is_file()] or [load(name.split("+")[0])]
    sizes = [(next(iter(d["numbers"])), d) for d in docs]
    what = {"torch": "sentence-transformers as it is", "onnx": "the model exported to ONNX with fused layers, onnxruntime",
            "onnx-int8": "the same with int8 weight matrices"}
    default = docs[0]["settings"].get("default_backend")
    head = " / ".join(f"{int(n):,}" for n, _ in sizes)
    out = [f"| `--backend` | what runs | mean / min cosine to fp32 ({int(sizes[-1][0]):,} texts) | texts/s vs raw ({head} texts) |",
           "|---|---|---|---|"]
    for b in ("torch", "onnx", "onnx-int8"):
        last = sizes[-1][1]["numbers"][sizes[-1][0]]["runtimes"][b]
        ratios = " / ".join(f"{d['numbers'][n]['runtimes'][b]['ratio']:.2f}x" for n, d in sizes)
        label = f"`{b}` (**default**)" if b == default else f"`{b}`"
        out.append(f"| {label} | {what[b]} | {last['mean_cos']:.4f} / {last['min_cos']:.4f} | {ratios} |")
    lines = []
    for n, d in sizes:
        r = d["numbers"][n]
        rt = r["runtimes"]
        lines.append(f"{int(n):,} texts ({r['tokens_per_text']} tokens each on average): raw {rt['raw']['texts_s']:.1f} texts/s, "
                     f"`onnx` {rt['onnx']['texts_s']:.1f}, `onnx-int8` {rt['onnx-int8']['texts_s']:.1f}; medians of the peaks measured between slices "
                     f"{r['fp32_peak_gflops']} GFLOP/s fp32 and {r['int8_peak_gops']} Gop/s int8, a bound of "
                     f"{r['bound_fp32_texts_s']:.0f} texts/s at the fp32 peak and {r['bound_int8_texts_s']:.0f} at the int8 one; "
                     f"raw reached {100 * rt['raw']['of_bound']:.0f}% of the fp32 bound, `onnx` {100 * rt['onnx']['of_bound']:.0f}%, "
                     f"`onnx-int8` {100 * rt['onnx-int8']['of_bound']:.0f}% of the int8 bound; tokenisation alone "
                     f"{100 * r['tokenisation_share_of_int8']:.0f}% of the `onnx-int8` encode time")
    caveats = []
    for n, d in sizes:
        rt = d["numbers"][n]["runtimes"]
        noise = abs(rt["torch"]["ratio"] - 1.0)
        over = [k for k, v in rt.items() if v["of_bound"] > 1.0]
        if noise > 0.05 or over:
            caveats.append(f"at {int(n):,} texts `torch` and raw (the same runtime) differ by {100 * noise:.0f}%"
                           + (f" and {', '.join(f'`{k}`' for k in over)} ran above 100% of a bound measured between slices"
                              if over else ""))
    if caveats:
        lines.append("**This run is not a reliable speed measurement**: " + "; ".join(caveats)
                     + ": other jobs were taking the cores (see the fp32 peak below); rerun on a quiet machine")
    out += ["", ". ".join(lines) + ".", "", provenance(*docs)]
    return "\n".join(out)


def render_embed_accuracy(name: str) -> str:
    d = load(name)
    n = d["numbers"]
    out = ["| dataset | pools | backend | mean / min cosine to torch | LinearProbe (C by CV) | LinearProbe (C=10) | LogisticRegression (C=10) | bar |",
           "|---|---|---|---|---|---|---|---|"]
    for ds, layouts in n.items():
        for layout, r in layouts.items():
            ref = r["backends"]["torch"]
            for b, x in r["backends"].items():
                if b == "torch":
                    cells = [f"{ref['linear_probe']:.4f}", f"{ref['linear_probe_c10']:.4f}", f"{ref['logreg_c10']:.4f}", "reference"]
                else:
                    cells = [f"{x['linear_probe']:.4f} ({x['delta_points_linear_probe']:+.2f})",
                             f"{x['linear_probe_c10']:.4f} ({x['delta_points_linear_probe_c10']:+.2f})",
                             f"{x['logreg_c10']:.4f} ({x['delta_points_logreg_c10']:+.2f})",
                             "met" if x["meets_bar"] else "**missed**"]
                where = "train, test apart" if layout == "splits" else "whole file"
                out.append(f"| {ds} | {where} | `{b}` | {x['mean_cos']:.4f} / {x['min_cos']:.4f} | " + " | ".join(cells) + " |")
    rows = ", ".join(f"{ds} {next(iter(v.values()))['one_test_row_points']:.3f}" for ds, v in n.items())
    out += ["", f"Test accuracy with all train labels; in brackets, points against the torch pool of the same layout. "
                f"One test row is worth {rows} points. The bar: mean cosine >= "
                f"{d['settings']['bar']['mean_cos_min']} and the LinearProbe (C by CV) within "
                f"{d['settings']['bar']['linear_probe_points_max']} points.", "", provenance(d)]
    return "\n".join(out)


def render_seed_two_level(name: str) -> str:
    d = load(name)
    n = d["numbers"]
    s = d["settings"]
    return "\n".join([f"Two-level minus exact probe accuracy: {n['gap_mean']:+.4f} on average over {n['n_cells']} cells "
                      f"({len(s['datasets'])} datasets x {len(s['budgets'])} budgets x {'/'.join(s['strategies'])}, "
                      f"{s['seeds']} seeds each), between {n['gap_min']:+.3f} and {n['gap_max']:+.3f}.", "", provenance(d)])


def render_embed_throughput(name: str) -> str:
    d = load(name)
    runs = d["numbers"]["runs"]
    if "ratio" in d["numbers"]:  # --processes: each side a process of its own, seconds end to end
        n = d["numbers"]
        cells = [f"{k} {v['seconds']:.1f} s (runs: {', '.join(f'{x:.1f}' for x in v['all'])})" for k, v in runs.items()]
        return "\n".join([f"{n['n_texts']:,} texts, end to end, best of {d['settings'].get('repeats', 1)} interleaved runs: "
                          + "; ".join(cells) + f": **fmal embed / raw = {n['ratio']:.2f}x**, mean / min cosine to the raw "
                          f"vectors {n['mean_cosine']:.4f} / {n['min_cosine']:.4f}.", "", provenance(d)])
    cells = [f"{k}: {v['texts_s']:.0f} texts/s ({v['ratio']:.2f}x)" for k, v in runs.items()]
    return "\n".join([f"{d['numbers']['n_texts']:,} texts, end to end, best of {d['settings']['repeats']} interleaved runs: "
                      + "; ".join(cells) + ".", "", provenance(d)])


def render_scale(name: str) -> str:
    d = load(name)
    out = ["| pool | step | seconds | peak RSS | notes |", "|---:|---|---:|---:|---|"]
    for r in d["numbers"]["rows"]:
        if "seconds" not in r:
            continue
        notes = []
        if "factory" in r:
            params = ", ".join(f"{k} {v}" for k, v in (r.get("params") or {}).items())
            notes.append(f"{r['factory']}, recall@10 {r['recall@10']}" + (f" at {params}" if params else "") + f", {r['disk_mib']:.0f} MiB on disk")
        if "gold_clusters_hit" in r:
            notes.append(f"{r['gold_clusters_hit']} of 1,000 gold clusters hit (100 uniform random picks: {r['gold_clusters_random']:.0f})")
        n = r["n"]
        size = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"
        out.append(f"| {size} | {r['step']} | {r['seconds']:.1f} | {r['peak_rss_gib']:.2f} GiB | {'; '.join(notes)} |")
    return "\n".join(out + ["", provenance(d)])


def render_interactive(name: str) -> str:
    """benchmarks/interactive.py: one table per results file (``interactive+interactive-1m``)."""
    out = []
    for part in name.split("+"):
        d = load(part)
        base = d["settings"].get("baseline")
        head = "| pool | step | seconds | CPU seconds | share of fp32 bound | notes |"
        out += [head, "|---:|---|---:|---:|---:|---|"]
        for r in d["numbers"]["rows"]:
            n = r["n"]
            size = "" if not n else f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"
            if "seconds" not in r:
                out.append(f"| {size} | {r['step']} | - | - | - | {r.get('error', '')} |")
                continue
            notes = []
            if "vs_floor" in r:
                notes.append(f"{r['vs_floor']}x the Typer floor")
            if "recall_at_10" in r:
                notes.append(f"recall@10 {r['recall_at_10']}")
            if "gold_clusters_hit" in r:
                notes.append(f"{r['gold_clusters_hit']} of 1,000 gold clusters hit")
            if "fmal_speedup" in r:
                notes.append(f"fmal {r['fmal_speedup']}x faster")
            if "speed_vs_all" in r:
                notes.append(f"{r['speed_vs_all']}x the speed of all")
            if "vs_baseline" in r:
                notes.append(f"{r['vs_baseline']}x the baseline's speed, {r['vs_baseline_cpu']}x its CPU")
            if "first_call_seconds" in r:
                notes.append(f"the process's first call (imports) {r['first_call_seconds']:.2f} s")
            share = f"{100 * r['bound_share']:.1f}%" if "bound_share" in r else ""
            cpu = f"{r['cpu_seconds']:.2f}" if "cpu_seconds" in r else "-"
            out.append(f"| {size} | {r['step']} | {r['seconds']:.2f} | {cpu} | {share} | {'; '.join(notes)} |")
        out += ["", (f"Baseline: commit {base[:10]}. " if base else "") + provenance(d), ""]
    return "\n".join(out).rstrip("\n")


def render_audit_precision(name: str) -> str:
    """benchmarks/audit_precision.py: how far the audit's flags can be trusted, per number of labels."""
    d = load(name)
    out = ["| labels | flagged | flipped | precision | recall | probe agreement | said unreliable |", "|---|---|---|---|---|---|---|"]
    for r in d["numbers"]["summary"]:
        prec = "-" if r["precision"] is None else f"{r['precision']:.2f}"
        out.append(f"| {r['labels']} | {r['flagged_per_run']:.1f} | {r['flipped_per_run']:.0f} | {prec} | {r['recall']:.2f} | "
                   f"{r['probe_agreement']:.2f} | {r['said_unreliable']} of {r['runs']} |")
    return "\n".join(out + ["", provenance(d)])


def render_sync_loop(name: str) -> str:
    """benchmarks/sync_loop.py: the first and last passes' event lines, then the wall time per pass."""
    d = load(name)
    passes = d["numbers"]["passes"]
    answered = [p["events"] for p in passes if p.get("events")]
    lines = answered[0] + ["...", *answered[-1]] if len(answered) > 1 else [e for ev in answered for e in ev]
    out = ["```text", *lines, "```", "", "| sync pass | pulled | new round | pushed | wall time | annotating through the API |",
           "|---|---:|---|---:|---:|---:|"]
    for p in passes:
        if p["pass"] == 0:
            out.append(f"| project + config + seed round pushed | 0 | - | {p['pushed']} | {p['sync_seconds']:.1f} s | - |")
            continue
        new = ", ".join(map(str, p["rounds_run"])) or "-"
        out.append(f"| round {p['pass']} answered ({p['annotated']} tasks) | {p['pulled']} | {new} | {p['pushed']} | "
                   f"{p['sync_seconds']:.1f} s | {p['annotate_api_seconds']:.0f} s |")
    s = d["settings"]
    return "\n".join(out + ["", f"{d['numbers']['pool_rows']:,} pool rows, {s['budget']}-row rounds, Label Studio "
                                f"{s['label_studio']}. " + provenance(d)])


def render_run_all(name: str) -> str:
    out = []
    for n in name.split("+"):
        if not (RESULTS / f"{n}.json").is_file():
            out.append(_steps_summary(n))
            continue
        d = load(n)
        steps = "; ".join(f"`{s['command']}` {_dur(s['seconds'])}" for s in d["numbers"]["steps"])
        m = d.get("machine", {})
        out.append(f"`{d['numbers']['make']}` took {_dur(d['seconds'])} on {m.get('cores', '?')} cores "
                   f"({m.get('fp32_peak_gflops', '?')} GFLOP/s fp32 measured, {d['date'][:10]}; pools already embedded: "
                   f"{'yes' if d['settings'].get('pools_cached') else 'no'}): {steps}.")
    return "\n\n".join(out)


#: the results files each make target writes (for when it has not been run as one command)
TARGET_FILES = {
    "run_all_quick": ["simulate_trec6", "simulate_sms_spam", "seed_quality_probcover", "embed_backends_2000"],
    "run_all_full": ["simulate_trec6", "simulate_sms_spam", "simulate_rotten_tomatoes", "seed_quality_probcover",
                     "simulate_multilabel", "embed_accuracy", "embed_backends_2000", "embed_backends_20000",
                     "seed_two_level", "scale", "embed_throughput_processes", "ingest", "query_quality", "interactive",
                     "interactive-1m", "audit_precision", "sync_loop"],
}


def _steps_summary(name: str) -> str:
    target = "make bench" if name.endswith("quick") else "make bench-full"
    have = [(f, load(f)) for f in TARGET_FILES[name] if (RESULTS / f"{f}.json").is_file()]
    timed = [(f, d["seconds"]) for f, d in have if d.get("seconds")]
    if not timed:
        return f"`{target}`: not run yet."
    total = sum(t for _, t in timed)
    return (f"`{target}` has not been run as one command yet; its steps, run separately, record "
            + ", ".join(f"{f} {_dur(t)}" for f, t in timed) + f": {_dur(total)} in all"
            + (f" (no record yet for {', '.join(sorted(set(TARGET_FILES[name]) - {f for f, _ in timed}))})"
               if len(timed) < len(TARGET_FILES[name]) else "") + ".")


def render_query_quality(name: str) -> str:
    """The default loop against random and against the adaptive variant, per dataset (AULC points)."""
    d = load(name)
    n, st = d["numbers"], d["settings"]
    default, ref, mb = st["default"], st["reference"], st["max_labels"]

    def diff(c: dict | None) -> str:
        if not c or c.get("lo") is None:
            return "-"
        cell = _signed(c, 2)
        return f"**{cell}**" if c["lo"] > 0 or c["hi"] < 0 else cell

    def reach(r: dict) -> str:
        m = r["labels_to_random_at_max"]["median"]
        return (f"> {mb}" if m is None else f"{m:.0f}") + f" ({r['labels_to_random_at_max']['reached']})"

    also = "auto+auto:then=badge"  # the default before dropquery, when the run has it
    has_also = any(also in n["datasets"][ds]["strategies"] for ds in n["datasets"])
    out = [f"| dataset | random | {default} (default) | {ref} | default vs random | default vs {ref} | "
           + (f"default vs {also} | " if has_also else "")
           + f"labels to random's {mb}-label accuracy: default / {ref} | the default's random share, first / highest round |",
           "|---|---:|---:|---:|---|---|" + ("---|" if has_also else "") + "---|---|"]
    for ds in [x for x in st["datasets"] if x in n["datasets"]]:
        s = n["datasets"][ds]["strategies"]
        if default not in s:
            continue
        r, a, o = s.get("random"), s.get(ref), s[default]
        share = o["random_share_per_step"]
        out.append(f"| {ds} | {r['aulc']['mean']:.1f} | {o['aulc']['mean']:.1f} | {a['aulc']['mean']:.1f} | "
                   f"{diff(o.get('vs_random'))} | {diff(o.get('vs_' + ref))} | "
                   + (f"{diff(o.get('vs_' + also))} | " if has_also else "")
                   + f"{reach(o)} / {reach(a)} | {share[0]:.2f} / {max(share):.2f} |")
    secs = {k: [n["datasets"][ds]["strategies"][k]["query_seconds_per_round"] for ds in n["datasets"]
                if "query_seconds_per_round" in n["datasets"][ds]["strategies"].get(k, {})] for k in (ref, default)}
    g = n.get("goals", {})
    if g:
        w, m, u = g["worst_vs_random"], g["mean_vs_random"], g["uncertainty_pays"]
        out += ["", f"AULC: mean test accuracy (%) over {st['n_seed']}-{mb} labels, {len(st['seeds'])} seeds; differences are "
                    f"paired per seed, with 95% t-intervals (bold: the interval excludes 0). Goals: worst difference to random "
                    f">= {w['goal']:+.1f}: {w['points']:+.2f} on {w['dataset']} ({'met' if w['met'] else 'not met'}); mean "
                    f">= {m['goal']:+.1f}: {m['points']:+.2f} ({'met' if m['met'] else 'not met'}); no loss beyond seed noise "
                    f"against {ref} where it beats random ({', '.join(u['datasets']) or 'none'}): "
                    + ("met" if u["met"] else f"not met on {', '.join(u['lost_beyond_noise'])}") + "."
                + (f" Query seconds a round (the strategy alone, mean per pool): {ref} {min(secs[ref]):.2f}-{max(secs[ref]):.2f}, "
                   f"{default} {min(secs[default]):.2f}-{max(secs[default]):.2f}." if secs[ref] and secs[default] else "")]
    out += ["", provenance(d)]
    return "\n".join(out)


def render_ingest(name: str) -> str:
    """benchmarks/ingest.py: seconds and peak memory per case, the index step alone with its share
    of the FLOP bound."""
    doc = load(name)
    d = doc["numbers"]
    what = {"baseline_ingest": "baseline: `np.load` + normalise + the same index, written",
            "fmal_ingest": "`fmal embed --embeddings` (auto index; embeddings, rows, index, checksums)",
            "fmal_index": "the index step alone (`fmal.index.build`, auto kind, saved)",
            "fmal_ingest_ivfsq": "`fmal embed --embeddings --index ivfsq`",
            "baseline_append": f"baseline append of {d['append_rows']:,}: `np.load` + concatenate + save, index read + add + write",
            "fmal_append": f"`fmal embed --embeddings new.npy --append` ({d['append_rows']:,} rows)"}
    out = ["| case | seconds | peak RSS | peak anonymous |", "|---|---:|---:|---:|"]
    for k, r in d["results"].items():
        out.append(f"| {what.get(k, k)} | {r['seconds']:.1f} | {r['peak_rss'] / 2**30:.2f} GiB | {r['peak_anon'] / 2**30:.2f} GiB |")
    rt = d["ratios_fmal_over_baseline"]
    notes = [f"{d['rows']:,} x {d['dim']} float32 ({d['file_bytes'] / 2**30:.2f} GiB), uniform random unit vectors"]
    if rt.get("ingest_seconds"):
        notes.append(f"fmal / baseline: ingest {rt['ingest_seconds']:.2f}x the seconds, append {rt['append_seconds']:.2f}x")
    if "fmal_index" in d["results"]:
        r = d["results"]["fmal_index"]
        sec, gf = r["timings"]["seconds"], r["timings"]["gflop"]
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in sec.items())
        notes.append(f"index alone: {r['factory']}, recall@10 {r['recall_at_10']} at {r['search_params']}, {steps}; train + "
                     f"assignment {gf.get('train', 0) + gf.get('add', 0):.0f} GFLOP at the {d['fp32_peak_gflops']:.0f} GFLOP/s "
                     f"fp32 peak measured in the run: {100 * r['bound_share']:.0f}% of the FLOP bound")
    out += ["", "; ".join(notes) + ".", "", provenance(doc)]
    return "\n".join(out)


RENDERERS: dict[str, Callable[[str], str]] = {
    "audit_precision": render_audit_precision,
    "sync_loop": render_sync_loop,
    "ingest": render_ingest,
    "interactive": render_interactive,
    "run_all": render_run_all,
    "simulate_multilabel": render_simulate_multilabel,  # before "simulate_": the first matching prefix wins
    "query_quality": render_query_quality,
    "simulate_": render_simulate,
    "seed_quality": render_seed_quality,
    "embed_backends": render_embed_backends,
    "embed_accuracy": render_embed_accuracy,
    "seed_two_level": render_seed_two_level,
    "embed_throughput": render_embed_throughput,
    "scale": render_scale,
}


def render_block(name: str) -> str:
    for prefix, fn in RENDERERS.items():
        if name.startswith(prefix):
            return fn(name).rstrip("\n") + "\n"
    raise SystemExit(f"README block {name!r}: no renderer (prefixes: {', '.join(RENDERERS)})")


def render(text: str) -> tuple[str, list[str]]:
    """(README with every block re-rendered, names of the blocks that changed)."""
    changed: list[str] = []

    def sub(m: re.Match) -> str:
        body = render_block(m.group("name"))
        if body != m.group("body"):
            changed.append(m.group("name"))
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(sub, text), changed


def blocks(text: str) -> list[str]:
    return [m.group("name") for m in BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    ap.add_argument("--readme", type=Path, default=README)
    a = ap.parse_args(argv)
    text = a.readme.read_text(encoding="utf-8")
    new, changed = render(text)
    if a.check:
        if changed:
            print(f"README blocks out of date with benchmarks/results/: {', '.join(changed)}; "
                  "run python benchmarks/render_readme.py", file=sys.stderr)
            return 1
        print(f"{len(blocks(text))} README blocks match their results files")
        return 0
    if changed:
        a.readme.write_text(new, encoding="utf-8")
    print(f"rendered {len(blocks(text))} README blocks ({len(changed)} changed: {', '.join(changed) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
