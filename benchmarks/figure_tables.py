"""The generated blocks of the docs: each table of README.md and docs/results.md that
``benchmarks/figures.py`` writes whole between ``<!-- figures: NAME() -->`` and ``<!-- /figures -->``,
from the stores (``figure_stores``), formatted as the reports format them."""
from __future__ import annotations

import math

from figure_stores import (ALONE, CLEAN_DEFAULT, CLEAN_DETECT, COLUMNS, CORRECTOR, CORRECTOR_01, CORRECTOR_ALONE, DATASETS, DEFAULT,
                           FAMILIES, INSTANCE, INSTANCE_ROWS, LEARNED_CONFIGS, OVERHEAD, REFERENCE, SMOOTHINGS, STRATEGY,
                           TABLE_ROWS, DETECT, DETECT_EVERY4, DETECT_FIXED, DETECT_META, DETECT_PROP, CONFIDENT, ELR, L2RW,
                           best_grid, best_instance_row, best_row, best_teacher, cl, cl_best, nl, nl_all,
                           nli, picks, pm, row, rs, short_config, sl, span, step, student, t_alpha, teacher, times)

NOISE_HEADERS = {"mnist1d": ("MNIST-1D", "sym. 40 %, 10 clean a class"),
                 "digits": ("digits", "sym. 40 %, 10 clean a class (= sym. 40 %)")}


def noisy_table(dataset: str) -> str:
    """docs/results.md's table of the noisy-label benchmark: last-epoch accuracy of :data:`TABLE_ROWS`,
    the best row of a column in bold, the clean-label rows last."""
    name, small = NOISE_HEADERS[dataset]
    lines = [f"| {name} | sym. 20 % | sym. 40 % | sym. 60 % | sym. 80 % | flip 40 % | {small} |",
             "|---|---|---|---|---|---|---|"]
    best = {s: best_row(dataset, s) for s in COLUMNS}
    for method in TABLE_ROWS:
        cells = [pm(nl(dataset, s, method)) for s in COLUMNS]
        cells = [f"**{c}**" if best[s] == method else c for c, s in zip(cells, COLUMNS)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    clean = (f"{pm(nl(dataset, '', REFERENCE))} / {pm(nl(dataset, '', CLEAN_DETECT))} / "
             f"{pm(nl(dataset, '', CLEAN_DEFAULT))}")
    lines.append("| clean labels: cross-entropy (reference) / detect-correct, clean set in training / the previous default "
                 f"(label lr 0.5) | {clean} |" + " |" * 5)
    return "\n".join(lines)


#: issue 38's table: its rows, and the columns each ran
DETECT_ROWS = [(DETECT, "detect-correct (the default)"),
               (DETECT_PROP, "detect-correct, proportional weights in the model step"),
               (DETECT_META, "… and the clean set in training"),
               (DETECT_FIXED, "… its labels not meta-learned (label lr 0)"),
               (DETECT_EVERY4, "… a meta step every 4 steps"), (DEFAULT, "previous default"), (L2RW, "L2RW"),
               (ELR, "ELR"), (CONFIDENT, "confident learning")]


def detect_table(dataset: str) -> str:
    """docs/results.md's table of issue 38: per column, last-epoch accuracy, corrupted labels corrected / clean
    labels broken (%) and the flags' F1, for issue 38's rows and the baselines that bound them ("–": not run)."""
    columns = ["symmetric-20", "symmetric-40", "asymmetric-40", "small-clean-40"]
    heads = {"symmetric-20": "sym. 20 %", "symmetric-40": "sym. 40 %", "asymmetric-40": "flip 40 %",
             "small-clean-40": "sym. 40 %, 10 clean a class"}
    lines = [f"| {NOISE_HEADERS[dataset][0]}: accuracy; corrected / broken; F1 | "
             + " | ".join(heads[c] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for method, name in DETECT_ROWS:
        cells = []
        for column in columns:
            try:
                acc = nl(dataset, column, method)
            except KeyError:  # a row not run in this column
                cells.append("–")
                continue
            fixed, broken = nl(dataset, column, method, field="corrected"), nl(dataset, column, method, field="clean_broken")
            repair = "" if math.isnan(fixed.m) else f"; {fixed.m:.1f} / {broken.m:.2f}"
            cells.append(f"{pm(acc)}{repair}; {nl(dataset, column, method, field='f1').m:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def instance_table() -> str:
    """docs/results.md's table of the instance-dependent columns: last-epoch accuracy (%) per dataset and
    rate, the best row of a column in bold; then the flags' F1 and the corrupted labels corrected (%)."""
    columns = [(d, s) for d in DATASETS for s in INSTANCE]
    names = {"mnist1d": "MNIST-1D", "digits": "digits"}
    head = " | ".join(f"{names[d]} {s.split('-')[1]} %" for d, s in columns)
    lines = [f"| instance-dependent | {head} | F1 of the flags (same columns) | corrected (same columns) |",
             "|---|" + "---|" * (len(columns) + 2)]
    best = {c: best_instance_row(*c) for c in columns}
    for method in INSTANCE_ROWS:
        cells = [pm(nli(d, s, method)) for d, s in columns]
        cells = [f"**{c}**" if best[col] == method else c for c, col in zip(cells, columns)]
        f1 = sl([nli(d, s, method, field="f1") for d, s in columns], 0)
        corrected = [nli(d, s, method, field="corrected") for d, s in columns]
        fixed = "–" if all(math.isnan(x.m) for x in corrected) else sl(corrected, 1)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {f1} | {fixed} |")
    return "\n".join(lines)


def corrector_table() -> str:
    """docs/results.md's table of the label-correction rows: corrupted labels corrected and clean labels
    broken (%), last epoch, per column."""
    rows = [("the default (per-sample labels + weights)", DEFAULT),
            (f"corrector + weights, label lr {span(picks(CORRECTOR))} (tuned)", CORRECTOR),
            ("corrector + weights, label lr 0.1", CORRECTOR_01), ("corrector alone, label lr 0.1", CORRECTOR_ALONE)]
    lines = ["| | MNIST-1D sym. 20 / 40 / 60 / 80 %, flip 40 % | digits sym. 20 / 40 / 60 / 80 %, flip 40 % |",
             "|---|---|---|"]
    for name, method in rows:
        cells = [f"{sl(nl_all(d, method, field='corrected'), 0)} corrected, {sl(nl_all(d, method, field='clean_broken'))} broken"
                 for d in DATASETS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def strategy_table() -> str:
    """docs/results.md's table of the strategies: step and graph memory (``overhead.json``), accuracy and
    whole-run time (``strategies.json``); in bold the cheapest exact strategy's figures."""
    rows = [("`one-step` (exact; the default's hypergradient)", "one-step"),
            ("`unrolled` (exact, higher; the paper's)", "unrolled"), ("`functional` (exact, torch.func)", "functional"),
            ("`truncated` k=2, t=1 (step and memory: k=4)", "truncated"),
            ("`finite-difference` k=1", "finite-difference"), ("`head-only` k=1", "head-only"),
            ("`functional`, every 4 steps", "functional, every 4"),
            ("`finite-difference`, every 8 steps, meta batch 128", "finite-difference, every 8"),
            ("cross-entropy", "cross-entropy")]
    exact = ("one-step", "unrolled", "functional")
    lines = ["| strategy | full training step vs a plain step (CNN, meta batch = batch) | graph memory vs a plain step "
             "(CNN, k=1) | noisy MNIST-1D, last epoch | whole run vs cross-entropy |", "|---|---|---|---|---|"]
    columns = [lambda n: step(OVERHEAD[n]) if n in OVERHEAD else None,
               lambda n: step(OVERHEAD[n], field="memory_ratio") if n in OVERHEAD else None,
               lambda n: None, lambda n: row("strategies", STRATEGY[n])["time_ratio"]]
    best = [min(exact, key=column) if i != 2 else None for i, column in enumerate(columns)]
    for label, name in rows:
        cells = []
        for i, column in enumerate(columns):
            if i == 2:
                same = " (= `unrolled`)" if name == "functional" and rs("strategies", STRATEGY[name]) == \
                    rs("strategies", STRATEGY["unrolled"]) else ""
                cells.append(f"{pm(rs('strategies', STRATEGY[name]))} %{same}")
                continue
            value = column(name)
            text = "–" if value is None else times(value)
            cells.append(f"**{text}**" if best[i] == name else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def strategy_table_readme() -> str:
    """README.md's shorter table of the strategies (no memory column; the exact pair on one row)."""
    def acc(n):
        return f"{pm(rs('strategies', STRATEGY[n]))} %"

    def whole(n):
        return times(row("strategies", STRATEGY[n])["time_ratio"])

    lines = ["| strategy | full step vs a plain step (CNN, meta batch = batch) | last-epoch accuracy | whole run vs "
             "cross-entropy |", "|---|---|---|---|",
             f"| `one-step` (exact; the default's hypergradient) | {times(step(OVERHEAD['one-step']))} | "
             f"{acc('one-step')} | {whole('one-step')} |",
             f"| `unrolled` (exact, higher) / `functional` (exact, torch.func) | {times(step(OVERHEAD['unrolled']))} / "
             f"{times(step(OVERHEAD['functional']))} | {acc('unrolled')} / {acc('functional')} | {whole('unrolled')} / "
             f"{whole('functional')} |",
             f"| `head-only` k=1 (large backbones) | {times(step(OVERHEAD['head-only']))} | {acc('head-only')} | "
             f"{whole('head-only')} |",
             f"| `finite-difference`, every 8 steps, meta batch 128 | – | {acc('finite-difference, every 8')} | "
             f"{whole('finite-difference, every 8')} |",
             f"| cross-entropy | 1× | {acc('cross-entropy')} | {whole('cross-entropy')} |"]
    return "\n".join(lines)


def clean_table() -> str:
    """docs/results.md's table of learned labels on clean data (last epoch), the best of a row in bold."""
    rows = [("digits-twins, MLP, no wd (chosen; over-fits most)", "twins"),
            ("MNIST-1D, MLP, 4 000 samples, no wd (chosen)", "mlp4k"), ("MNIST-1D, CNN (earlier setting)", "cnn"),
            ("digits, MLP (earlier setting)", "digits")]
    lines = ["| setting | one-hot | best smoothing | online LS | PS-KD | one-hot, matched time | best learned labels |",
             "|---|---|---|---|---|---|---|"]
    for label, regime in rows:
        smoothing, learned = cl_best(regime, SMOOTHINGS), cl_best(regime, LEARNED_CONFIGS)
        methods = ["one-hot", smoothing, "online label smoothing (α 0.5)", "PS-KD (α 0.8)", "one-hot, matched wall time",
                   learned]
        best = cl_best(regime, methods)
        notes = {smoothing: f" ({smoothing.split(' ')[-1]})", learned: f" ({short_config(learned)})"}
        cells = [(f"**{pm(cl(regime, m))}**" if m == best else pm(cl(regime, m))) + notes.get(m, "") for m in methods]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def distill_table() -> str:
    """docs/results.md's table: each teacher family at its best teacher, T and α (last epoch), the best
    student in bold."""
    lines = ["| teacher | teacher acc (%) | best T, α | student acc (%) | student ECE (%) |", "|---|---|---|---|---|"]
    best = max(FAMILIES, key=lambda fam: student(best_teacher(fam)).m)
    for family in FAMILIES:
        name = best_teacher(family)
        label = {"one-hot": "one-hot", "label smoothing": f"label smoothing (best: ε {name.split(' ')[-1]})",
                 "learned labels": f"learned labels (best: {name[len('learned '):]})"}[family]
        acc = pm(student(name))
        lines.append(f"| {label} | {pm(teacher(name))} | {', '.join(t_alpha(best_grid(name)))} | "
                     f"{'**' + acc + '**' if family == best else acc} | {pm(student(name, field='ece'))} |")
    lines.append(f"| no teacher (cross-entropy) | – | – | {pm(teacher(ALONE))} | {pm(teacher(ALONE, 'ece'))} |")
    return "\n".join(lines)
