"""The compose model of docker/: one file, or the base file with an override, merged as Compose merges them.

Only the merge rules the files in docker/ rely on are implemented, and :func:`load` refuses anything else:
an override may add services, and add ``environment`` and ``depends_on`` entries to a base service (mappings
merge, an entry of the same name replaces the base's); a service may ``extends`` a service of another file
(the referenced definition, without its ``depends_on``, which Compose never copies, with the local keys
merged on top: mappings merge, anything else, such as ``command`` or ``healthcheck.test``, is replaced).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
BASE = DOCKER / "docker-compose.yaml"
CELERY = DOCKER / "docker-compose.celery.yaml"
#: The stacks the repository ships: the base file alone, and the CeleryExecutor variant on top of it.
VARIANTS: dict[str, tuple[Path, ...]] = {"default": (BASE,), "celery": (BASE, CELERY)}
#: What an override may set on a service the base file defines.
OVERRIDABLE = {"environment", "depends_on"}


#: ``$$`` (a literal ``$``), ``${X}``, ``${X-default}``, ``${X:-default}`` or ``$X``, left to right.
_VARIABLE = re.compile(r"\$\$|\$\{\w+(?::?-(?P<default>[^}]*))?\}|\$\w+")


def interpolate(value: str) -> str:
    """Compose's variable interpolation with every variable unset: ``${X:-d}`` -> d, ``$$`` -> ``$``."""
    return _VARIABLE.sub(lambda m: "$" if m.group() == "$$" else m.group("default") or "", value)


def merge(base: Any, local: Any) -> Any:
    """Mappings merge key by key (``local`` wins); anything else is replaced by ``local``."""
    if isinstance(base, dict) and isinstance(local, dict):
        return {**base, **{key: merge(base[key], value) if key in base else value for key, value in local.items()}}
    return copy.deepcopy(local)


def _extended(service: dict[str, Any], folder: Path) -> dict[str, Any]:
    if "extends" not in service:
        return service
    local = {key: value for key, value in service.items() if key != "extends"}
    spec = service["extends"]
    referenced = yaml.safe_load((folder / spec["file"]).read_text())["services"][spec["service"]]
    assert "extends" not in referenced, "extends chains are not modelled"
    return merge({key: value for key, value in referenced.items() if key != "depends_on"}, local)


def load(*files: Path) -> dict[str, Any]:
    """The top level (``services``, ``volumes``, …) of ``docker compose -f files[0] -f files[1] …``."""
    model: dict[str, Any] = {}
    for path in files:
        layer = yaml.safe_load(path.read_text())
        services = {name: _extended(spec, path.parent) for name, spec in layer.pop("services").items()}
        known = model.setdefault("services", {})
        for name, spec in services.items():
            if name in known:
                assert set(spec) <= OVERRIDABLE, f"{path.name}: {name} overrides {set(spec) - OVERRIDABLE}"
                known[name] = merge(known[name], spec)
            else:
                known[name] = spec
        for key, value in layer.items():
            model[key] = merge(model.get(key), value) if key in model else value
    return model
