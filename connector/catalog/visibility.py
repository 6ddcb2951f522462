"""Which datasets and offers a caller may see: the catalog-phase policy decisions.

Every offer is decided for the caller. When the policy library cannot tell datasets apart
beyond their classification and owner (connector/policy/reads.py), offers with the same rules
on datasets of the same class share one decision, so a catalog of 1,000 datasets with a few
distinct policies costs a few decisions instead of 1,000. A shared denial is decided again
per dataset, so the decision log names each hidden dataset with its own reasons.
"""

from __future__ import annotations

import json
from typing import Any

from connector.model.records import Dataset
from connector.policy.decision import Decision, DecisionInput, DecisionPoint, Party, Phase
from connector.policy.inputs import dataset_facts

Ask = tuple[Dataset, dict[str, Any]]


def _ask(
    provider: str, consumer: Party, facts: dict[str, Any], offer: dict[str, Any]
) -> DecisionInput:
    return DecisionInput(
        phase=Phase.CATALOG,
        provider=Party(id=provider),
        consumer=consumer,
        dataset=facts,
        policy=offer,
    )


def _group_key(dataset: Dataset, offer: dict[str, Any]) -> str:
    rules = {k: offer.get(k) for k in ("permission", "prohibition", "obligation")}
    return json.dumps([dataset.classification, rules], sort_keys=True)


async def _decide_each(
    decisions: DecisionPoint, provider: str, consumer: Party, asks: list[Ask]
) -> list[Decision]:
    inputs = [_ask(provider, consumer, dataset_facts(d, d.id, provider), o) for d, o in asks]
    return await decisions.decide_many(inputs) if inputs else []


async def _decide_shared(
    decisions: DecisionPoint, provider: str, consumer: Party, asks: list[Ask]
) -> list[Decision]:
    groups: dict[str, list[int]] = {}
    for n, (d, o) in enumerate(asks):
        groups.setdefault(_group_key(d, o), []).append(n)
    inputs = []
    for members in groups.values():
        dataset, offer = asks[members[0]]
        facts = dataset_facts(dataset, dataset.id, provider)
        if len(members) > 1:  # shared: the id would name one dataset of many
            facts.pop("id")
        inputs.append(_ask(provider, consumer, facts, offer))
    out: list[Decision | None] = [None] * len(asks)
    denied: list[int] = []
    for members, decision in zip(groups.values(), await decisions.decide_many(inputs), strict=True):
        for n in members:
            out[n] = decision
        if not decision.allow and len(members) > 1:
            denied += members
    again = await _decide_each(decisions, provider, consumer, [asks[n] for n in denied])
    for n, decision in zip(denied, again, strict=True):
        out[n] = decision
    return [d for d in out if d is not None]


async def visible(
    decisions: DecisionPoint, provider: str, consumer: Party, datasets: list[Dataset]
) -> list[Dataset]:
    """The datasets the caller may see, each with only the offers it may see."""
    asks: list[Ask] = [(d, offer) for d in datasets for offer in d.offers]
    if getattr(decisions, "reads_dataset_id", True):
        results = await _decide_each(decisions, provider, consumer, asks)
    else:
        results = await _decide_shared(decisions, provider, consumer, asks)
    allowed: dict[str, list[dict[str, Any]]] = {}
    for (d, offer), decision in zip(asks, results, strict=True):
        if decision.allow:
            allowed.setdefault(d.id, []).append(offer)
    return [d.model_copy(update={"offers": allowed[d.id]}) for d in datasets if d.id in allowed]
