"""``gateway init DIR``: a new site, ready to run: a commented config, the reply templates, the model, and var/.

The config (``gateway/site_config.toml``) is written with the site's absolute paths, so every command works from
any directory, and the gateway writes only below ``DIR/var`` (what ``deploy/gateway.service`` allows). Templates
and models come from a checkout of this repository (by default the one this gateway runs from).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from gateway.config.loader import load_config
from gateway.config.schema import MaildirTarget
from gateway.errors import GatewayError

SITE_CONFIG = Path(__file__).parent / "site_config.toml"
CHECKOUT = Path(__file__).resolve().parents[1]
TEMPLATE_GLOB = "*.txt.j2"


class SiteError(GatewayError):
    """The site cannot be written (it exists already, or the checkout lacks templates or a model)."""


def default_source() -> Path | None:
    """The checkout this gateway runs from, if it has the reply templates and a current model."""
    has_all = (CHECKOUT / "config" / "templates").is_dir() and (CHECKOUT / "models" / "CURRENT").is_file()
    return CHECKOUT if has_all else None


def _checked_source(source: Path) -> tuple[Path, Path, str]:
    """(templates dir, models dir, current model version) of a checkout, or SiteError saying what is missing."""
    templates, models = source / "config" / "templates", source / "models"
    if not sorted(templates.glob(TEMPLATE_GLOB)):
        raise SiteError(f"{templates}: no reply templates there (give --source, a checkout of the gateway)")
    try:
        version = (models / "CURRENT").read_text(encoding="utf-8").strip()
    except OSError:
        raise SiteError(f"{models / 'CURRENT'}: no current model (give --source, a checkout of the gateway)") from None
    if not (models / version).is_dir() or not (models / "steps").is_dir():
        raise SiteError(f"{models}: model {version} or the steps model is missing")
    return templates, models, version


def init_site(target: Path, source: Path, *, listen: str = "127.0.0.1") -> list[Path]:
    """Write a new site into ``target``; the paths written, the config first. Refuses to overwrite a site."""
    site = target.resolve()
    config_path = site / "gateway.toml"
    if config_path.exists():
        raise SiteError(f"{config_path} exists already: this is a site (nothing was changed)")
    templates, models, version = _checked_source(source)
    loop_id = "mail-gateway-" + (re.sub(r"[^a-z0-9]+", "-", site.name.lower()).strip("-") or "site")
    written = [config_path]
    site.mkdir(parents=True, exist_ok=True)
    text = SITE_CONFIG.read_text(encoding="utf-8").format(site=site, loop_id=loop_id, listen=listen)
    config_path.write_text(text, encoding="utf-8")
    (site / "templates").mkdir(exist_ok=True)
    for template in sorted(templates.glob(TEMPLATE_GLOB)):
        written.append(Path(shutil.copy2(template, site / "templates" / template.name)))
    (site / "models").mkdir(exist_ok=True)
    for name in (version, "steps"):
        written.append(Path(shutil.copytree(models / name, site / "models" / name, dirs_exist_ok=True)))
    (site / "models" / "CURRENT").write_text(version + "\n", encoding="utf-8")
    written.append(site / "models" / "CURRENT")
    config = load_config(config_path, check_secrets=False)  # what was written must be a valid configuration
    maildirs = [role.maildir for role in config.roles.values() if isinstance(role, MaildirTarget)]
    for maildir in [*maildirs, config.outbound.maildir or site / "var" / "mail" / "outgoing",
                    site / "var" / "mail" / "shadow"]:
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
    (site / "var").chmod(0o750)
    written.append(site / "var")
    return written
