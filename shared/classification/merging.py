"""How labels of different tiers merge on a post: a tier-1 label gives way to an LLM's opinion or a
person's correction of the same taxonomy version, and a correction replaces only what it names.

The indexer applies these when it writes a point (services/indexer/core.py); they are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.classification.taxonomy import VerticalLabel
from shared.events import PostCorrection, PostRelabel

LabelChange = PostCorrection | PostRelabel


def replace_taxonomy_labels(labels: Sequence[VerticalLabel], taxonomy: str,
                            replacement: Sequence[VerticalLabel]) -> list[VerticalLabel]:
    return [label for label in labels if label.taxonomy != taxonomy] + list(replacement)


def keep_second_opinions(new: Sequence[VerticalLabel], stored: Sequence[VerticalLabel],
                         versions: Mapping[str, str]) -> list[VerticalLabel]:
    """Re-indexing the same text (a views update, a redelivery) must not forget what an LLM or a person
    said: their labels of still-current taxonomy versions replace the fresh tier-1 labels of that
    taxonomy (a person's correction also keeps the taxonomy's other labels it left in place)."""
    corrected = {label.taxonomy for label in stored if label.tier == "human"}
    opinions = [label for label in stored if (label.tier == "llm" or label.taxonomy in corrected)
                and versions.get(label.taxonomy) == label.version]
    labels = list(new)
    for taxonomy in {label.taxonomy for label in opinions}:
        labels = replace_taxonomy_labels(labels, taxonomy, [o for o in opinions if o.taxonomy == taxonomy])
    return labels


def label_change_result(change: LabelChange, labels: Sequence[VerticalLabel],
                        versions: Mapping[str, str]) -> list[VerticalLabel]:
    if isinstance(change, PostRelabel):
        return keep_second_opinions(change.labels, labels, versions)
    return apply_correction(labels, change, versions.get(change.taxonomy, change.taxonomy_version))


def apply_correction(labels: Sequence[VerticalLabel], correction: PostCorrection, version: str) -> list[VerticalLabel]:
    """The post's labels after a person said ``vertical`` is wrong (and maybe what is right): the wrong
    one goes, the right one is added as the person's; the taxonomy's other labels stay."""
    dropped = {correction.vertical, correction.correct_vertical}
    kept = [label for label in labels if label.taxonomy == correction.taxonomy and label.vertical not in dropped]
    if correction.correct_vertical is not None:
        kept.append(VerticalLabel(taxonomy=correction.taxonomy, vertical=correction.correct_vertical, confidence=1.0,
                                  version=version, tier="human"))
    return replace_taxonomy_labels(labels, correction.taxonomy, kept)
