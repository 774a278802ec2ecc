"""``/models``: stored versions with per-set metrics and confusion matrices; retrain with corrections in the
background; promote (a version worse on any eval set needs a confirmation) and roll back."""
from __future__ import annotations

import subprocess
import sys
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.console.accounts import Account
from gateway.console.charts import confusion_matrix
from gateway.console.config_edit import record
from gateway.console.web import back, console, page, refuse, render, text
from gateway.errors import GatewayError, ModelError

PROMOTE_SECONDS = 300


def eval_sets(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per eval set: macro_f1, routed_precision, coverage, examples (and a confusion matrix if stored). A model
    from before per-set metrics has its frozen-test ``metrics`` only."""
    sets = metadata.get("sets")
    if isinstance(sets, dict) and sets:
        return {str(name): values for name, values in sets.items() if isinstance(values, dict)}
    metrics = metadata.get("metrics") or {}
    return {"frozen test": {"macro_f1": metrics.get("macro_f1"), "routed_precision": metrics.get("routed_precision"),
                            "coverage": metrics.get("coverage"), "examples": metrics.get("n")}}


def worse_sets(new: dict[str, Any], old: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(set, new macro-F1, current macro-F1) for every eval set both were scored on where the new one is worse."""
    old_sets, out = eval_sets(old), []
    for name, values in eval_sets(new).items():
        before, after = (old_sets.get(name) or {}).get("macro_f1"), values.get("macro_f1")
        if isinstance(before, (int, float)) and isinstance(after, (int, float)) and after < before:
            out.append((name, float(after), float(before)))
    return out


def _versions(models_dir: Any) -> tuple[list[dict[str, Any]], str | None]:
    from classifier.registry import current_version, list_versions, read_metadata

    try:
        current: str | None = current_version(models_dir)
    except ModelError:
        current = None
    rows = []
    for version in reversed(list_versions(models_dir)):
        try:
            rows.append(read_metadata(models_dir, version))
        except ModelError as exc:
            rows.append({"version": version, "error": str(exc)})
    return rows, current


def _plot(values: dict[str, Any], title: str) -> Any:
    matrix = values.get("confusion")
    if not isinstance(matrix, dict) or not matrix.get("labels") or not matrix.get("matrix"):
        return None
    return confusion_matrix([str(label) for label in matrix["labels"]], matrix["matrix"], title)


@page()
def model_list(request: Request, user: Account, form: FormData | None) -> Response:
    here = console(request)
    versions, current = _versions(here.models_dir)
    for meta in versions:
        meta["eval_sets"] = eval_sets(meta) if "error" not in meta else {}
        meta["plots"] = {name: _plot(values, f"{meta['version']}: {name}")
                         for name, values in meta["eval_sets"].items()}
    return render(request, "models.html", versions=versions, current=current, running=here.model_version(),
                  job=here.jobs.current)


@page()
def train(request: Request, user: Account, form: FormData | None) -> Response:
    here = console(request)
    try:
        here.jobs.start(here.config_path, here.db.url, user.name)
    except GatewayError as exc:
        return refuse(request, 409, str(exc))
    return back(request, "/models/training", "Training started.")


@page()
def training(request: Request, user: Account, form: FormData | None) -> Response:
    return render(request, "training.html", job=console(request).jobs.current)


@page()
def promote(request: Request, user: Account, form: FormData | None) -> Response:
    from classifier.registry import read_metadata

    here, version = console(request), request.path_params["version"]
    versions, current = _versions(here.models_dir)
    known = {meta["version"]: meta for meta in versions if "error" not in meta}
    if version not in known:
        return refuse(request, 404, "No stored model has this version.")
    confirmed = text(form, "confirm") == "yes"
    worse = worse_sets(known[version], read_metadata(here.models_dir, current)) if current in known else []
    if worse and not confirmed:
        return render(request, "promote_confirm.html", version=version, current=current, worse=worse, refusal=None)
    command = [sys.executable, "-m", "gateway", "model", "promote", version, "--config", str(here.config_path),
               *(["--force"] if confirmed else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=PROMOTE_SECONDS, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        refusal = (done.stderr.strip() or done.stdout.strip())[-2000:]
        return render(request, "promote_confirm.html", version=version, current=current, worse=worse,
                      refusal=refusal, status=409)
    record(here.db, user.name, "model", f"promoted {version}" + (" (confirmed although worse)" if worse else ""),
           f"CURRENT: {current} -> {version}\n")
    return back(request, "/models", f"{version} is the current model. {here.apply()}")


@page()
def rollback(request: Request, user: Account, form: FormData | None) -> Response:
    from classifier.registry import current_version
    from classifier.registry import rollback as roll_back

    here = console(request)
    try:
        before = current_version(here.models_dir)
        version = roll_back(here.models_dir)
    except ModelError as exc:
        return refuse(request, 409, str(exc))
    record(here.db, user.name, "model", f"rolled back to {version}", f"CURRENT: {before} -> {version}\n")
    return back(request, "/models", f"{version} is the current model again. {here.apply()}")


ROUTES = [Route("/models", model_list), Route("/models/train", train, methods=["POST"]),
          Route("/models/training", training), Route("/models/rollback", rollback, methods=["POST"]),
          Route("/models/{version:str}/promote", promote, methods=["POST"])]
