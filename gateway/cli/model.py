"""Model commands of ``gateway``: train, eval, model list/promote/rollback, label (operator corrections)."""
from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from classifier.paths import CORPUS_DIR
from classifier.taxonomy import CATEGORIES
from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, DbOption, fail, load_or_exit, open_database
from gateway.errors import ModelError

app = typer.Typer()
model_app = typer.Typer(help="Stored model versions: list, promote, rollback.", no_args_is_help=True)

DataOption = Annotated[Path, typer.Option("--data", help="Directory of labelled *.jsonl corpus files.")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _json_progress(stage: str, fraction: float) -> None:
    typer.echo(json.dumps({"stage": stage, "fraction": round(fraction, 3)}))


@app.command()
def train(
    config: ConfigOption = DEFAULT_CONFIG,
    data: DataOption = CORPUS_DIR,
    candidate: Annotated[str, typer.Option(help="svm, logreg, or best (the one with the higher out-of-fold macro-F1).")] = "best",
    seed: Annotated[int, typer.Option(help="Random seed (fixed for reproducible models).")] = 0,
    include_corrections: Annotated[bool, typer.Option(help="Also learn from operators' corrections in the DB.")] = False,
    promote: Annotated[bool, typer.Option(help="Make the new version current if it is not worse.")] = True,
    force: Annotated[bool, typer.Option(help="Promote even if worse than the current model.")] = False,
    db: DbOption = None,
    progress_json: Annotated[bool, typer.Option(
        help="Print progress as JSON lines ({\"stage\", \"fraction\"}; at the end {\"version\", \"promoted\", …}).")] = False,
) -> None:
    """Train a new model version on the corpus (and corrections) and score it on the frozen test part."""
    from classifier.workflow import train_version
    from gateway.corrections import corrections_as_examples

    settings = load_or_exit(config, check_secrets=False)
    extra = corrections_as_examples(open_database(settings, db)) if include_corrections else []
    try:
        result = train_version(data, settings.classifier.models_dir, candidate=candidate, seed=seed, extra=extra,
                               promote=promote, force=force, progress=_json_progress if progress_json else None)
    except ModelError as exc:
        raise _fail(exc) from None
    m = result.metrics
    if progress_json:
        typer.echo(json.dumps({"version": result.version, "promoted": result.promoted, "reason": result.reason,
                               "corrections": len(extra), "macro_f1": m["macro_f1"]}))
        return
    typer.echo(f"model {result.version} written to {result.path} ({len(extra)} corrections used)")
    typer.echo(f"frozen test: macro-F1 {m['macro_f1']}, per language {m['per_language_macro_f1']}, "
               f"coverage {m['coverage']} at routed precision {m['routed_precision']}")
    typer.echo(result.reason)


@app.command("eval")
def evaluate(
    config: ConfigOption = DEFAULT_CONFIG,
    data: DataOption = CORPUS_DIR,
    model: Annotated[Optional[str], typer.Option("--model", help="Version to evaluate (default: current).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Write the confusion matrix as a PNG here.")] = None,
) -> None:
    """Per-class precision/recall/F1, macro-F1, per-language macro-F1 and coverage on the frozen test part."""
    from classifier.workflow import evaluate as run_eval

    settings = load_or_exit(config, check_secrets=False)
    try:
        loaded, metrics, truth, predicted = run_eval(settings.classifier.models_dir, data, model)
    except ModelError as exc:
        raise _fail(exc) from None
    if plot is not None:
        from classifier.plots import save_confusion_matrix

        save_confusion_matrix(truth, predicted, loaded.classes, plot, title=f"model {loaded.version}")
    if as_json:
        typer.echo(json.dumps({"version": loaded.version, "threshold": loaded.threshold, **metrics}, indent=2))
        return
    typer.echo(f"model {loaded.version} (threshold {loaded.threshold:.3f}) on {metrics['n']} frozen test messages")
    typer.echo(f"{'category':<16} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>4}")
    for name, row in metrics["per_class"].items():
        typer.echo(f"{name:<16} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['support']:>4}")
    typer.echo(f"macro-F1 {metrics['macro_f1']:.3f}; per language " +
               ", ".join(f"{k} {v:.3f}" for k, v in metrics["per_language_macro_f1"].items()))
    typer.echo(f"coverage {metrics['coverage']:.3f} at routed precision {metrics['routed_precision']}")


@model_app.command("list")
def model_list(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Stored versions with their frozen-test scores; * marks the current one."""
    from classifier.workflow import versions_table

    settings = load_or_exit(config, check_secrets=False)
    for row in versions_table(settings.classifier.models_dir):
        mark = "*" if row["current"] else " "
        typer.echo(f"{mark} {row['version']:<28} {row['candidate']:<7} macro-F1 {row['macro_f1']:.3f} "
                   f"coverage {row['coverage']:.3f}  {row['created']}")


@model_app.command("promote")
def model_promote(version: str, config: ConfigOption = DEFAULT_CONFIG, data: DataOption = CORPUS_DIR,
                  force: Annotated[bool, typer.Option(help="Promote even if worse on the frozen test set.")] = False) -> None:
    """Make VERSION current (refused if it does not load, or scores worse than the current model, unless --force)."""
    from classifier.workflow import promote_version

    models_dir = load_or_exit(config, check_secrets=False).classifier.models_dir
    try:
        promote_version(models_dir, version, data, force=force)
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
