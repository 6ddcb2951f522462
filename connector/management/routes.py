"""The management API: datasets, remote catalogs, negotiations, agreements, transfers."""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import BaseModel

from connector import http
from connector.billing import invoice
from connector.billing.prices import price_terms
from connector.catalog.fetch import whole_catalog
from connector.config import DSP_PATH
from connector.dataplane import sources, streams
from connector.dsp.negotiation import NegotiationService
from connector.dsp.transfer import TransferService
from connector.egress import CATALOG_MAX, read_limited
from connector.errors import BadRequest, ConnectorError, NotFound, PeerError, Unauthorized
from connector.http import Handler, Route
from connector.identity import signatures
from connector.identity.did import did_from_url, port_written_with_colon
from connector.management import models
from connector.management.openapi import build_openapi
from connector.metering.export import chain_header
from connector.model.enums import Role
from connector.model.records import Agreement, Dataset, DecisionRecord
from connector.model.states import TP
from connector.peer.client import DspClient
from connector.policy import whatif
from connector.policy.decision import Decision, DecisionInput
from connector.policy.odrl import check_values, normalise
from connector.policy.point import RegoDecisionPoint
from connector.policy.remaining import remaining, summary
from connector.runtime import Runtime
from connector.store.base import Store

PREFIX = "/api/v1"
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)


ROUTES = [
    Route("GET", "/datasets", "list_datasets", "List published datasets"),
    Route(
        "POST",
        "/datasets",
        "create_dataset",
        "Publish a dataset with offers",
        models.DatasetIn,
        201,
    ),
    Route("GET", "/datasets/{id}", "get_dataset", "Show a dataset"),
    Route(
        "PATCH",
        "/datasets/{id}",
        "update_dataset",
        "Change a dataset's title, description, keywords, themes, media type or grading",
        models.DatasetUpdate,
    ),
    Route("DELETE", "/datasets/{id}", "delete_dataset", "Withdraw a dataset", status=204),
    Route(
        "POST", "/catalog/request", "fetch_catalog", "Fetch a provider's catalog", models.CatalogIn
    ),
    Route("GET", "/negotiations", "list_negotiations", "List negotiations"),
    Route(
        "POST",
        "/negotiations",
        "start_negotiation",
        "Negotiate an offer (consumer)",
        models.NegotiationIn,
        201,
    ),
    Route("GET", "/negotiations/{id}", "get_negotiation", "Show a negotiation and its timeline"),
    Route("POST", "/negotiations/{id}/accept", "accept", "Accept the provider's offer (consumer)"),
    Route(
        "POST",
        "/negotiations/{id}/request",
        "counter_request",
        "Counter-request (consumer)",
        models.OfferIn,
    ),
    Route("POST", "/negotiations/{id}/verify", "verify", "Countersign the agreement (consumer)"),
    Route(
        "POST",
        "/negotiations/{id}/offer",
        "counter_offer",
        "Counter-offer (provider)",
        models.OfferIn,
    ),
    Route("POST", "/negotiations/{id}/agree", "agree", "Agree to the current offer (provider)"),
    Route("POST", "/negotiations/{id}/finalize", "finalize", "Finalize (provider)"),
    Route(
        "POST",
        "/negotiations/{id}/terminate",
        "terminate_negotiation",
        "Terminate",
        models.TerminateIn,
    ),
    Route("GET", "/agreements", "list_agreements", "List agreements"),
    Route(
        "GET",
        "/agreements/{id}",
        "get_agreement",
        "Show an agreement with both signatures, verified",
    ),
    Route(
        "GET",
        "/agreements/{id}/metering",
        "agreement_metering",
        "The agreement's metering chain: signed records with the consumer's receipts",
    ),
    Route(
        "GET",
        "/agreements/{id}/invoice",
        "agreement_invoice",
        "Invoice for ?period=YYYY-MM from the countersigned chain (?format=csv for CSV)",
    ),
    Route("GET", "/policy", "policy_status", "Policy engine, loaded version, last reload error"),
    Route(
        "POST",
        "/policy/eval",
        "policy_eval",
        "Decide one input, or a what-if on a published dataset and a consumer (not logged)",
        models.EvalIn,
    ),
    Route("GET", "/decisions", "list_decisions", "The decision log, newest first"),
    Route("GET", "/decisions/{seq}", "get_decision", "One logged decision with its input"),
    Route(
        "POST",
        "/decisions/{seq}/replay",
        "replay_decision",
        "Decide a logged input again with today's policies (not logged): both results",
    ),
    Route("GET", "/transfers", "list_transfers", "List transfer processes"),
    Route(
        "POST",
        "/transfers",
        "start_transfer",
        "Request a transfer (consumer)",
        models.TransferIn,
        201,
    ),
    Route("GET", "/transfers/{id}", "get_transfer", "Show a transfer and its timeline"),
    Route("POST", "/transfers/{id}/suspend", "suspend", "Suspend", models.TerminateIn),
    Route("POST", "/transfers/{id}/resume", "resume", "Resume a suspended transfer"),
    Route("POST", "/transfers/{id}/complete", "complete", "Complete"),
    Route(
        "POST", "/transfers/{id}/terminate", "terminate_transfer", "Terminate", models.TerminateIn
    ),
]


def counterparty_did(address: str, given: str | None) -> str:
    """The peer's DID: as given, else the did:web of the address's host."""
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("counterPartyAddress must be an absolute http(s) URL")
    if given:
        meant = port_written_with_colon(given)
        if meant is not None:
            raise BadRequest(
                f"counterPartyId {given}: a port in did:web is written %3A, not ':'"
                f" (did you mean {meant}?)"
            )
        return given
    return did_from_url(f"{parts.scheme}://{parts.netloc}")


def api_key_middleware(key: str) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != f"{PREFIX}/openapi.json":
            given = request.headers.get("X-Api-Key", "")
            if not hmac.compare_digest(given.encode(), key.encode()):
                raise Unauthorized("missing or wrong X-Api-Key")
        return await handler(request)

    return check


class ManagementApi:
    def __init__(
        self,
        runtime: Runtime,
        client: DspClient,
        negotiations: NegotiationService,
        transfers: TransferService,
        policy: RegoDecisionPoint | None = None,
        extra: Sequence[tuple[Route, Handler]] = (),
    ) -> None:
        self.rt = runtime
        self.client = client
        self.cn = negotiations
        self.tp = transfers
        self.policy = policy
        self._extra = list(extra)  # routes other parts serve (usage control)
        self._openapi = build_openapi(ROUTES + [r for r, _ in self._extra], PREFIX)

    def add_to(self, app: web.Application) -> None:
        app.router.add_get(f"{PREFIX}/openapi.json", self.openapi)
        for route in ROUTES:
            app.router.add_route(route.method, PREFIX + route.path, getattr(self, route.handler))
        for route, handler in self._extra:
            app.router.add_route(route.method, PREFIX + route.path, handler)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self._openapi)

    # datasets --------------------------------------------------------------------------------

    async def list_datasets(self, request: web.Request) -> web.Response:
        datasets = await self.rt.db.read(lambda s: s.list_datasets())
        return web.json_response([_dataset_view(d) for d in datasets])

    async def create_dataset(self, request: web.Request) -> web.Response:
        data = await http.body(request, models.DatasetIn)
        dataset_id = data.id or f"urn:uuid:{uuid.uuid4()}"
        # asked first so that a taken id is refused before the source is hashed; asked again
        # in the unit that publishes, as another request may have taken it meanwhile
        if await self.rt.db.read(lambda s: s.get_dataset(dataset_id)) is not None:
            raise BadRequest(f"dataset {dataset_id} already exists")
        source = sources.validate(data.source.model_dump(exclude_none=True))
        await sources.admit(source, self.rt.egress.policy)
        size = digest = None
        if source["type"] == "file":
            size, digest = await sources.file_digest(
                Path(source["path"]), self.rt.settings.chunk_size
            )
        offers = []
        for n, policy in enumerate(
            data.offers or [models.PolicyIn(permission=[{"action": "use"}])]
        ):
            offer = policy.model_dump(by_alias=True, exclude_none=True)
            if not offer.get("permission") and not offer.get("prohibition"):
                raise BadRequest(f"offer {n + 1} needs at least one permission or prohibition")
            normalise(offer)  # refuses terms the policy library cannot decide
            check_values(offer)  # and values of the wrong form; volumes become bytes
            price_terms(offer)  # and price terms that cannot be billed
            offer.setdefault("@id", f"{dataset_id}:offer:{n + 1}")
            offer["@type"] = "Offer"
            offer.pop("target", None)
            offers.append(offer)
        dataset = Dataset(
            id=dataset_id,
            title=data.title,
            description=data.description,
            keywords=data.keywords,
            themes=data.themes,
            media_type=data.media_type,
            classification=data.classification,
            source=source,
            offers=offers,
            size=size,
            sha256=digest,
        )

        def publish(store: Store) -> None:
            if store.get_dataset(dataset_id) is not None:
                raise BadRequest(f"dataset {dataset_id} already exists")
            store.put_dataset(dataset)

        await self.rt.db.write(publish)
        return web.json_response(dataset.model_dump(), status=201)

    async def get_dataset(self, request: web.Request) -> web.Response:
        dataset_id = request.match_info["id"]
        dataset = await self.rt.db.read(lambda s: s.get_dataset(dataset_id))
        if dataset is None:
            raise NotFound(f"no dataset {dataset_id}")
        return web.json_response(_dataset_view(dataset))

    async def update_dataset(self, request: web.Request) -> web.Response:
        data = await http.body(request, models.DatasetUpdate)
        dataset_id = request.match_info["id"]
        changes = data.model_dump(exclude_none=True)

        def update(store: Store) -> Dataset:
            dataset = store.get_dataset(dataset_id)
            if dataset is None:
                raise NotFound(f"no dataset {dataset_id}")
            changed = dataset.model_copy(update=changes)
            store.put_dataset(changed)
            return changed

        return web.json_response((await self.rt.db.write(update)).model_dump())

    async def delete_dataset(self, request: web.Request) -> web.Response:
        dataset_id = request.match_info["id"]
        if not await self.rt.db.write(lambda s: s.delete_dataset(dataset_id)):
            raise NotFound(f"no dataset {dataset_id}")
        return web.Response(status=204)

    # catalog ---------------------------------------------------------------------------------

    async def fetch_catalog(self, request: web.Request) -> web.Response:
        data = await http.body(request, models.CatalogIn)
        peer = counterparty_did(data.counterPartyAddress, data.counterPartyId)
        url = data.counterPartyAddress.rstrip("/") + "/catalog/request"
        try:
            body = await whole_catalog(self.client, url, peer, data.querySpec, who="provider")
        except PeerError as exc:
            detail = str(exc)
            # only an address that answered (with an error) is asked what it is: one our
            # token was not sent to (not the audience's) gets no request at all
            answered = exc.http_status is not None and 400 <= exc.http_status < 500
            if answered and await self._is_management_api(data.counterPartyAddress):
                detail = (
                    f"{data.counterPartyAddress} is a connector's management API, not its DSP"
                    " endpoint: give the DSP address (its public_url followed by /dsp)"
                )
            raise PeerError(
                detail, http_status=exc.http_status, body=exc.body, retry=False
            ) from exc
        return web.json_response(body)

    async def _is_management_api(self, address: str) -> bool:
        """Whether `address` (a DSP address that failed) is a connector's management listener:
        its OpenAPI document is the one path it serves without a key."""
        parts = urlsplit(address)
        probe = f"{parts.scheme}://{parts.netloc}{PREFIX}/openapi.json"
        try:
            async with self.rt.egress.request("GET", probe, timeout=PROBE_TIMEOUT) as resp:
                if resp.status != 200:
                    return False
                doc = json.loads(await read_limited(resp, CATALOG_MAX))
        except (ConnectorError, aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return isinstance(doc, dict) and "openapi" in doc

    # negotiations ----------------------------------------------------------------------------

    async def _view(
        self, what: str, pid: str, get: Callable[[Store], BaseModel | None]
    ) -> dict[str, Any]:
        """A process with its timeline and the messages still waiting to be sent: one read,
        so the three agree with each other."""

        def view(store: Store) -> dict[str, Any] | None:
            record = get(store)
            if record is None:
                return None
            out = record.model_dump()
            out["timeline"] = [e.model_dump() for e in store.timeline(pid)]
            out["pending"] = [j.payload.get("type", j.kind) for j in store.pending_jobs(pid)]
            return out

        out = await self.rt.db.read(view)
        if out is None:
            raise NotFound(f"no {what} {pid}")
        return out

    async def _negotiation_view(self, pid: str) -> dict[str, Any]:
        return await self._view("negotiation", pid, lambda s: s.get_negotiation(pid))

    async def list_negotiations(self, request: web.Request) -> web.Response:
        limit, offset = _paging(request)
        rows = await self.rt.db.read(lambda s: s.list_negotiations(limit, offset))
        return web.json_response([n.model_dump() for n in rows])

    async def start_negotiation(self, request: web.Request) -> web.Response:
        data = await http.body(request, models.NegotiationIn)
        if not isinstance(data.offer.get("@id"), str):
            raise BadRequest("offer.@id is required (use the offer as the catalog shows it)")
        peer = counterparty_did(data.counterPartyAddress, data.counterPartyId)
        neg = await self.cn.act(
            self.cn.request,
            data.counterPartyAddress,
            peer,
            data.datasetId,
            data.offer,
            data.purpose,
        )
        return web.json_response(await self._negotiation_view(neg.id), status=201)

    async def get_negotiation(self, request: web.Request) -> web.Response:
        return web.json_response(await self._negotiation_view(request.match_info["id"]))

    async def accept(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        return web.json_response((await self.cn.act(self.cn.accept, pid)).model_dump())

    async def counter_request(self, request: web.Request) -> web.Response:
        data = await http.body(request, models.OfferIn)
        pid = request.match_info["id"]
        neg = await self.cn.act(self.cn.counter_request, pid, data.offer)
        return web.json_response(neg.model_dump())

    async def verify(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        return web.json_response((await self.cn.act(self.cn.verify, pid)).model_dump())

    async def counter_offer(self, request: web.Request) -> web.Response:
        data = await http.body(request, models.OfferIn)
        pid = request.match_info["id"]
        neg = await self.cn.act(self.cn.counter_offer, pid, data.offer)
        return web.json_response(neg.model_dump())

    async def agree(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        return web.json_response((await self.cn.act(self.cn.agree, pid)).model_dump())

    async def finalize(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        return web.json_response((await self.cn.act(self.cn.finalize, pid)).model_dump())

    async def terminate_negotiation(self, request: web.Request) -> web.Response:
        data = await http.optional_body(request, models.TerminateIn)
        pid = request.match_info["id"]
        neg = await self.cn.act(self.cn.terminate, pid, [data.reason], data.code)
        return web.json_response(neg.model_dump())

    # agreements ------------------------------------------------------------------------------

    async def list_agreements(self, request: web.Request) -> web.Response:
        limit, offset = _paging(request)
        rows = await self.rt.db.read(lambda s: s.list_agreements(limit, offset))
        return web.json_response([a.model_dump() for a in rows])

    async def get_agreement(self, request: web.Request) -> web.Response:
        agreement = await self._agreement(request)
        out = agreement.model_dump()
        out["sha256"] = signatures.digest(agreement.body)
        left = await self.rt.db.read(lambda s: remaining(s, agreement, self.rt.did))
        out["remaining"], out["summary"] = left, summary(left)
        out["verification"] = {
            "provider": await self._check(
                agreement.body, agreement.provider_signature, agreement.provider_id
            ),
            "consumer": await self._check(
                agreement.body, agreement.consumer_signature, agreement.consumer_id
            ),
        }
        return web.json_response(out)

    async def _check(self, body: dict[str, Any], signature: str | None, did: str) -> str:
        if not signature:
            return "missing"
        try:
            signatures.verify(body, signature, did, await self.rt.resolver.resolve(did))
        except Exception as exc:
            return f"invalid: {exc}"
        return "valid"

    # metering and billing ----------------------------------------------------------------------

    async def _agreement(self, request: web.Request) -> Agreement:
        agreement_id = request.match_info["id"]
        agreement = await self.rt.db.read(lambda s: s.get_agreement(agreement_id))
        if agreement is None:
            raise NotFound(f"no agreement {agreement_id}")
        return agreement

    async def agreement_metering(self, request: web.Request) -> web.Response:
        agreement = await self._agreement(request)
        chain, head = await self.rt.db.read(
            lambda s: (s.metering_chain(agreement.id), s.metering_head(agreement.id))
        )
        return web.json_response(
            {
                "header": chain_header(agreement, chain, head),
                "chain": [e.line() for e in chain],
            }
        )

    async def agreement_invoice(self, request: web.Request) -> web.Response:
        agreement = await self._agreement(request)
        period = request.query.get("period", "")
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            raise BadRequest("format must be json or csv")
        chain = await self.rt.db.read(lambda s: s.metering_chain(agreement.id))
        bill = invoice.compute(agreement.model_dump(), price_terms(agreement.body), chain, period)
        if fmt == "csv":
            return web.Response(text=invoice.to_csv(bill), content_type="text/csv")
        return web.json_response(bill)

    # policy ----------------------------------------------------------------------------------

    async def policy_status(self, request: web.Request) -> web.Response:
        if self.policy is None:
            return web.json_response({"engine": "permit-all", "version": "permit-all"})
        return web.json_response(self.policy.status())

    async def policy_eval(self, request: web.Request) -> web.Response:
        data = await http.body(request, models.EvalIn)
        if data.input is not None:
            decision = await self.rt.decisions.decide(data.input)
            return web.json_response(decision.model_dump())
        dataset_id = data.dataset or ""
        dataset = await self.rt.db.read(lambda s: s.get_dataset(dataset_id))
        if dataset is None:
            raise NotFound(f"no dataset {dataset_id}")
        offer = whatif.offer_of(dataset, data.offer_id)
        asked = whatif.hypothetical_input(
            dataset,
            offer,
            provider=self.rt.did,
            consumer=data.consumer or "",
            phase=data.phase,
            purpose=data.purpose,
            credentials=data.credentials,
            request=data.request,
            usage=data.usage,
        )
        decision = await self._decide_unlogged(asked)
        return web.json_response(
            decision.model_dump()
            | {
                "policy_version": self.rt.decisions.version,
                "offer_id": offer.get("@id"),
                "input": asked.model_dump(mode="json"),
            }
        )

    async def _decide_unlogged(self, asked: DecisionInput) -> Decision:
        if self.policy is None:
            return await self.rt.decisions.decide(asked)  # permit-all: nothing is logged
        return await self.policy.decide_unlogged(asked)

    async def list_decisions(self, request: web.Request) -> web.Response:
        limit, offset = _paging(request)
        rows = await self.rt.db.read(lambda s: s.list_decisions(limit, offset))
        return web.json_response(
            [d.model_dump(exclude={"input"}) | {"input_kept": d.input is not None} for d in rows]
        )

    async def _decision(self, request: web.Request) -> DecisionRecord:
        try:
            seq = int(request.match_info["seq"])
        except ValueError as exc:
            raise BadRequest("a decision is named by its number (seq)") from exc
        if not 0 < seq < 2**63:
            raise NotFound(f"no decision {seq}")
        record = await self.rt.db.read(lambda s: s.get_decision(seq))
        if record is None:
            raise NotFound(f"no decision {seq}")
        return record

    async def get_decision(self, request: web.Request) -> web.Response:
        return web.json_response((await self._decision(request)).model_dump())

    async def replay_decision(self, request: web.Request) -> web.Response:
        record = await self._decision(request)
        decision = await self._decide_unlogged(whatif.logged_input(record))
        return web.json_response(whatif.comparison(record, decision, self.rt.decisions.version))

    # transfers -------------------------------------------------------------------------------

    async def _transfer_view(self, pid: str) -> dict[str, Any]:
        out = await self._view("transfer process", pid, lambda s: s.get_transfer(pid))
        if out["role"] == Role.CONSUMER and out["state"] == TP.STARTED:
            # bytes moved so far: what lies on our disk (a pull or a push under way)
            moved, expected = streams.progress(self.rt, pid)
            out["bytes"] = max(out["bytes"], moved)
            out["bytes_expected"] = expected
        return out

    async def list_transfers(self, request: web.Request) -> web.Response:
        limit, offset = _paging(request)
        rows = await self.rt.db.read(lambda s: s.list_transfers(limit, offset))
        return web.json_response([t.model_dump() for t in rows])

    async def start_transfer(self, request: web.Request) -> web.Response:
        data = await http.body(request, models.TransferIn)
        tp = await self.tp.act(self.tp.request, data.agreementId, data.format, data.purpose)
        return web.json_response(await self._transfer_view(tp.id), status=201)

    async def get_transfer(self, request: web.Request) -> web.Response:
        return web.json_response(await self._transfer_view(request.match_info["id"]))

    async def suspend(self, request: web.Request) -> web.Response:
        data = await http.optional_body(request, models.TerminateIn)
        pid = request.match_info["id"]
        tp = await self.tp.act(self.tp.suspend, pid, [data.reason])
        return web.json_response(tp.model_dump())

    async def resume(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        return web.json_response((await self.tp.act(self.tp.start, pid)).model_dump())

    async def complete(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        return web.json_response((await self.tp.act(self.tp.complete, pid)).model_dump())

    async def terminate_transfer(self, request: web.Request) -> web.Response:
        data = await http.optional_body(request, models.TerminateIn)
        pid = request.match_info["id"]
        tp = await self.tp.act(self.tp.terminate, pid, [data.reason], data.code)
        return web.json_response(tp.model_dump())


MAX_OFFSET = 2**62


def _dataset_view(dataset: Dataset) -> dict[str, Any]:
    """A dataset as the API shows it, flagged when its source is known to be unreachable
    (`source_problem`: a file gone or unreadable; an upstream whose last read failed)."""
    return dataset.model_dump() | {"source_problem": sources.problem(dataset.source)}


def _paging(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "100"))
        offset = int(request.query.get("offset", "0"))
    except ValueError as exc:
        raise BadRequest("limit and offset must be integers") from exc
    # the store binds both as 64-bit integers; a larger offset is no page of anything
    if not 1 <= limit <= 1000 or not 0 <= offset <= MAX_OFFSET:
        raise BadRequest(f"limit must be 1..1000 and offset 0..{MAX_OFFSET}")
    return limit, offset


__all__ = ["DSP_PATH", "ROUTES", "ManagementApi"]
