#!/usr/bin/env python3
"""Writes docs/results.md from scripts/paper.sh's results.jsonl (one `metalm eval --json` object
per setting, model, task and shot count). Set-up/reporting only: metalm itself runs without it.
Usage: paper_table.py RESULTS.jsonl --command C --seconds S --ft-steps N --n-eval N --host H"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--command", required=True)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--ft-steps", type=int, required=True)
    ap.add_argument("--n-eval", type=int, required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--pretrained", required=True, help="where the pretrained models came from")
    a = ap.parse_args()
    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    by = {}
    tasks = []
    for r in rows:
        res = r["result"]
        task = res["task"]
        if task not in tasks:
            tasks.append(task)
        m = res["metrics"]["accuracy"]
        by[(r["setting"], r["model"], task, res["shots"])] = (m["value"], m.get("interval95"), res["examples"])

    def cell(key):
        if key not in by:
            return "-"
        v, ci, _ = by[key]
        return f"{v:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{v:.1f}"

    out = []
    w = out.append
    w("# Results: the MetaLM paper in miniature\n")
    w(f"Produced by `{a.command}` in {a.seconds // 60} min {a.seconds % 60} s on {a.host}. "
      f"Accuracy (%) on each task's test split (at most {a.n_eval} examples), with 95% bootstrap "
      f"intervals in brackets (`metalm eval`, 1000 resamples). The pretrained models: {a.pretrained}; "
      f"single-task runs fine-tune {a.ft_steps} steps, multitask and instruction runs twice that. "
      f"Tasks: `scripts/make_tasks.sh`; templates: `configs/tasks/templates.json` (the first one "
      f"of each task is the evaluation prompt).\n")
    w("## In-context learning (no training)\n")
    w("| task | MetaLM k=0 | MetaLM k=1 | MetaLM k=4 | GPT k=0 | GPT k=1 | GPT k=4 |")
    w("|---|---|---|---|---|---|---|")
    for t in tasks:
        w(f"| {t} | " + " | ".join(cell(("icl", m, t, k)) for m in ("metalm", "gpt") for k in (0, 1, 4)) + " |")
    w("\nMetaLM's prompts dock each demonstration's input (and the query's) through its encoder "
      "and give the labels as tokens, `</s>` between demonstrations; the GPT reads the same "
      "prompt as tokens.\n")
    w("## Single-task fine-tuning\n")
    w("| task | MetaLM, LM frozen (`--train encoder`) | GPT, all parameters |")
    w("|---|---|---|")
    for t in tasks:
        w(f"| {t} | {cell(('single', 'metalm', t, 0))} | {cell(('single', 'gpt', t, 0))} |")
    w("\n## Multitask fine-tuning (every task at once, all parameters)\n")
    w("| task | MetaLM | GPT |")
    w("|---|---|---|")
    for t in tasks:
        w(f"| {t} | {cell(('multi', 'metalm', t, 0))} | {cell(('multi', 'gpt', t, 0))} |")
    w("\n## Instruction tuning, zero-shot on a held-out cluster\n")
    w("Tuned on every task but the `sentiment` cluster, with several templates per task and "
      "turned-around forms; then asked the held-out task zero-shot.\n")
    w("| model | before tuning | after tuning |")
    w("|---|---|---|")
    for m in ("metalm", "gpt"):
        w(f"| {m} | {cell(('base', m, 'sentiment', 0))} | {cell(('instruction', m, 'sentiment', 0))} |")
    w("\nChance: spam 50, party 50, sentiment 50, austen 16.7, fortunes 1/(number of categories). "
      "These are tiny models (6 layers, d 384) pretrained for minutes on the KJV and Moby-Dick; "
      "the table compares settings at this scale, it does not reproduce the paper's numbers.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
