"""The report's sections on the run as a whole: teacher, run facts, results, compute (what the
students did is in ``student_sections``, what came before them in ``upstream_sections``). Each takes
the run's ``ReportContext`` and returns HTML, or raises ``Missing`` (the page then says so)."""

from __future__ import annotations

import numpy as np

from clareps.device import describe_hardware
from clareps.diffusion.model_card import CONSISTENCY_BAR as BAR
from clareps.distill.methods import METHODS
from clareps.report.context import Missing, ReportContext
from clareps.report.html_parts import esc, img, minutes, pct, table
from clareps.report.layout import BANK_KINDS


def teacher_box(ctx: ReportContext) -> str:
    """The teacher's state, in plain words; one verdict, teacher-check's bar, and a warning only where the
    bar is not met (or was never checked). Training steps short of the plan are a fact, not a verdict."""
    st = ctx.teacher_state()
    step, plan = st["step"], st["planned"]
    trained = f"trained for {step:,} steps" if step is not None else "trained for an unknown number of steps"
    if step is not None and plan:
        trained += f" of the {plan:,} its config plans ({100 * step / plan:.0f} %)"
    source = st.get("source")
    copied = f" (this run's copy of <code>{esc(source)}</code>)" if source and source != str(st["path"]) else ""
    lines = [f"Teacher: <code>{esc(st['path'])}</code>{copied}, {trained}."]
    check = st["check"]
    if check:
        made = check.get("teacher_step")
        stale = f" (made at step {made}, not on the weights used here: stale)" if made not in (None, step) else ""
        met = "met" if check["class_consistency"] >= BAR else "not met"
        lines.append(f"<code>clareps teacher-check</code>{stale}: class consistency "
                     f"{pct(check['class_consistency'])} (share of samples the shape judge assigns to their "
                     f"class; the bar is {pct(BAR)}: {met}), FID on the judge's features "
                     f"{check['fid_judge_features']:.1f}.")
    else:
        lines.append("It has <b>not been checked</b> with <code>clareps teacher-check</code> (no teacher_check.json "
                     f"beside it{'' if st['card'] else ', and no MODEL_CARD.md'}).")
    if st["control_consistency"] is not None:
        chance = 1 / max(1, len(ctx.class_names))
        lines.append(f"Measured by this run with another protocol: the shape judge assigns "
                     f"{pct(st['control_consistency'])} of the {st['control_items']} guided samples of the control "
                     f"bank (its sampler steps and guidance) to their intended class (chance: {pct(chance)}). "
                     "That is not <code>teacher-check</code>'s protocol, so it is not compared with the bar.")
    used = {b.get("teacher_sha256") for b in ctx.bank_metas()} - {None}
    if st["sha256"] and used and used != {st["sha256"]}:
        lines.append(f"<b>The teacher file has changed since the banks were built</b> (they record teacher "
                     f"{esc(', '.join(sorted(used)))}, the file is now {esc(st['sha256'])}): the step and "
                     "checks above describe the file as it is now, not the weights the banks came from.")
    why = []
    consistency = (check or {}).get("class_consistency")  # the bar is teacher-check's: judged by it alone
    if consistency is not None and consistency < BAR:
        why.append(f"below its bar (class consistency {pct(consistency)}, the bar is {pct(BAR)})")
    if not check:
        why.append("not checked")
    if why:
        said = why[0] if len(why) == 1 else ", ".join(why[:-1]) + " and " + why[-1]
        lines.append(f"<b>This teacher is {said}.</b> Banks from a teacher whose samples are not "
                     "recognisable members of their class carry little class information, so the differences between "
                     "the methods below mean little for CaDistill or the paper's claims: read this page as a test of "
                     "the pipeline, not as a result.")
        return f'<div class="warn">{" ".join(lines)}</div>'
    return f'<div class="note">{" ".join(lines)}</div>'


def run_facts(ctx: ReportContext) -> str:
    latest = ctx.latest
    if not latest:
        return ('<p class="missing">No demo.json: this run root was not made by <code>clareps demo</code> (its '
                'stages were run one by one), so their timings are not recorded here.</p>')
    stages = {k: v for k, v in latest.get("stages", {}).items() if k != "report"}
    reused = sum(1 for s in stages.values() if s.get("reused"))
    state = "before this page was made" if latest.get("finished") else "(that invocation did not finish)"
    text = (f"<p>Latest run: <b>{esc(latest.get('mode'))}</b> mode, started {esc(latest.get('started'))} with "
            f"<code>{esc(latest.get('command'))}</code>: {len(stages)} stages ({reused} reused from earlier runs) "
            f"in {minutes(latest.get('wall_seconds'))} {state}.")
    first = next((h for h in ctx.log.get("history", []) if h.get("finished")), None)
    if first is not None and first is not latest:
        text += f" The first complete run ({esc(first.get('started'))}) took {minutes(first.get('wall_seconds'))}."
    return text + f" Hardware: {esc(hardware_text(latest.get('hardware', {})))}.</p>"


def hardware_text(hw: dict) -> str:
    return describe_hardware(hw) if hw else "not recorded"


# -- results ------------------------------------------------------------------------------------------
def ordered_metrics(agg: dict) -> list[str]:
    """The table's row order (results.json is written with sorted keys, which loses it)."""
    from clareps.evaluate.aggregate import metric_order

    return sorted(agg["metrics"], key=metric_order)


def _mean_std(s: dict | None) -> str:
    if s is None:
        return "–"
    return pct(s["mean"], sign=False) + ("" if s["std"] is None else f" ± {100 * s['std']:.1f}")


def results_table(ctx: ReportContext) -> str:
    from clareps.evaluate.aggregate import LOWER_IS_BETTER, headline, label, to_markdown

    agg = ctx.need_agg()
    methods = agg["methods"]

    def rows(keep):
        out = []
        for metric in ordered_metrics(agg):
            row = agg["metrics"][metric]
            if not keep(metric):
                continue
            means = {m: row[m]["mean"] for m in methods if m in row}
            best = (min if metric in LOWER_IS_BETTER else max)(means.values()) if len(means) > 1 else None
            cells = [f"<b>{_mean_std(row.get(m))}</b>" if best is not None and means.get(m) == best
                     else _mean_std(row.get(m)) for m in methods]
            out.append([esc(label(metric))] + cells)
        return out

    seeds = {m: max((len(r[m]["seeds"]) for r in agg["metrics"].values() if m in r), default=0) for m in methods}
    head = ["metric (%)"] + methods
    main = table(head, rows(headline) + [["seeds"] + [str(seeds[m]) for m in methods]], num_cols=True)
    extra = table(head, rows(lambda k: not headline(k)), num_cols=True)
    notes = to_markdown(agg).split("\n\n")[1].strip()  # the notes paragraph; the paired tables are above, in HTML
    return (versus_baselines(agg) + main +
            f"<p class='small'>{esc(notes)} ↑: higher is better, ↓: lower is better.</p>"
            f"<details><summary>Corruption accuracy per type (all rows)</summary>{extra}</details>"
            f"<p class='small'>Files: <code>{esc(ctx.run.results)}/results.md</code>, <code>.csv</code>, "
            "<code>.json</code> (every seed's value).</p>")


def versus_baselines(agg: dict) -> str:
    """Every CaDistill label (cadistill, cadistill-matched, a demo config's variant) against ``ce``, ``control``
    and ``cadistill`` on the key metrics, paired by seed: the mean difference, its 95 % t-interval and the
    verdict that interval gives; then all of them in one forest plot."""
    from clareps.evaluate.aggregate import LOWER_IS_BETTER, label, metric_order
    from clareps.evaluate.paired import by_method, paired_table
    from clareps.report.figures import paired_forest

    paired = agg.get("paired") or paired_table(agg["metrics"], LOWER_IS_BETTER)
    if not paired:
        return ""
    # the largest budget at which some method still scores: a row of zeros tells a reader nothing
    scored = [k for k, row in agg["metrics"].items()
              if k.startswith("robust/worst@") and any(s["mean"] > 0 for s in row.values())]
    robust = sorted(scored, key=metric_order)  # by budget
    keys = ["clean/test-original", "clean/test-mixed-rand", "bg/gap", *robust[-1:], "corr/mean",
            "saliency/integrated-gradients"]
    out = "".join(_versus(agg, method, names, paired, keys) for method, names in by_method(paired).items())
    if not out:
        return ""
    shown = [k for k in keys if any(k in row for row in paired.values())]
    forest = paired_forest(paired, shown, [label(k) for k in shown], LOWER_IS_BETTER)
    return out + img(forest, "paired differences with their 95 % intervals") + "<h3>All methods</h3>"


def _versus(agg: dict, method: str, names: list[str], paired: dict, keys: list[str]) -> str:
    from clareps.evaluate.aggregate import label
    from clareps.evaluate.paired import interval_text

    rows, verdicts = [], {n: [] for n in names}
    for k in keys:
        if not any(k in paired[n] for n in names):
            continue
        cells = [esc(label(k)), _mean_std(agg["metrics"][k][method])]
        for n in names:
            d = paired[n].get(k)
            cells += [interval_text(d), d["verdict"]] if d else ["–", "–"]
            if d:
                verdicts[n].append(d["verdict"])
        rows.append(cells)
    if not rows:
        return ""
    name = METHODS[method].label if method in METHODS else method
    head = ["metric (%)", method]
    for n in names:
        head += [f"{n.split('-vs-')[1]}: difference, 95 % CI (points)", "verdict"]
    summary = "; ".join(f"against {n.split('-vs-')[1]}: better on {v.count('better')}, worse on "
                        f"{v.count('worse')}, no detectable difference on {v.count('no detectable difference')}"
                        for n, v in verdicts.items())
    bases = [n.split("-vs-")[1] for n in names]
    against = " and ".join([", ".join(bases[:-1]), bases[-1]] if len(bases) > 1 else bases)
    return (f"<h3>{esc(name)} against {against}, paired by seed</h3>"
            + table(head, rows, num_cols=True)
            + f"<p class='small'>{esc(summary)} of these metrics. Difference: {esc(method)} minus the baseline, "
              "mean over training seeds run with both (same seed, same data order), with its 95 % Student-t "
              "interval; the verdict is \"better\" or \"worse\" only when the interval excludes 0 (in the "
              "metric's good direction: ↓ metrics are better lower).</p>")


# -- compute --------------------------------------------------------------------------------------------
def compute_section(ctx: ReportContext) -> str:
    rows = []
    try:
        st = ctx.teacher_state()
        info = st["train_info"] or {}
        built = ctx.built("teacher")  # a copied teacher's stage took no time: its train_info.json says what it cost
        seconds = st["seconds"] if st["seconds"] is not None else (built or {}).get("seconds")
        logged = st["seconds_logged"]
        how = [info.get("device", "")] if seconds is not None else []
        if seconds is None and logged:
            seconds, how = logged, ["≈: the step times logged in metrics.jsonl, summed"]
        elif logged and seconds and abs(logged - seconds) > 0.2 * seconds:
            how.append(f"as recorded in train_info.json; the step times in metrics.jsonl sum to {minutes(logged)}")
        rows.append(["teacher training", f"{st['step'] or '?'} steps", minutes(seconds), esc("; ".join(how))])
    except Missing:
        pass
    for kind in BANK_KINDS:
        built = ctx.built(f"bank/{kind}")
        try:
            bank = ctx.bank(kind)
        except Missing:
            continue
        per = float(bank.seconds.mean()) if len(bank) else 0.0
        rows.append([f"bank: {kind}", f"{len(bank)} items", minutes(built["seconds"] if built else None),
                     f"{per:.2f} s per item ({minutes(float(bank.seconds.sum()))} of item time)"])
    metric_secs = [b["seconds"] for n, b in (ctx.log.get("built") or {}).items() if n.startswith("bank-metrics/")]
    if metric_secs:
        rows.append(["bank metrics (shape judge, NMI)", f"{len(metric_secs)} banks", minutes(sum(metric_secs)), ""])
    built = ctx.built("kd-teacher")
    if built:
        kd = ctx.kd_teacher_meta()
        size = f"{kd.get('arch')} width {kd.get('width')}, {kd.get('config', {}).get('epochs')} epochs" if kd else ""
        rows.append(["KD classifier teacher", esc(size), minutes(built["seconds"]), ""])
    order = list((ctx.agg or {}).get("methods") or [])
    for prefix, what in (("distill", "distillation"), ("evaluate", "evaluation")):
        per_method: dict[str, list[float]] = {}
        for name, b in (ctx.log.get("built") or {}).items():
            if name.startswith(prefix + "/"):
                per_method.setdefault(name.split("/")[1].rsplit("-s", 1)[0], []).append(b["seconds"])
        for m in sorted(per_method, key=lambda m: (order.index(m) if m in order else len(order), m)):
            secs = per_method[m]
            rows.append([f"{what}: {esc(m)}", f"{len(secs)} student(s)", minutes(sum(secs)),
                         f"{minutes(float(np.mean(secs)))} per student"])
    if not rows:
        raise Missing("no timings recorded (demo.json) and no banks")
    total = sum(b["seconds"] for b in (ctx.log.get("built") or {}).values())
    latest = ctx.latest
    hw = latest.get("hardware", {})
    return (table(["stage", "size", "wall time", "notes"], rows) +
            f"<p class='small'>Wall times of the run that built each artifact (reruns reuse them). Sum over stages "
            f"built by <code>clareps demo</code>: {minutes(total)}; the last invocation took "
            f"{minutes(latest.get('wall_seconds'))}. Hardware: {esc(hardware_text(hw))}"
            f"{'' if hw.get('omp_num_threads') is None else ', OMP_NUM_THREADS=' + esc(hw['omp_num_threads'])}.</p>")
