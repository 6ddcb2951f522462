"""The DSP TCK's test cases as data: which ids it uses, and how our side behaves in each.

The TCK (Eclipse Dataspace TCK for DSP 2025-1) drives the connector under test with fixed
dataset ids (negotiations) and agreement ids (transfers). For each case it expects a given
behaviour from our side: offer, agree, terminate, suspend... A script is a table
(state, n-th time in that state) -> action; a state with no entry means "wait for the TCK".
"""

from __future__ import annotations

TCK_PARTICIPANT = "TCK_PARTICIPANT"
"""The participant id the TCK acts as (DspConstants.TCK_PARTICIPANT_ID)."""

OFFER_PREFIX = "CD123"

Script = dict[tuple[str, int], str]

# We are the provider; the TCK sends ContractRequestMessage for these datasets.
PROVIDER_NEGOTIATIONS: dict[str, Script] = {
    "ACN0101": {("REQUESTED", 1): "offer"},
    "ACN0102": {("REQUESTED", 1): "offer", ("REQUESTED", 2): "terminate"},
    "ACN0103": {
        ("REQUESTED", 1): "offer",
        ("ACCEPTED", 1): "agree",
        ("VERIFIED", 1): "finalize",
    },
    "ACN0104": {("REQUESTED", 1): "agree", ("VERIFIED", 1): "finalize"},
    "ACN0201": {("REQUESTED", 1): "terminate"},
    "ACN0202": {},
    "ACN0203": {("REQUESTED", 1): "agree"},
    "ACN0204": {("REQUESTED", 1): "offer"},
    "ACN0205": {("REQUESTED", 1): "offer", ("OFFERED", 1): "terminate"},
    "ACN0206": {("REQUESTED", 1): "offer", ("ACCEPTED", 1): "terminate"},
    "ACN0207": {("REQUESTED", 1): "agree", ("VERIFIED", 1): "terminate"},
    "ACN0301": {("REQUESTED", 1): "agree", ("VERIFIED", 1): "finalize"},
    "ACN0302": {("REQUESTED", 1): "offer"},
    "ACN0303": {("REQUESTED", 1): "offer"},
    "ACN0304": {("REQUESTED", 1): "offer"},
}

# We are the consumer; the TCK asks us (webhook) to negotiate these datasets with it.
CONSUMER_NEGOTIATIONS: dict[str, Script] = {
    "ACNC0101": {("OFFERED", 1): "accept", ("AGREED", 1): "verify"},
    "ACNC0102": {("OFFERED", 1): "request"},
    "ACNC0103": {("OFFERED", 1): "terminate"},
    "ACNC0104": {("AGREED", 1): "verify"},
    "ACNC0201": {},
    "ACNC0202": {("REQUESTED", 1): "terminate"},
    "ACNC0203": {("AGREED", 1): "terminate"},
    "ACNC0204": {},
    "ACNC0205": {("OFFERED", 1): "accept"},
    "ACNC0206": {("AGREED", 1): "verify"},
    "ACNC0301": {},
    "ACNC0302": {},
    "ACNC0303": {},
    "ACNC0304": {("OFFERED", 1): "accept"},
    "ACNC0305": {("OFFERED", 1): "accept"},
    "ACNC0306": {("OFFERED", 1): "accept"},
}

_START: Script = {("REQUESTED", 1): "start"}

# We are the provider; the TCK requests transfers under these (seeded) agreements.
PROVIDER_TRANSFERS: dict[str, Script] = {
    "ATP0101": {("REQUESTED", 1): "start", ("STARTED", 1): "terminate"},
    "ATP0102": {("REQUESTED", 1): "start", ("STARTED", 1): "complete"},
    "ATP0103": {
        ("REQUESTED", 1): "start",
        ("STARTED", 1): "suspend",
        ("SUSPENDED", 1): "terminate",
    },
    "ATP0104": {
        ("REQUESTED", 1): "start",
        ("STARTED", 1): "suspend",
        ("SUSPENDED", 1): "start",
        ("STARTED", 2): "complete",
    },
    "ATP0105": {("REQUESTED", 1): "terminate"},
    "ATP0201": _START,
    "ATP0202": _START,
    "ATP0203": _START,
    "ATP0204": _START,
    "ATP0205": {},
    "ATP0301": {},
    "ATP0302": {},
    "ATP0303": _START,
    "ATP0304": _START,
    "ATP0305": _START,
    "ATP0306": _START,
}

# We are the consumer; the TCK asks us (webhook) to request transfers under these agreements.
CONSUMER_TRANSFERS: dict[str, Script] = {
    "ATPC0101": {},
    "ATPC0102": {},
    "ATPC0103": {},
    "ATPC0104": {},
    "ATPC0105": {},
    "ATPC0201": {("STARTED", 1): "terminate"},
    "ATPC0202": {("STARTED", 1): "complete"},
    "ATPC0203": {("STARTED", 1): "suspend", ("SUSPENDED", 1): "terminate"},
    "ATPC0204": {
        ("STARTED", 1): "suspend",
        ("SUSPENDED", 1): "start",
        ("STARTED", 2): "complete",
    },
    "ATPC0205": {("REQUESTED", 1): "terminate"},
    "ATPC0301": {},
    "ATPC0302": {},
    "ATPC0303": {},
    "ATPC0304": {},
    "ATPC0305": {},
    "ATPC0306": {},
}

CATALOG_DATASETS = ("CAT0101", "CAT0102")
"""Published for the catalog cases; CAT0103 is the TCK's "unknown dataset"."""

TRANSFER_FORMAT = "HttpData-PULL"


def offer_id(dataset_id: str) -> str:
    return f"{OFFER_PREFIX}:{dataset_id}:456"


def tck_properties() -> dict[str, str]:
    """The TCK's per-case configuration keys (CN_01_01_DATASETID, TP_C_02_03_AGREEMENTID, ...)."""
    props: dict[str, str] = {}
    for dataset in PROVIDER_NEGOTIATIONS:
        key = f"CN_{dataset[3:5]}_{dataset[5:7]}"
        props[f"{key}_DATASETID"] = dataset
        props[f"{key}_OFFERID"] = offer_id(dataset)
    for dataset in CONSUMER_NEGOTIATIONS:
        props[f"CN_C_{dataset[4:6]}_{dataset[6:8]}_DATASETID"] = dataset
    for agreement in PROVIDER_TRANSFERS:
        key = f"TP_{agreement[3:5]}_{agreement[5:7]}"
        props[f"{key}_AGREEMENTID"] = agreement
        props[f"{key}_FORMAT"] = TRANSFER_FORMAT
    for agreement in CONSUMER_TRANSFERS:
        key = f"TP_C_{agreement[4:6]}_{agreement[6:8]}"
        props[f"{key}_AGREEMENTID"] = agreement
        props[f"{key}_FORMAT"] = TRANSFER_FORMAT
    for n, dataset in enumerate((*CATALOG_DATASETS, "CAT0103"), start=1):
        props[f"CAT_01_0{n}_DATASETID"] = dataset
    return props
