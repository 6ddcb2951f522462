"""Every DSP 2025-1 message as a pydantic model; compact JSON with exactly the DSP context."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.errors import BadRequest
from connector.model import jsonld

DSP_CONTEXT = jsonld.DSP_CONTEXT
DSPACE_NS = "https://w3id.org/dspace/2025/1/"
CONTEXT = [DSP_CONTEXT]
# Our profile namespace for terms DSP lacks (docs/profile.md); absolute IRIs keep the
# messages valid JSON-LD under the DSP context alone.
NS = "https://w3id.org/tdsc/v1/"
PROVIDER_SIGNATURE = NS + "providerSignature"
CONSUMER_SIGNATURE = NS + "consumerSignature"
PURPOSE = NS + "purpose"  # the consumer's declared purpose, on requests
# Catalog terms for the federated catalog (docs/profile.md, docs/federated-catalog.md)
CLASSIFICATION = NS + "classification"  # on a Dataset: general | important | core
CATALOG_DIGEST = NS + "catalogDigest"  # on a Catalog, and in the IfChanged filter
CATALOG_UNCHANGED = NS + "unchanged"  # on a Catalog answered to a matching IfChanged filter
IF_CHANGED = NS + "IfChanged"  # @type of our catalog filter element
FOAF_NAME = "http://xmlns.com/foaf/0.1/name"  # the publisher's name (DCAT's choice)

NonEmpty = Annotated[str, Field(min_length=1)]

# Longest process, agreement, offer or dataset id accepted from a peer (ours are 45 chars).
MAX_ID = 256


def _identifier(value: str) -> str:
    """An id a peer chooses and we store, log and echo: bounded and printable, no whitespace,
    control characters or NUL."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_ID:
        raise ValueError(f"must be at most {MAX_ID} characters")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("must be printable, without whitespace or control characters")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]


class Message(BaseModel):
    """Base of every message: `@context` must contain the DSP 2025-1 context."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    TYPE: ClassVar[str] = ""

    context: list[str] = Field(default_factory=lambda: list(CONTEXT), alias="@context")
    type: str = Field("", alias="@type", validate_default=True)

    @field_validator("context", mode="before")
    @classmethod
    def _context(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or DSP_CONTEXT not in value:
            raise ValueError(f"@context must be an array containing {DSP_CONTEXT}")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not value:
            return cls.TYPE
        if cls.TYPE and value != cls.TYPE:
            raise ValueError(f"@type must be {cls.TYPE}")
        return value

    def dump(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, exclude_none=True)
        data["@context"] = list(CONTEXT)
        return data


M = TypeVar("M", bound=Message)


def parse(model: type[M], body: object) -> M:
    """Validate an incoming body as `model` or raise BadRequest naming every problem."""
    if not isinstance(body, dict):
        raise BadRequest("message body must be a JSON object")
    if "@type" not in body:
        raise BadRequest(f"@type is required (expected {model.TYPE})")
    if not jsonld.is_dsp_form(body.get("@context")):
        if "@context" not in body and not _expanded(body):
            raise BadRequest(f"@context is required and must contain {DSP_CONTEXT}")
        body = _normalised(model, body)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()
        ]
        raise BadRequest(f"invalid {model.TYPE}: " + "; ".join(problems), reasons=problems) from exc


def _expanded(body: dict[str, Any]) -> bool:
    """Expanded JSON-LD needs no @context: its @type is an absolute IRI."""
    kinds = body.get("@type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return any(isinstance(k, str) and k.startswith(DSPACE_NS) for k in kinds)


def _normalised(model: type[Message], body: dict[str, Any]) -> dict[str, Any]:
    """Another JSON-LD form of the message, in the DSP form (connector/model/jsonld.py)."""
    out = jsonld.to_dsp_form(body)
    if out.get("@type") != model.TYPE:
        raise BadRequest(
            f"@type must be {model.TYPE}: under its @context the message's @type is"
            f" {out.get('@type', 'missing')}"
        )
    return out


class Policy(BaseModel):
    """An ODRL Offer or Agreement as carried in DSP: rules kept as given."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: Identifier = Field(alias="@id")
    type: Literal["Offer", "Agreement"] = Field("Offer", alias="@type")
    target: Identifier | None = None
    permission: list[dict[str, Any]] | None = None
    prohibition: list[dict[str, Any]] | None = None
    obligation: list[dict[str, Any]] | None = None
    assigner: str | None = None
    assignee: str | None = None
    timestamp: str | None = None

    def rules(self) -> dict[str, Any]:
        """Only the rule lists: what two offers must share to be the same terms."""
        data = self.model_dump(by_alias=True, exclude_none=True)
        return {k: data[k] for k in ("permission", "prohibition", "obligation") if k in data}


# Catalog -----------------------------------------------------------------------------------


class CatalogRequestMessage(Message):
    TYPE = "CatalogRequestMessage"
    filter: list[Any] | None = None


class DatasetRequestMessage(Message):
    TYPE = "DatasetRequestMessage"
    dataset: NonEmpty


class CatalogError(Message):
    TYPE = "CatalogError"
    code: str | None = None
    reason: list[str] | None = None


# Contract negotiation ----------------------------------------------------------------------


class ContractRequestMessage(Message):
    TYPE = "ContractRequestMessage"
    consumerPid: Identifier
    providerPid: Identifier | None = None
    offer: Policy
    callbackAddress: str | None = None

    @field_validator("offer")
    @classmethod
    def _offer(cls, value: Policy) -> Policy:
        if value.type != "Offer":
            raise ValueError("offer must have @type Offer")
        if not value.target:
            raise ValueError("offer.target (the dataset id) is required")
        return value


class ContractOfferMessage(Message):
    TYPE = "ContractOfferMessage"
    providerPid: Identifier
    consumerPid: Identifier | None = None
    offer: Policy
    callbackAddress: str | None = None


class ContractAgreementMessage(Message):
    TYPE = "ContractAgreementMessage"
    providerPid: Identifier
    consumerPid: Identifier
    agreement: Policy
    callbackAddress: str | None = None

    @field_validator("agreement")
    @classmethod
    def _agreement(cls, value: Policy) -> Policy:
        missing = [f for f in ("target", "assigner", "assignee") if not getattr(value, f)]
        if value.type != "Agreement" or missing:
            raise ValueError("agreement needs @type Agreement, target, assigner and assignee")
        return value


class ContractAgreementVerificationMessage(Message):
    TYPE = "ContractAgreementVerificationMessage"
    providerPid: Identifier
    consumerPid: Identifier


class ContractNegotiationEventMessage(Message):
    TYPE = "ContractNegotiationEventMessage"
    providerPid: Identifier
    consumerPid: Identifier
    eventType: Literal["ACCEPTED", "FINALIZED"]


class ContractNegotiationTerminationMessage(Message):
    TYPE = "ContractNegotiationTerminationMessage"
    providerPid: Identifier
    consumerPid: Identifier
    code: str | None = None
    reason: list[Any] | None = None


class ContractNegotiation(Message):
    TYPE = "ContractNegotiation"
    providerPid: str
    consumerPid: str
    state: str


class ContractNegotiationError(Message):
    TYPE = "ContractNegotiationError"
    providerPid: str | None = None
    consumerPid: str | None = None
    code: str | None = None
    reason: list[str] | None = None


# Transfer process --------------------------------------------------------------------------


class EndpointProperty(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    type: str = Field("EndpointProperty", alias="@type")
    name: NonEmpty
    value: str


class DataAddress(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    type: Literal["DataAddress"] = Field("DataAddress", alias="@type")
    endpointType: NonEmpty
    endpoint: str | None = None
    endpointProperties: list[EndpointProperty] | None = None

    def property(self, name: str) -> str | None:
        for prop in self.endpointProperties or []:
            if prop.name == name:
                return prop.value
        return None


class TransferRequestMessage(Message):
    TYPE = "TransferRequestMessage"
    consumerPid: Identifier
    agreementId: Identifier
    format: NonEmpty
    callbackAddress: NonEmpty
    dataAddress: DataAddress | None = None


class TransferStartMessage(Message):
    TYPE = "TransferStartMessage"
    providerPid: Identifier
    consumerPid: Identifier
    dataAddress: DataAddress | None = None


class TransferCompletionMessage(Message):
    TYPE = "TransferCompletionMessage"
    providerPid: Identifier
    consumerPid: Identifier


class TransferSuspensionMessage(Message):
    TYPE = "TransferSuspensionMessage"
    providerPid: Identifier
    consumerPid: Identifier
    code: str | None = None
    reason: list[Any] | None = None


class TransferTerminationMessage(Message):
    TYPE = "TransferTerminationMessage"
    providerPid: Identifier
    consumerPid: Identifier
    code: str | None = None
    reason: list[Any] | None = None


class TransferProcess(Message):
    TYPE = "TransferProcess"
    providerPid: str
    consumerPid: str
    state: str


class TransferError(Message):
    TYPE = "TransferError"
    providerPid: str | None = None
    consumerPid: str | None = None
    code: str | None = None
    reason: list[str] | None = None


class VersionResponse(BaseModel):
    protocolVersions: list[dict[str, Any]]
