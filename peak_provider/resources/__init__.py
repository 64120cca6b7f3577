"""The resource catalogue: which objects each Peak application accepts, and their schemas.

One JSON file per application lives beside this module (``inventory.json``, ``b2c_pricing.json``,
``b2b_pricing.json``, ``rebuy_replenishment.json``). They are the single declarative source for field
names, types, required/nullable flags, primary keys, foreign keys and the default operation. The five
resources documented by the seed pages (products, customer_orders, manufacturing_orders, purchase_order,
sale) follow those pages exactly; the rest come from the public catalogue (``provenance`` says which).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources as _pkg_resources

from peak_provider.api import OPERATIONS

FIELD_TYPES = ("string", "integer", "float", "boolean", "timestamp", "date", "json")
__all__ = ["FIELD_TYPES", "OPERATIONS", "TIMESTAMP_FORMATS"]  # OPERATIONS: re-exported from peak_provider.api

#: Wire formats for ``timestamp`` fields, by the name users put in the ``timestamp_format`` extra.
TIMESTAMP_FORMATS = ("YYYY-MM-DD HH:MM:SS", "YYYY-MM-DDTHH:MM:SSZ", "YYYY-MM-DD HH:MM:SS+00:00")


class CatalogueError(ValueError):
    """An unknown application or resource, or a dependency cycle."""


@dataclass(frozen=True)
class Field:
    """One attribute of a resource.

    :param required: the key must be present in every row.
    :param nullable: the value may be ``null``.
    """

    name: str
    type: str
    required: bool
    nullable: bool


@dataclass(frozen=True)
class ForeignKey:
    field: str
    references: str


@dataclass(frozen=True)
class Resource:
    """A Peak object: ``object`` is the base name the API prefixes and suffixes (``PRODUCTS``)."""

    name: str
    object: str
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...]
    default_operation: str
    provenance: str

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True)
class Application:
    """A schema family (``inventory``, ``b2c_pricing``, …) and its timestamp wire format."""

    name: str
    description: str
    timestamp_format: str
    resources: dict[str, Resource]

    def timestamp_format_with(self, override: str | None) -> str:
        """The wire format of timestamps: a connection's (or solution's) ``override``, else the application's."""
        return override or self.timestamp_format

    def resource(self, name: str) -> Resource:
        """Look a resource up by its lowercase name; the error lists the known ones."""
        try:
            return self.resources[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self.resources))
            raise CatalogueError(
                f"Unknown resource {name!r} for application {self.name!r}. Known resources: {known}"
            ) from None


APPLICATIONS = ("inventory", "b2c_pricing", "b2b_pricing", "rebuy_replenishment")


@cache
def get_application(name: str) -> Application:
    """Load one application's catalogue (cached)."""
    if name not in APPLICATIONS:
        raise CatalogueError(f"Unknown application {name!r}. Known applications: {', '.join(APPLICATIONS)}")
    raw = json.loads(_pkg_resources.files(__package__).joinpath(f"{name}.json").read_text("utf-8"))
    resources = {
        r["name"]: Resource(
            name=r["name"],
            object=r["object"],
            fields=tuple(Field(f["name"], f["type"], f["required"], f["nullable"]) for f in r["fields"]),
            primary_key=tuple(r["primary_key"]),
            foreign_keys=tuple(ForeignKey(fk["field"], fk["references"]) for fk in r["foreign_keys"]),
            default_operation=r["default_operation"],
            provenance=r["provenance"],
        )
        for r in raw["resources"]
    }
    return Application(
        name=name,
        description=raw["description"],
        timestamp_format=raw["timestamp_format"],
        resources=resources,
    )


def load_order(application: str | Application, resources: Iterable[str]) -> list[str]:
    """Order ``resources`` so every resource comes after the ones its foreign keys reference.

    Only references among the given resources count (a load without ``suppliers`` does not wait for
    it); self-references (a category's parent category) are ignored. Ties keep the caller's order.
    """
    app = application if isinstance(application, Application) else get_application(application)
    names = list(dict.fromkeys(r.lower() for r in resources))
    deps = {
        n: {fk.references for fk in app.resource(n).foreign_keys if fk.references in names and fk.references != n}
        for n in names
    }
    ordered: list[str] = []
    while deps:
        ready = [n for n in names if n in deps and not deps[n]]
        if not ready:
            cycle = ", ".join(f"{n} -> {sorted(d)}" for n, d in deps.items())
            raise CatalogueError(f"Foreign keys form a cycle among {sorted(deps)}: {cycle}")
        for n in ready:
            ordered.append(n)
            del deps[n]
        for d in deps.values():
            d.difference_update(ready)
    return ordered


def applications_with(resources: Iterable[str]) -> list[Application]:
    """Every application whose catalogue has all of ``resources``, in :data:`APPLICATIONS` order.

    :raises CatalogueError: a name no application knows (the error lists each application's resources),
        or no single application has them all.
    """
    names = list(dict.fromkeys(r.lower() for r in resources))
    apps = [get_application(name) for name in APPLICATIONS]
    for name in names:
        if not any(name in app.resources for app in apps):
            known = "; ".join(f"{app.name}: {', '.join(sorted(app.resources))}" for app in apps)
            raise CatalogueError(f"Unknown resource {name!r} in every application. Known resources: {known}")
    found = [app for app in apps if all(name in app.resources for name in names)]
    if not found:
        raise CatalogueError(f"No single application has all of {', '.join(names)}; pass application=")
    return found
