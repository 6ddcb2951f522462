"""Request bodies of the management API (also the OpenAPI schemas)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.policy.decision import DecisionInput, Phase


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceIn(Strict):
    type: Literal["file", "http"]
    path: str | None = Field(None, description="Absolute path, for type=file")
    url: str | None = Field(None, description="Upstream URL, for type=http")


class PolicyIn(BaseModel):
    """ODRL rules of one offer; @id is generated when missing."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str | None = Field(None, alias="@id")
    permission: list[dict[str, Any]] | None = None
    prohibition: list[dict[str, Any]] | None = None
    obligation: list[dict[str, Any]] | None = None


class DatasetIn(Strict):
    id: str | None = Field(None, min_length=1, description="Generated when missing")
    title: str = ""
    description: str = ""
    keywords: list[str] = Field(default_factory=list, description="dcat:keyword")
    themes: list[str] = Field(
        default_factory=list, description="dcat:theme (a theme IRI or a short label)"
    )
    media_type: str = "application/octet-stream"
    classification: Literal["general", "important", "core"] = Field(
        "general", description="Data grading: core data is never offered outside its owner"
    )
    source: SourceIn
    offers: list[PolicyIn] = Field(
        default_factory=list, description="Defaults to one offer permitting 'use'"
    )


class DatasetUpdate(Strict):
    """What `PATCH /datasets/{id}` may change: the description, not the data or its offers
    (agreements were made on those: publish a new dataset to offer other terms)."""

    title: str | None = None
    description: str | None = None
    keywords: list[str] | None = Field(None, description="dcat:keyword")
    themes: list[str] | None = Field(None, description="dcat:theme")
    media_type: str | None = None
    classification: Literal["general", "important", "core"] | None = None


class CatalogIn(Strict):
    counterPartyAddress: str = Field(description="The provider's DSP base URL")
    counterPartyId: str | None = Field(None, description="Provider DID; derived from the address")
    querySpec: dict[str, Any] | None = Field(
        None,
        description="One page, as EDC's QuerySpec (offset, limit, filterExpression); without"
        " it every page of the provider's catalog is fetched",
    )


class NegotiationIn(Strict):
    counterPartyAddress: str
    counterPartyId: str | None = None
    datasetId: str = Field(min_length=1)
    offer: dict[str, Any] = Field(description="The offer as the catalog shows it (with @id)")
    purpose: str | None = Field(None, description="The purpose we declare to the provider")


class OfferIn(Strict):
    offer: dict[str, Any]


class TerminateIn(Strict):
    reason: str = "terminated by the operator"
    code: str | None = None


class TransferIn(Strict):
    agreementId: str = Field(min_length=1)
    format: Literal["HttpData-PULL", "HttpData-PUSH"] = "HttpData-PULL"
    purpose: str | None = Field(None, description="Default: the purpose declared at negotiation")


class EvalIn(Strict):
    """One decision input as it is, or a what-if: a published dataset and a consumer."""

    input: DecisionInput | None = Field(None, description="The decision contract's input")
    dataset: str | None = Field(None, min_length=1, description="What-if: a published dataset")
    offer_id: str | None = Field(None, description="What-if: which offer (default: the first)")
    consumer: str | None = Field(None, min_length=1, description="What-if: the consumer's DID")
    purpose: str | None = Field(None, description="What-if: the purpose the consumer declares")
    phase: Phase = Field(Phase.TRANSFER, description="What-if: the enforcement point")
    credentials: dict[str, Any] = Field(
        default_factory=dict,
        description='What-if: the consumer\'s verified claims, e.g. {"membership": true}',
    )
    request: dict[str, Any] = Field(
        default_factory=dict, description="What-if: more of the request, e.g. jurisdiction"
    )
    usage: dict[str, Any] = Field(
        default_factory=dict, description='What-if: usage so far, e.g. {"transfers": 2}'
    )

    @model_validator(mode="after")
    def _one_question(self) -> EvalIn:
        if (self.input is None) == (self.dataset is None):
            raise ValueError("give either input or dataset (with consumer)")
        if self.dataset is not None and self.consumer is None:
            raise ValueError("a what-if on a dataset needs consumer (a DID)")
        return self
