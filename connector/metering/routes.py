"""The provider's metering endpoints, beside its DSP endpoints and under the same
authentication: the consumer reads a transfer's records and answers with receipts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connector.config import DSP_PATH
from connector.errors import BadRequest, Conflict, NotFound
from connector.http import read_json
from connector.identity import signatures
from connector.metering import heads
from connector.model.enums import Direction, Role
from connector.model.metering import MeteringHead
from connector.model.records import Transfer
from connector.peer.auth import Authenticator
from connector.runtime import Runtime
from connector.store.base import Store


class MeteringRoutes:
    def __init__(self, runtime: Runtime, auth: Authenticator) -> None:
        self.rt = runtime
        self.auth = auth

    def add_to(self, app: web.Application) -> None:
        app.router.add_get(DSP_PATH + "/metering/transfers/{pid}", self.records)
        app.router.add_post(DSP_PATH + "/metering/transfers/{pid}/receipts", self.receipts)

    async def _transfer(self, request: web.Request) -> Transfer:
        caller = await self.auth.caller(request)
        pid = request.match_info["pid"]
        tp = await self.rt.db.read(lambda s: s.get_transfer(pid))
        if tp is None or tp.role != Role.PROVIDER or tp.counterparty_id != caller:
            raise NotFound(f"no transfer {pid}")
        return tp

    async def records(self, request: web.Request) -> web.Response:
        tp = await self._transfer(request)
        chain, whole = await self.rt.db.read(
            lambda s: (s.metering_chain(tp.agreement_id, tp.id), s.metering_chain(tp.agreement_id))
        )
        body: dict[str, Any] = {"transfer": tp.id, "chain": [e.line() for e in chain]}
        if whole:
            # the head of the agreement's chain now, for the consumer to countersign
            head = heads.head_body(tp.agreement_id, self.rt.did, tp.counterparty_id, whole[-1])
            signature = signatures.sign(head, self.rt.did, self.rt.keys)
            body["head"] = {"body": head, "signature": signature}
        return web.json_response(body)

    async def receipts(self, request: web.Request) -> web.Response:
        tp = await self._transfer(request)
        body = await read_json(request)
        answers = body.get("answers") if isinstance(body, dict) else None
        if not isinstance(answers, list):
            raise BadRequest("expected {'answers': [{seq, hash, receipt | refusal}]}")
        listed = await self.rt.db.read(lambda s: s.metering_chain(tp.agreement_id, tp.id))
        chain = {e.seq: e for e in listed}
        consumer_doc = await self.rt.resolver.resolve(tp.counterparty_id)
        checked: list[tuple[int, str | None, str | None]] = []
        for answer in answers:
            checked.append(self._answer(answer, chain, tp, consumer_doc))
        head = await self._head(body.get("head"), tp, consumer_doc) if "head" in body else None
        refused = [f"record {seq}: {why}" for seq, _, why in checked if why]
        summary = f"{len(checked) - len(refused)} receipts accepted" + (
            f"; the consumer refused {'; '.join(refused)}" if refused else ""
        )

        def store_answers(store: Store) -> None:
            if head is not None:
                store.put_metering_head(head)
            # a receipt is final: a later refusal must not erase the evidence it is
            stored = {e.seq: e for e in store.metering_chain(tp.agreement_id, tp.id)}
            final = [seq for seq, _, why in checked if why and stored[seq].receipt]
            if final:
                raise Conflict(
                    f"metering record{'s' if len(final) > 1 else ''}"
                    f" {', '.join(map(str, sorted(final)))} already carr"
                    f"{'y' if len(final) > 1 else 'ies'} the consumer's receipt;"
                    " a receipt is final and cannot be replaced by a refusal"
                )
            for seq, receipt, refusal in checked:
                if stored[seq].receipt:
                    continue  # the same receipt again (a retried answer) changes nothing
                store.set_metering_receipt(tp.agreement_id, seq, receipt=receipt, refusal=refusal)
            self.rt.log(tp.id, Direction.NOTE, "metering", detail=summary)

        await self.rt.db.write(store_answers)
        return web.json_response({"receipted": len(checked) - len(refused), "refused": refused})

    async def _head(
        self, signed: Any, tp: Transfer, consumer_doc: dict[str, Any]
    ) -> MeteringHead | None:
        """The consumer's countersignature of a head this provider signed about its chain."""
        body = heads.check_signed(
            signed,
            tp.agreement_id,
            self.rt.did,
            tp.counterparty_id,
            self.rt.did_document,
            consumer_doc,
        )
        listed = await self.rt.db.read(lambda s: s.metering_chain(tp.agreement_id))
        whole = {e.seq: e for e in listed}
        named = whole.get(body["count"] - 1)
        if named is None or named.hash != body["head"]:
            raise BadRequest("the countersigned chain head does not name a record of this chain")
        return heads.stored(signed, body)

    def _answer(
        self, answer: Any, chain: dict[int, Any], tp: Transfer, consumer_doc: dict[str, Any]
    ) -> tuple[int, str | None, str | None]:
        if not isinstance(answer, dict) or not isinstance(answer.get("seq"), int):
            raise BadRequest("each answer needs an integer seq")
        entry = chain.get(answer["seq"])
        if entry is None or answer.get("hash") != entry.hash:
            raise BadRequest(f"record {answer['seq']} is not in this transfer's chain")
        if answer.get("receipt"):
            signatures.verify(
                entry.record, str(answer["receipt"]), tp.counterparty_id, consumer_doc
            )
            return entry.seq, str(answer["receipt"]), None
        refusal = answer.get("refusal")
        if not isinstance(refusal, str) or not refusal:
            raise BadRequest(f"record {answer['seq']}: a receipt or a refusal reason is needed")
        return entry.seq, None, refusal[:1000]
