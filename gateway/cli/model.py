"""Model commands of ``gateway``: train, eval, model list/promote/rollback, label (operator corrections)."""
from __future__ import annotations

import contextlib
import getpass
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from classifier.paths import CORPUS_DIR, SHARED_DATA
from classifier.taxonomy import CATEGORIES
from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, fail, load_or_exit, open_database
from gateway.errors import ModelError

app = typer.Typer()
model_app = typer.Typer(help="Stored model versions: list, promote, rollback.", no_args_is_help=True)

DataOption = Annotated[Path, typer.Option("--data", help="Directory of labelled *.jsonl corpus files.")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


RealDataOption = Annotated[Path, typer.Option("--real-data", help="The third-party data directory (NLBSE, S2R).")]


def sets_table(sets: dict[str, Any]) -> list[str]:
    """Per-set scores as aligned lines (macro-F1, routed precision and coverage at the abstain thresholds)."""
    lines = [f"  {'set':<16} {'macro-F1':>8} {'target':>6} {'routed prec':>11} {'coverage':>8} {'n':>5}  largest wrong"]
    for name, s in sets.items():
        lines.append(f"  {name:<16} {s['macro_f1']:>8.3f} {s['target']:>6.3f} {s['routed_precision']:>11.3f} "
                     f"{s['coverage']:>8.3f} {s['examples']:>5}  {s['largest_wrong_class'] or '-'} "
                     f"{s['largest_wrong_share']:.1%}")
    return lines


def _json_progress(stage: str, fraction: float) -> None:
    typer.echo(json.dumps({"stage": stage, "fraction": round(fraction, 3)}))


def progress_bar(description: str) -> Any:
    """A tqdm bar in percent and the ``progress(step, done)`` callback that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=description, unit="%", bar_format="{l_bar}{bar}| {n:.0f}/100 [{elapsed}] {postfix}")

    def progress(step: str, done: float) -> None:
        bar.n = round(100 * done)
        bar.set_postfix_str(step)

    return bar, progress


@app.command()
def train(
    config: ConfigOption = DEFAULT_CONFIG,
    data: DataOption = CORPUS_DIR,
    real_data: RealDataOption = SHARED_DATA,
    candidate: Annotated[str, typer.Option(help="svm, logreg, corpus (our corpus only, for comparison), or best "
                                                "(the one whose worst eval set is best).")] = "best",
    seed: Annotated[int, typer.Option(help="Random seed (fixed for reproducible models).")] = 0,
    include_corrections: Annotated[bool, typer.Option(help="Also learn from operators' corrections in the DB.")] = False,
    promote: Annotated[bool, typer.Option(help="Make the new version current if it is not worse on any set.")] = True,
    force: Annotated[bool, typer.Option(help="Promote even if worse than the current model.")] = False,
    db: DbOption = None,
    progress_json: Annotated[bool, typer.Option(
        help="Print progress as JSON lines ({\"stage\", \"fraction\"}; at the end {\"version\", \"promoted\", …}) "
             "instead of a progress bar and the tables.")] = False,
) -> None:
    """Train a new model version on the corpus and real data (and corrections); score it on every eval set."""
    from classifier.evalsets import shortfalls
    from classifier.workflow import train_version
    from gateway.corrections import corrections_as_examples

    settings = load_or_exit(config, check_secrets=False)
    extra = corrections_as_examples(open_database(settings, db)) if include_corrections else []
    bar, progress = progress_bar("training") if not progress_json else (contextlib.nullcontext(), _json_progress)
    try:
        with bar:
            result = train_version(data, settings.classifier.models_dir, candidate=candidate, seed=seed, extra=extra,
                                   promote=promote, force=force, real_data=real_data, progress=progress)
    except ModelError as exc:
        raise _fail(exc) from None
    meta = result.metadata
    if progress_json:
        typer.echo(json.dumps({"version": result.version, "promoted": result.promoted, "reason": result.reason,
                               "corrections": len(extra), "macro_f1": meta["metrics"]["macro_f1"],
                               "selection": meta["selection"]}))
        return
    typer.echo(f"model {result.version} written to {result.path} ({len(extra)} corrections used)")
    typer.echo("\n".join(sets_table(meta["sets"])))
    for name, row in meta["candidates"].items():
        typer.echo(f"  candidate {name:<8} worst margin {row['score']:+.3f} ({row['worst_set']})")
    typer.echo(f"selection: {meta['selection']['rule']}")
    missed = shortfalls(meta["sets"])
    typer.echo("targets missed: " + ("; ".join(missed) if missed else "none"))
    typer.echo(result.reason)


@app.command("eval")
def evaluate(
    config: ConfigOption = DEFAULT_CONFIG,
    data: DataOption = CORPUS_DIR,
    real_data: RealDataOption = SHARED_DATA,
    model: Annotated[Optional[str], typer.Option("--model", help="Version to evaluate (default: current).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Directory for a confusion matrix and a reliability "
                                                      "diagram (PNG) per set.")] = None,
) -> None:
    """Per-class precision/recall/F1 on the frozen test part, and per-set macro-F1, routed precision, coverage."""
    from classifier.workflow import evaluate as run_eval

    settings = load_or_exit(config, check_secrets=False)
    bar, progress = progress_bar("evaluating")
    try:
        with bar:
            loaded, metrics, runs = run_eval(settings.classifier.models_dir, data, model, real_data=real_data,
                                             progress=progress)
    except ModelError as exc:
        raise _fail(exc) from None
    sets = {r.eval_set.name: r.scores for r in runs}
    if plot is not None:
        from classifier.plots import save_set_plots

        for run in runs:
            save_set_plots(run, plot, title=f"model {loaded.version}")
    if as_json:
        typer.echo(json.dumps({"version": loaded.version, "threshold": loaded.threshold, "thresholds": loaded.cuts,
                               **metrics, "sets": sets}, indent=2))
        return
    typer.echo(f"model {loaded.version} (thresholds {loaded.threshold:.3f}–{max(loaded.cuts.values()):.3f}) on "
               f"{metrics['n']} frozen test messages")
    typer.echo(f"{'category':<16} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>4}")
    for name, row in metrics["per_class"].items():
        typer.echo(f"{name:<16} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['support']:>4}")
    typer.echo(f"macro-F1 {metrics['macro_f1']:.3f}; per language " +
               ", ".join(f"{k} {v:.3f}" for k, v in metrics["per_language_macro_f1"].items()))
    typer.echo(f"coverage {metrics['coverage']:.3f} at routed precision {metrics['routed_precision']}")
    typer.echo("per set:\n" + "\n".join(sets_table(sets)))
    if plot is not None:
        typer.echo(f"plots written to {plot}")


@model_app.command("list")
def model_list(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Stored versions with their scores per eval set; * marks the current one."""
    from classifier.workflow import versions_table

    settings = load_or_exit(config, check_secrets=False)
    for row in versions_table(settings.classifier.models_dir):
        mark = "*" if row["current"] else " "
        typer.echo(f"{mark} {row['version']:<28} {row['candidate']:<7} macro-F1 {row['macro_f1']:.3f} "
                   f"coverage {row['coverage']:.3f}  {row['created']}")
        if row["sets"]:
            typer.echo("    " + ", ".join(f"{name} {s['macro_f1']:.3f} (routed {s['routed_precision']:.2f}, "
                                          f"coverage {s['coverage']:.2f})" for name, s in row["sets"].items()))
        if row["selection"]:
            typer.echo(f"    worst set {row['selection']['worst_set']} (margin {row['selection']['score']:+.3f})")


@model_app.command("promote")
def model_promote(version: str, config: ConfigOption = DEFAULT_CONFIG, data: DataOption = CORPUS_DIR,
                  real_data: RealDataOption = SHARED_DATA,
                  force: Annotated[bool, typer.Option(help="Promote even if worse on an eval set.")] = False) -> None:
    """Make VERSION current (refused if it does not load, or scores worse than the current model on any eval set,
    unless --force)."""
    from classifier.workflow import promote_version

    models_dir = load_or_exit(config, check_secrets=False).classifier.models_dir
    bar, progress = progress_bar("comparing")
    try:
        with bar:
            promote_version(models_dir, version, data, force=force, real_data=real_data, progress=progress)
    except ModelError as exc:
        raise _fail(exc) from None
    typer.echo(f"current model is now {version}")


@model_app.command("rollback")
def model_rollback(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Return to the previously current version."""
    from classifier.registry import rollback

    try:
        version = rollback(load_or_exit(config, check_secrets=False).classifier.models_dir)
    except ModelError as exc:
        raise _fail(exc) from None
    typer.echo(f"current model is now {version}")


@app.command()
def label(
    message_id: Annotated[str, typer.Argument(help="The X-Gateway-Message-Id of a stored message (or its first 6+ "
                                                   "characters, e.g. the [#ticket] of a reply's subject).")],
    category: Annotated[str, typer.Argument(help="Correct category: " + ", ".join(CATEGORIES))],
    config: ConfigOption = DEFAULT_CONFIG,
    by: Annotated[str, typer.Option(help="Who corrects (default: the login name).")] = "",
    db: DbOption = None,
) -> None:
    """Store an operator's correction; the next `train --include-corrections` learns from it."""
    from gateway.corrections import add_correction
    from gateway.records import find_message

    if category not in CATEGORIES:
        fail(f"unknown category {category!r}; choose one of {', '.join(CATEGORIES)}")
    database = open_database(load_or_exit(config, check_secrets=False), db, must_exist=True)
    try:
        with database.reading() as session:
            public_id = find_message(session, message_id).public_id
        added = add_correction(database, public_id, category, by or getpass.getuser(), source="cli")
    except LookupError as exc:
        fail(str(exc))
    finally:
        database.dispose()
    typer.echo(f"message {public_id} labelled {category}" + ("" if added else " (already so labelled)"))
