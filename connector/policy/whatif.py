"""What-if decisions and replays: the operator's questions to the policy, never logged.

`hypothetical_input` builds the input an enforcement point would build for a published
dataset and a consumer that has not asked yet; `replay` decides a logged input again with
today's policies, to see what a policy change would have changed.
"""

from __future__ import annotations

from typing import Any

from connector.errors import BadRequest, NotFound
from connector.model.records import Dataset, DecisionRecord
from connector.policy.decision import Decision, DecisionInput, Party, Phase
from connector.policy.inputs import dataset_facts


def offer_of(dataset: Dataset, offer_id: str | None) -> dict[str, Any]:
    """The dataset's offer by id, or its first; NotFound naming the offers it has."""
    if not dataset.offers:
        raise BadRequest(f"dataset {dataset.id} has no offer")
    if offer_id is None:
        return dataset.offers[0]
    for offer in dataset.offers:
        if offer.get("@id") == offer_id:
            return offer
    ids = ", ".join(str(o.get("@id")) for o in dataset.offers)
    raise NotFound(f"dataset {dataset.id} has no offer {offer_id} (its offers: {ids})")


def hypothetical_input(
    dataset: Dataset,
    offer: dict[str, Any],
    *,
    provider: str,
    consumer: str,
    phase: Phase,
    purpose: str | None,
    credentials: dict[str, Any],
    request: dict[str, Any],
    usage: dict[str, Any],
) -> DecisionInput:
    """The input the enforcement point of `phase` would build, with no usage so far unless
    `usage` says otherwise (e.g. {"transfers": 2, "bytes": 80000000})."""
    return DecisionInput(
        phase=phase,
        provider=Party(id=provider),
        consumer=Party(id=consumer, credentials=credentials),
        dataset=dataset_facts(dataset, dataset.id, provider),
        policy=offer,
        request={"purpose": purpose, "bytes": 0, "records": 0, **request},
        usage={"bytes": 0, "records": 0, "transfers": 0, "uses": 0, **usage},
    )


def logged_input(record: DecisionRecord) -> DecisionInput:
    """The logged decision's input, or NotFound when the log no longer keeps it."""
    if record.input is None:
        raise NotFound(
            f"decision {record.seq}: its input is no longer kept (only its digest"
            f" {record.input_sha256[:12]}); see the setting decision_log_input_days"
        )
    return DecisionInput.model_validate(record.input)


def comparison(record: DecisionRecord, now: Decision, version: str) -> dict[str, Any]:
    """Then and now, side by side, and whether the answer changed."""
    then = {
        "allow": record.allow,
        "reasons": record.reasons,
        "obligations": record.obligations,
        "limits": record.limits,
        "engine": record.engine,
        "policy_version": record.policy_version,
        "at": record.at,
    }
    today = now.model_dump() | {"policy_version": version}
    return {
        "seq": record.seq,
        "phase": record.phase,
        "dataset_id": record.dataset_id,
        "consumer_id": record.consumer_id,
        "logged": then,
        "replayed": today,
        "changed": then["allow"] != today["allow"] or then["reasons"] != today["reasons"],
    }
