"""Taxonomies of verticals as data: one YAML file per taxonomy under config/taxonomies/.

Every client company may have its own taxonomy; several live side by side. A taxonomy with a
``tenant`` belongs to that tenant (the tenant of its API keys): only its keys see it, filter by it and
correct it; one without is shared by every key. A vertical can be
switched off (``enabled: false``) without deleting its labels from the index. The label contract
in post payloads, written by the classifier (a later service) and read by the query API:

    verticals:        [{"taxonomy": "default", "vertical": "food", "confidence": 0.93}, ...]
    vertical_labels:  ["default:food", ...]   # flat copy for facet counts
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.classification.calibration import LabelCalibration
from shared.config import PROJECT_ROOT

DEFAULT_TAXONOMY_DIR = PROJECT_ROOT / "config" / "taxonomies"
_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class Vertical(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1)
    enabled: bool = True
    # Tier-1 classification material: more ways to say what the vertical is, embedded as prototypes.
    keywords: list[str] = Field(default_factory=list, max_length=200)
    examples: list[str] = Field(default_factory=list, max_length=200)
    # Calibrated decision threshold on the tier-1 similarity (``make eval --calibrate`` writes it);
    # None = the classifier's default.
    threshold: float | None = Field(None, ge=-1.0, le=1.0)


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    # Bumped whenever verticals, descriptions, examples or thresholds change: labels carry it, so
    # a replay can tell which labels are stale and caches never mix versions.
    version: str = Field("1", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    description: str = ""
    tenant: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                               description="The tenant (of API keys) it belongs to; none = shared by every tenant.")
    verticals: list[Vertical] = Field(min_length=1)
    # Posts that belong to none of the verticals (greetings, giveaways, schedule news): tier 1 gives
    # no label to a post closer to these than to every vertical. Empty = every post gets its best.
    off_topic: list[str] = Field(default_factory=list, max_length=200)
    # Maps tier 1's raw confidence to how often such labels are right (shared/classification/calibration.py);
    # ``make eval --calibrate`` writes it. None = the raw confidence.
    calibration: LabelCalibration | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> Taxonomy:
        names = [v.name for v in self.verticals]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate verticals: {duplicates}")
        return self

    def vertical(self, name: str) -> Vertical | None:
        return next((v for v in self.verticals if v.name == name), None)

    def enabled_names(self) -> set[str]:
        return {v.name for v in self.verticals if v.enabled}


class TaxonomyError(ValueError):
    """A taxonomy file is missing, unreadable or invalid."""


class VerticalLabel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    taxonomy: str
    vertical: str
    confidence: float = Field(ge=0.0, le=1.0)
    version: str = "1"  # of the taxonomy the label was decided with
    tier: str = "embedding"  # "embedding" (tier 1) or "llm" (tier 2)


class TaxonomyCatalog:
    """Every taxonomy of a directory, loaded once (they change by deploy, not per request)."""

    def __init__(self, taxonomies: Iterable[Taxonomy]) -> None:
        self._by_name = {t.name: t for t in taxonomies}
        self._views: dict[str | None, TaxonomyCatalog] = {}

    @classmethod
    def load(cls, directory: Path = DEFAULT_TAXONOMY_DIR) -> TaxonomyCatalog:
        files = sorted(Path(directory).glob("*.yaml"))
        if not files:
            raise TaxonomyError(f"no taxonomy files (*.yaml) in {directory}")
        return cls(_load_file(path) for path in files)

    def all(self) -> list[Taxonomy]:
        return sorted(self._by_name.values(), key=lambda t: t.name)

    def get(self, name: str) -> Taxonomy | None:
        return self._by_name.get(name)

    def is_enabled(self, taxonomy: str, vertical: str) -> bool:
        found = self.get(taxonomy)
        return found is not None and vertical in found.enabled_names()

    def visible_to(self, tenant: str | None) -> TaxonomyCatalog:
        """The shared taxonomies and ``tenant``'s own: what its keys list, filter by, see labels of and correct."""
        view = self._views.get(tenant)
        if view is None:
            view = TaxonomyCatalog(t for t in self._by_name.values() if t.tenant is None or t.tenant == tenant)
            self._views[tenant] = view
        return view


def _load_file(path: Path) -> Taxonomy:
    try:
        taxonomy = Taxonomy.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise TaxonomyError(f"{path}: {exc}") from exc
    if taxonomy.name != path.stem:
        raise TaxonomyError(f"{path}: name {taxonomy.name!r} must match the file name {path.stem!r}")
    return taxonomy


def label_key(taxonomy: str, vertical: str) -> str:
    return f"{taxonomy}:{vertical}"


def split_label_key(key: str) -> tuple[str, str]:
    taxonomy, _, vertical = key.partition(":")
    return taxonomy, vertical


def verticals_payload(labels: Iterable[VerticalLabel]) -> dict:
    """The payload fields a classifier writes for a post (or account): labels and their flat keys."""
    labels = list(labels)
    return {
        "verticals": [label.model_dump() for label in labels],
        "vertical_labels": sorted({label_key(label.taxonomy, label.vertical) for label in labels}),
    }

