"""``gateway train-steps``: rebuild the shipped steps model (``models/steps/``) reproducibly and print its metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from classifier.paths import S2R_FILE, STEPS_DATA_DIR
from gateway.cli.options import DEFAULT_CONFIG, ConfigOption, load_or_exit

app = typer.Typer()


def _table(title: str, rows: dict[str, dict[str, Any]]) -> str:
    cells = ", ".join(f"{lang} P {m['precision']:.3f} R {m['recall']:.3f} (n {m['n']})" for lang, m in rows.items())
    return f"  {title:<22} {cells}"


@app.command("train-steps")
def train_steps_command(
    config: ConfigOption = DEFAULT_CONFIG,
    s2r: Annotated[Path, typer.Option(help="The S2R bug-report gold set (train.jsonl.gz).")] = S2R_FILE,
    data: Annotated[Path, typer.Option(help="Directory of our own de/nl *.jsonl steps examples.")] = STEPS_DATA_DIR,
    out: Annotated[Optional[Path], typer.Option(help="Where to write (default: <models_dir>/steps).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (fixed for a reproducible model).")] = 0,
) -> None:
    """Train the has_steps model, choose rules + threshold out-of-fold, report held-out precision/recall."""
    from classifier.corpus import files_digest
    from classifier.registry import sha256_of
    from classifier.steps import load_own, load_s2r, save_steps_model, train_steps
    from gateway.replies.completeness import STEP_RULES, STEPS_MODEL_DIR

    target = out or load_or_exit(config, check_secrets=False).classifier.models_dir / STEPS_MODEL_DIR
    if not s2r.is_file():
        typer.echo(f"error: {s2r} not found (see ../shared/data/README.md)", err=True)
        raise typer.Exit(2)
    pipeline, metadata = train_steps(load_own(data) + load_s2r(s2r), STEP_RULES, seed)
    metadata["data"] = {"s2r": {s2r.name: sha256_of(s2r)}, "own": files_digest(data)}
    save_steps_model(target, pipeline, metadata)
    held_out = metadata["metrics"]["held_out"]
    typer.echo(f"steps model written to {target}: rules {metadata['rules'] or 'none'} "
               f"OR probability ≥ {metadata['threshold']}")
    for name in ("combined", "model_only", "all_rules_only"):
        typer.echo(_table(name, held_out[name]))
