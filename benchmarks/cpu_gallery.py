"""The `cpu`-scale gallery of docs/gallery.md: run paper-1 cards on this CPU, time each, and show
its figure, its best runs and its claims (docs/scales.md).

    python benchmarks/cpu_gallery.py                       # every paper-1 card, one after another
    python benchmarks/cpu_gallery.py --cards fig_diversity # one card; the others' entries stay

Each card is one `snakemake --cores N --config experiments=[card] scale=cpu` (runs shared with an
earlier card are reused, so a reusing card such as fig_attention costs only its aggregate once its
sources ran); its wall minutes, the date and the commit go to docs/gallery/runs.json, its figure
to docs/gallery/<card>.png. Then claims.csv of the scale is recomputed and docs/gallery.md is
written from runs.json, the cards' summary tables and claims.csv.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from cotlab.atomic import write_atomic
from cotlab.cards import card_note, load_card
from cotlab.layout import Layout

REPO = Path(__file__).resolve().parents[1]
GALLERY = REPO / "docs" / "gallery"
PAGE = REPO / "docs" / "gallery.md"
SCALE = "cpu"
# Paper 1, the training cards first so that the reusing cards find their runs.
CARDS = ["fig_diversity", "fig_parents", "fig_attention", "fig_vocab", "fig_embed_sim", "fig_losses",
         "fig_examples", "fig_chain", "fig_chain_positions", "fig_activation", "fig_dims",
         "fig_token_coverage", "fig_teaser", "tab_models", "tab_hparams"]
SWEPT = ("regime", "vocab_size", "n_examples", "chain_length", "n_parents", "n_dims", "activation")


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "config", "workflow"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+local changes" if dirty else "")


def run_card(card: str, cores: int) -> float:
    """Build one card at the cpu scale; its wall minutes."""
    start = time.perf_counter()
    cmd = ["snakemake", "--cores", str(cores), "--config", f"experiments=[{card}]", f"scale={SCALE}"]
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd, cwd=REPO).returncode != 0:
        sys.exit(f"{card}: snakemake failed; its logs are under results/{SCALE}/logs/")
    return (time.perf_counter() - start) / 60


def best_runs(summary: pd.DataFrame) -> str:
    """A markdown table of the card's runs, mean over seeds, best lift over the trivial baseline first."""
    swept = [c for c in SWEPT if c in summary and summary[c].nunique() > 1]
    grouped = summary.groupby(["model", "format", *swept], dropna=False)
    table = grouped[["acc_final", "trivial_baseline", "lift"]].mean().assign(seeds=grouped.size())
    table = table.sort_values("lift", ascending=False).reset_index()
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
    return "\n".join("| " + " | ".join(row) + " |" for row in [list(table.columns), ["---"] * table.shape[1], *cells])


def card_section(card: str, entry: dict, layout: Layout, claims: pd.DataFrame) -> str:
    spec = load_card(card, REPO / "config")
    lines = [f"## {card}", "", f"*{spec.title}*", ""]
    note = card_note(card, SCALE, REPO / "config")  # what the figure's caption says about this scale
    if note:
        lines += [f"> {note}", ""]
    lines += [f"{entry['minutes']:.1f} minutes on {entry['cores']} cores, {entry['date']}, "
              f"commit `{entry['commit']}`.", ""]
    if (GALLERY / f"{card}.png").is_file():
        lines += [f"![{card} at the cpu scale](gallery/{card}.png)", ""]
    tables = layout.card_tables(card, trains=spec.kind == "runs" and not spec.reuse)
    summary_csv = Path(tables.get("summary", ""))
    if spec.kind == "runs" and not spec.reuse and summary_csv.is_file():
        lines += ["Runs, mean over seeds, by lift over the trivial baseline:", "",
                  best_runs(pd.read_csv(summary_csv)), ""]
    rows = claims[claims["card"] == card] if len(claims) else claims
    if len(rows):
        lines += ["| claim | verdict | evidence |", "|---|---|---|"]
        lines += [f"| {r.claim} | {r.verdict} | {str(r.evidence).replace('|', '/') if pd.notna(r.evidence) else ''} |"
                  for r in rows.itertuples()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", default=",".join(CARDS), help="comma-separated card ids (default: paper 1)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default: %(default)s)")
    parser.add_argument("--page-only", action="store_true", help="rewrite docs/gallery.md from what is recorded")
    args = parser.parse_args()
    GALLERY.mkdir(parents=True, exist_ok=True)
    record = GALLERY / "runs.json"
    entries = json.loads(record.read_text()) if record.is_file() else {}
    layout = Layout(SCALE, str(REPO / "results"))
    for card in [] if args.page_only else args.cards.split(","):
        load_card(card, REPO / "config")  # an unknown card fails before anything runs
        minutes = run_card(card, args.cores)
        entries[card] = {"minutes": round(minutes, 2), "cores": args.cores, "commit": git_commit(),
                         "date": datetime.date.today().isoformat()}
        figure = Path(layout.figure(card))
        if figure.is_file():
            shutil.copyfile(figure, GALLERY / f"{card}.png")
        write_text(record, json.dumps(entries, indent=1, sort_keys=True) + "\n")
    claims_csv = Path(layout.claims())
    if subprocess.run(["cotlab", "aggregate", "claims", "--scale", SCALE], cwd=REPO).returncode != 0:
        print("no claims: no training card has run at the cpu scale yet", file=sys.stderr)
    claims = pd.read_csv(claims_csv) if claims_csv.is_file() else pd.DataFrame()
    done = [c for c in CARDS if c in entries]
    head = ["# Gallery: paper 1 at the `cpu` scale", "",
            "What a real figure looks like before any GPU hour: each paper-1 card run at the `cpu` scale",
            "([Scales](scales.md)) on a 2-core CPU, with the minutes it took, its runs' lift over the",
            "trivial baseline and the verdicts it produced ([Claims](claims.md)). Regenerate with",
            "`python benchmarks/cpu_gallery.py` (all cards) or `--cards CARD` (one).", ""]
    missing = [c for c in CARDS if c not in entries]
    if missing:
        head += [f"Not yet run at this scale: {', '.join(missing)}.", ""]
    write_text(PAGE, "\n".join(head + [card_section(c, entries[c], layout, claims) for c in done]))
    print(f"wrote {PAGE.relative_to(REPO)} ({len(done)} cards)")


if __name__ == "__main__":
    main()
