"""Usage-control endpoints beside the DSP ones, under the same self-issued-token
authentication: the provider receives use reports, deletion schedules and receipts; the
consumer receives agreement terminations."""

from __future__ import annotations

from aiohttp import web

from connector.config import DSP_PATH
from connector.errors import NotFound
from connector.http import read_json
from connector.model.records import Agreement
from connector.peer.auth import Authenticator
from connector.runtime import Runtime
from connector.usage.service import Usage

BASE = DSP_PATH + "/usage/agreements/{id}"


class UsagePeerRoutes:
    def __init__(self, rt: Runtime, auth: Authenticator, usage: Usage) -> None:
        self.rt = rt
        self.auth = auth
        self.usage = usage

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(BASE + "/uses", self.uses)
        app.router.add_post(BASE + "/deletion-schedule", self.schedule)
        app.router.add_post(BASE + "/deletion-receipts", self.receipt)
        app.router.add_post(BASE + "/termination", self.termination)

    async def _provided(self, request: web.Request) -> tuple[str, Agreement]:
        """(caller, agreement) for an agreement we provide to the caller; 404 otherwise."""
        caller = await self.auth.caller(request)
        agreement_id = request.match_info["id"]
        agreement = await self.rt.db.read(lambda s: s.get_agreement(agreement_id))
        if agreement is None or agreement.provider_id != self.rt.did:
            raise NotFound(f"no agreement {agreement_id}")
        if agreement.consumer_id != caller:
            raise NotFound(f"no agreement {agreement_id}")
        return caller, agreement

    async def uses(self, request: web.Request) -> web.Response:
        caller, agreement = await self._provided(request)
        accepted = await self.usage.reports.on_report(caller, agreement, await read_json(request))
        return web.json_response({"accepted": accepted})

    async def schedule(self, request: web.Request) -> web.Response:
        caller, agreement = await self._provided(request)
        duty = await self.usage.tracking.on_schedule(caller, agreement, await read_json(request))
        return web.json_response({"transfer": duty.id, "deadline": duty.deadline})

    async def receipt(self, request: web.Request) -> web.Response:
        caller, agreement = await self._provided(request)
        duty = await self.usage.tracking.on_receipt(caller, agreement, await read_json(request))
        return web.json_response({"transfer": duty.id, "state": duty.state})

    async def termination(self, request: web.Request) -> web.Response:
        caller = await self.auth.caller(request)
        body = await read_json(request)
        answer = await self.usage.termination.on_notice(caller, request.match_info["id"], body)
        return web.json_response(answer)
