"""DSP 2025-1 HTTPS binding: the routes peers call, answering with DSP bodies and codes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connector.catalog import filters, paging, render
from connector.catalog.visibility import visible
from connector.config import DSP_PATH
from connector.dsp.negotiation import NegotiationService
from connector.dsp.transfer import TransferService
from connector.errors import NotFound, UnsupportedMediaType
from connector.http import read_json
from connector.model import messages as m
from connector.model.enums import Role
from connector.model.records import Dataset
from connector.peer.auth import Authenticator
from connector.policy.decision import Party
from connector.runtime import Runtime


def is_json(content_type: str) -> bool:
    """application/json or a JSON-based type (application/ld+json, application/*+json)."""
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


async def read_message(request: web.Request) -> object:
    """A DSP message body: JSON by its Content-Type (415 otherwise), then parsed."""
    if not is_json(request.content_type):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {request.content_type or 'missing'}"
        )
    return await read_json(request)


class DspRoutes:
    def __init__(
        self,
        runtime: Runtime,
        auth: Authenticator,
        negotiations: NegotiationService,
        transfers: TransferService,
    ) -> None:
        self.rt = runtime
        self.auth = auth
        self.cn = negotiations
        self.tp = transfers

    def add_to(self, app: web.Application) -> None:
        p = DSP_PATH
        app.router.add_get("/.well-known/dspace-version", self.version)
        app.router.add_get("/.well-known/did.json", self.did_document)
        app.router.add_post(f"{p}/catalog/request", self.catalog)
        app.router.add_get(p + "/catalog/datasets/{id}", self.dataset)
        app.router.add_post(f"{p}/negotiations/request", self.cn_request)
        app.router.add_post(f"{p}/negotiations/offers", self.cn_offer)
        app.router.add_get(p + "/negotiations/{pid}", self.cn_get)
        app.router.add_post(p + "/negotiations/{pid}/request", self.cn_request)
        app.router.add_post(p + "/negotiations/{pid}/offers", self.cn_offer)
        app.router.add_post(p + "/negotiations/{pid}/events", self.cn_event)
        app.router.add_post(p + "/negotiations/{pid}/agreement", self.cn_agreement)
        app.router.add_post(p + "/negotiations/{pid}/agreement/verification", self.cn_verify)
        app.router.add_post(p + "/negotiations/{pid}/termination", self.cn_terminate)
        app.router.add_post(f"{p}/transfers/request", self.tp_request)
        app.router.add_get(p + "/transfers/{pid}", self.tp_get)
        app.router.add_post(p + "/transfers/{pid}/{action}", self.tp_message)

    # metadata --------------------------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "protocolVersions": [
                    {
                        "version": "2025-1",
                        "path": DSP_PATH,
                        "binding": "HTTPS",
                        "identifierType": "did:web",
                        "serviceId": render.service_id(self.rt.did),
                    }
                ]
            }
        )

    async def did_document(self, request: web.Request) -> web.Response:
        return web.json_response(self.rt.did_document)

    # catalog ---------------------------------------------------------------------------------

    async def _visible(
        self, caller: str, datasets: list[Dataset], claims: dict[str, Any] | None = None
    ) -> list[Dataset]:
        """The datasets the caller may see, each with only the offers it may see."""
        consumer = Party(id=caller, credentials=claims or {})
        return await visible(self.rt.decisions, self.rt.did, consumer, datasets)

    async def catalog(self, request: web.Request) -> web.Response:
        caller, claims = await self.auth.member(request)
        msg = m.parse(m.CatalogRequestMessage, await read_message(request))
        query = filters.read(msg.filter)
        query = filters.with_token(query, request.query.get("continuationToken"))
        s = self.rt.settings

        async def decide(datasets: list[Dataset]) -> list[Dataset]:
            return await self._visible(caller, datasets, claims)

        if query.page is None or query.digest is not None:
            # the whole catalog: answered whole, or decided whole for its digest
            shown = await decide(await self.rt.db.read(lambda s: s.list_datasets()))
            body = render.catalog(shown, self.rt.did, s.dsp_url, s.name)
            if query.digest and body[m.CATALOG_DIGEST] == query.digest:
                body = render.unchanged(self.rt.did, s.dsp_url, s.name, query.digest)
            if query.page is None or body.get(m.CATALOG_UNCHANGED):
                return web.json_response(body)
            result = paging.slice_of(shown, query.page)
            whole: str | None = body[m.CATALOG_DIGEST]
        else:
            result = await paging.select(self.rt.db, decide, query.page)
            whole = None
        body = render.page(result.shown, self.rt.did, s.dsp_url, s.name, whole)
        link = paging.links(f"{s.dsp_url}/catalog/request", query.page, result)
        return web.json_response(body, headers={"Link": link} if link else None)

    async def dataset(self, request: web.Request) -> web.Response:
        caller, claims = await self.auth.member(request)
        dataset_id = request.match_info["id"]
        dataset = await self.rt.db.read(lambda s: s.get_dataset(dataset_id))
        visible = await self._visible(caller, [dataset], claims) if dataset else []
        if not visible:
            raise NotFound(f"no dataset {request.match_info['id']}")
        return web.json_response(render.dataset(visible[0], self.rt.did, with_context=True))

    # negotiations ----------------------------------------------------------------------------

    async def _role(self, request: web.Request, pid: str | None) -> None:
        if pid:
            request["role"] = await self.cn.role_of(pid)

    async def cn_get(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        return web.json_response(await self.cn.view(request.match_info["pid"], caller))

    async def cn_request(self, request: web.Request) -> web.Response:
        caller, claims = await self.auth.member(request)
        pid = request.match_info.get("pid")
        await self._role(request, pid)
        msg = m.parse(m.ContractRequestMessage, await read_message(request))
        neg, _created = await self.cn.on_request(msg, caller, pid, claims)
        return web.json_response(self.cn.ack(neg), status=201 if pid is None else 200)

    async def cn_offer(self, request: web.Request) -> web.Response:
        pid = request.match_info.get("pid")
        # a provider opening a negotiation must be a member, as a consumer must be to request
        caller = (await self.auth.member(request))[0] if pid is None else None
        caller = caller or await self.auth.caller(request)
        await self._role(request, pid)
        msg = m.parse(m.ContractOfferMessage, await read_message(request))
        neg, _created = await self.cn.on_offer(msg, caller, pid)
        return web.json_response(self.cn.ack(neg), status=201 if pid is None else 200)

    async def cn_event(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        pid = request.match_info["pid"]
        await self._role(request, pid)
        msg = m.parse(m.ContractNegotiationEventMessage, await read_message(request))
        return web.json_response(self.cn.ack(await self.cn.on_event(msg, caller, pid)))

    async def cn_agreement(self, request: web.Request) -> web.Response:
        # the consumer checks the provider too: no agreement with a non-member
        caller, _claims, problems = await self.auth.membership(request)
        pid = request.match_info["pid"]
        await self._role(request, pid)
        msg = m.parse(m.ContractAgreementMessage, await read_message(request))
        neg = await self.cn.on_agreement(msg, caller, pid, problems)
        return web.json_response(self.cn.ack(neg))

    async def cn_verify(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        pid = request.match_info["pid"]
        await self._role(request, pid)
        msg = m.parse(m.ContractAgreementVerificationMessage, await read_message(request))
        return web.json_response(self.cn.ack(await self.cn.on_verification(msg, caller, pid)))

    async def cn_terminate(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        pid = request.match_info["pid"]
        await self._role(request, pid)
        msg = m.parse(m.ContractNegotiationTerminationMessage, await read_message(request))
        return web.json_response(self.cn.ack(await self.cn.on_termination(msg, caller, pid)))

    # transfers -------------------------------------------------------------------------------

    async def tp_get(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        return web.json_response(await self.tp.view(request.match_info["pid"], caller))

    async def tp_request(self, request: web.Request) -> web.Response:
        request["role"] = Role.PROVIDER
        caller, claims = await self.auth.member(request)
        msg = m.parse(m.TransferRequestMessage, await read_message(request))
        tp, _created = await self.tp.on_request(msg, caller, claims)
        return web.json_response(self.tp.ack(tp), status=201)

    _TP_MESSAGES: dict[str, type[m.Message]] = {
        "start": m.TransferStartMessage,
        "completion": m.TransferCompletionMessage,
        "suspension": m.TransferSuspensionMessage,
        "termination": m.TransferTerminationMessage,
    }

    async def tp_message(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        pid = request.match_info["pid"]
        model = self._TP_MESSAGES.get(request.match_info["action"])
        if model is None:
            raise NotFound(f"no such transfer endpoint: {request.match_info['action']}")
        request["role"] = await self.tp.role_of(pid)
        msg = m.parse(model, await read_message(request))
        return web.json_response(self.tp.ack(await self.tp.on_message(msg, caller, pid)))
