"""The management API of usage control: the local use API that serves received data, the
use records, the deletion duties with their receipts, and agreement termination."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from connector.errors import BadRequest, NotFound
from connector.http import Handler, Route, optional_body
from connector.management import models
from connector.model.enums import DutyState, Role
from connector.model.usage import RECEIPT_TYPE, USE_TYPE, DeletionDuty
from connector.runtime import Runtime
from connector.usage.service import Usage
from connector.usage.signed import RecordRefused, check
from connector.usage.uses import DataGone

STATES = tuple(DutyState)

ROUTES = [
    Route(
        "GET",
        "/agreements/{id}/data",
        "use_data",
        "Use received data (consumer): ?purpose=... is decided by the policy at phase use;"
        " the data streams back and a signed use record is written",
    ),
    Route("GET", "/agreements/{id}/uses", "list_uses", "The agreement's signed use records"),
    Route(
        "POST",
        "/agreements/{id}/terminate",
        "terminate_agreement",
        "End an agreement (provider): transfers stop, the consumer is told and deletes",
        models.TerminateIn,
    ),
    Route(
        "GET",
        "/deletions",
        "list_deletions",
        "Deletion duties (?state=pending|fulfilled|overdue&agreement=ID&role=...)",
    ),
    Route("GET", "/deletions/{id}", "get_deletion", "A deletion duty with its receipt, verified"),
]


class UsageApi:
    def __init__(self, rt: Runtime, usage: Usage) -> None:
        self.rt = rt
        self.usage = usage

    def routes(self) -> list[tuple[Route, Handler]]:
        return [(route, getattr(self, route.handler)) for route in ROUTES]

    async def use_data(self, request: web.Request) -> web.StreamResponse:
        granted = await self.usage.uses.use(
            request.match_info["id"], request.query.get("purpose", "")
        )
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Use-Number": str(granted.entry.seq + 1),
            "X-Use-Record": granted.entry.hash,
        }
        if granted.deadline:
            headers["X-Delete-By"] = granted.deadline
        # Opened before the answer starts: a deadline reached while the data streams removes
        # the file, not this allowed use's bytes.
        try:
            fh = await asyncio.to_thread(granted.path.open, "rb")
        except OSError as exc:
            raise DataGone(f"the data is no longer held: {exc.strerror}") from exc
        try:
            response = web.StreamResponse(headers=headers)
            response.content_length = os.fstat(fh.fileno()).st_size
            await response.prepare(request)
            chunk = self.rt.settings.chunk_size
            while block := await asyncio.to_thread(fh.read, chunk):
                await response.write(block)
            await response.write_eof()
        finally:
            fh.close()
        return response

    async def list_uses(self, request: web.Request) -> web.Response:
        agreement_id = request.match_info["id"]
        agreement, uses = await self.rt.db.read(
            lambda s: (s.get_agreement(agreement_id), s.list_uses(agreement_id))
        )
        if agreement is None:
            raise NotFound(f"no agreement {agreement_id}")
        lines = []
        doc = await self.rt.resolver.resolve(agreement.consumer_id) if uses else {}
        for u in uses:
            try:
                check(USE_TYPE, u.record, u.signature, agreement.consumer_id, doc, {})
                verification = "valid"
            except RecordRefused as exc:
                verification = f"invalid: {exc.detail}"
            lines.append({**u.line(), "reported_at": u.reported_at, "verification": verification})
        return web.json_response({"agreement": agreement_id, "count": len(uses), "uses": lines})

    async def terminate_agreement(self, request: web.Request) -> web.Response:
        data = await optional_body(request, models.TerminateIn)
        agreement = await self.usage.termination.terminate(request.match_info["id"], data.reason)
        return web.json_response(agreement.model_dump())

    async def list_deletions(self, request: web.Request) -> web.Response:
        state = request.query.get("state")
        if state is not None and state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}")
        role = request.query.get("role")
        if role is not None and role not in (Role.PROVIDER, Role.CONSUMER):
            raise BadRequest("role must be provider or consumer")
        agreement = request.query.get("agreement")
        duties = await self.rt.db.read(
            lambda s: s.list_deletions(role=role, state=state, agreement_id=agreement, limit=1000)
        )
        return web.json_response([d.model_dump() for d in duties])

    async def get_deletion(self, request: web.Request) -> web.Response:
        duty_id = request.match_info["id"]
        duty = await self.rt.db.read(lambda s: s.get_deletion(duty_id))
        if duty is None:
            raise NotFound(f"no deletion duty {duty_id}")
        out = duty.model_dump()
        out["verification"] = await self._verify(duty)
        return web.json_response(out)

    async def _verify(self, duty: DeletionDuty) -> str:
        """The receipt checked again against the consumer's DID document."""
        if duty.receipt is None or duty.signature is None:
            return "no receipt"
        consumer = self.rt.did if duty.role == Role.CONSUMER else duty.counterparty_id
        try:
            doc = await self.rt.resolver.resolve(consumer)
            check(RECEIPT_TYPE, duty.receipt, duty.signature, consumer, doc, {})
        except RecordRefused as exc:
            return f"invalid: {exc.detail}"
        except Exception as exc:
            return f"not checked: {exc}"
        return "valid"
