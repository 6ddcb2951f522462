"""The two webhooks through which the TCK makes us start a negotiation or a transfer as consumer.

The TCK posts plain JSON (not JSON-LD), with its configured Authorization value:
  /tck/negotiations/requests  {"providerId", "offerId", "datasetId", "connectorAddress"}
  /tck/transfers/requests     {"providerId", "agreementId", "format", "connectorAddress"}
`connectorAddress` is the TCK's DSP base URL.
"""

from __future__ import annotations

import hmac
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from connector.dsp.negotiation import NegotiationService
from connector.dsp.transfer import TransferService
from connector.errors import BadRequest, NotFound
from connector.http import read_json
from connector.model.jobs import NegotiationReact, TransferReact
from connector.model.records import Negotiation, Transfer
from connector.runtime import Runtime
from connector.store.base import Store
from connector.tck.seed import negotiation_id

NEGOTIATIONS_PATH = "/tck/negotiations/requests"
TRANSFERS_PATH = "/tck/transfers/requests"


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")
    providerId: str = Field(min_length=1)
    connectorAddress: str = Field(min_length=1)


class NegotiationRequest(_Request):
    offerId: str = Field(min_length=1)
    datasetId: str = Field(min_length=1)


class TransferRequest(_Request):
    agreementId: str = Field(min_length=1)
    format: str = Field(min_length=1)


R = TypeVar("R", bound=_Request)


class TckWebhooks:
    def __init__(
        self,
        runtime: Runtime,
        negotiations: NegotiationService,
        transfers: TransferService,
        authorization: str,
    ) -> None:
        self.rt = runtime
        self.cn = negotiations
        self.tp = transfers
        self._authorization = authorization

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(NEGOTIATIONS_PATH, self.negotiation)
        app.router.add_post(TRANSFERS_PATH, self.transfer)

    async def _body(self, request: web.Request, model: type[R]) -> R:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), self._authorization.encode()):
            raise NotFound("no such endpoint")
        body = await read_json(request)
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        try:
            return model.model_validate(body)
        except ValueError as exc:
            raise BadRequest(f"invalid TCK request: {exc}") from exc

    async def negotiation(self, request: web.Request) -> web.Response:
        req = await self._body(request, NegotiationRequest)
        offer = {"@id": req.offerId, "permission": [{"action": "use"}]}

        def requested(store: Store) -> Negotiation:
            neg = self.cn.request(req.connectorAddress, req.providerId, req.datasetId, offer)
            # Give the script its first look once the request is out (e.g. terminate at once).
            self.cn.outbox.enqueue(neg.id, NegotiationReact(state=neg.state))
            return neg

        neg = await self.rt.db.write(requested)
        return web.json_response({"id": neg.id, "state": neg.state}, status=201)

    async def transfer(self, request: web.Request) -> web.Response:
        req = await self._body(request, TransferRequest)

        def requested(store: Store) -> Transfer:
            agreement = store.get_agreement(req.agreementId)
            if agreement is None:
                raise NotFound(f"no agreement {req.agreementId}")
            seeded = store.get_negotiation(negotiation_id(req.agreementId))
            if seeded is not None:
                # Seeded agreements have no negotiation peer address: the TCK tells it here.
                store.update_negotiation(
                    seeded.id, counterparty_address=req.connectorAddress.rstrip("/")
                )
            tp = self.tp.request(req.agreementId, req.format)
            self.tp.outbox.enqueue(tp.id, TransferReact(state=tp.state))
            return tp

        tp = await self.rt.db.write(requested)
        return web.json_response({"id": tp.id, "state": tp.state}, status=201)
