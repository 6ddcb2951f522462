"""Assembles a running connector: store, identity, services, and the two listeners."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web
from aiohttp.typedefs import Middleware

from connector import observability, tck
from connector.authority.registry import Registry
from connector.authority.routes import Authority
from connector.catalog.federated.service import FederatedCatalog
from connector.config import DSP_PATH, Settings
from connector.credentials.api import CredentialsApi
from connector.credentials.holder import Holder
from connector.credentials.verifier import CredentialVerifier
from connector.credentials.wallet import Wallet
from connector.dataplane import streams
from connector.dataplane.jobs import DataJobs
from connector.dataplane.routes import DataPlaneRoutes
from connector.dsp.control import TransferControl
from connector.dsp.negotiation import NegotiationService
from connector.dsp.routes import DspRoutes
from connector.dsp.transfer import TransferService
from connector.dsp.watchdog import Watchdog
from connector.edge import GuardedSite, install_log_filter, request_guard
from connector.errors import ConfigError
from connector.files import private_dir
from connector.http import Handler, problems, public_errors
from connector.identity import keys as keyfile
from connector.management.routes import ManagementApi, api_key_middleware
from connector.metering.routes import MeteringRoutes
from connector.model.records import DecisionRecord
from connector.outbox import Outbox
from connector.peer.auth import Authenticator
from connector.peer.client import DspClient
from connector.policy.decision import DecisionPoint, PermitAll
from connector.policy.engines import EmbeddedEngine, Engine, OpaServerEngine, PolicyError
from connector.policy.point import RegoDecisionPoint, decision_inputs_keeper
from connector.runtime import Runtime, egress_for
from connector.store.gateway import Database
from connector.store.open import open_store
from connector.usage.api import UsageApi
from connector.usage.peer_routes import UsagePeerRoutes
from connector.usage.service import Usage
from connector.usage.uses import wallet_claims

log = logging.getLogger(__name__)


def store_batch(db: Database) -> Middleware:
    """A DSP request's token id and decisions are written with the state change it makes."""

    @web.middleware
    async def batch(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(DSP_PATH):
            return await handler(request)  # data-plane streams answer as they go
        async with db.batch():
            return await handler(request)

    return batch


class Connector:
    """One participant's connector; `start` binds both listeners, `stop` drains them."""

    def __init__(self, settings: Settings, decisions: DecisionPoint | None = None) -> None:
        self.settings = settings
        self._decisions = decisions
        self.policy: RegoDecisionPoint | None = None
        self._runners: list[web.AppRunner] = []
        self._worker: asyncio.Task[None] | None = None
        self.usage: Usage | None = None
        self.holder: Holder | None = None
        self.authority: Authority | None = None
        self.runtime: Runtime | None = None
        self.federated: FederatedCatalog | None = None
        self.watchdog: Watchdog | None = None
        self.public_port = settings.public_port
        self.management_port = settings.management_port

    async def start(self) -> None:
        s = self.settings
        observability.configure_logging(s.log_format)
        install_log_filter()
        private_dir(s.data_dir)
        pair = keyfile.load(s.private_key_path)
        # no store statement runs on the event loop (StoreOnEventLoop): the store is opened
        # and migrated on a thread, and reached through `db` (connector/store/gateway.py)
        writer = await asyncio.to_thread(open_store, s, forbid_event_loop=True)
        db = Database(writer, lambda: open_store(s, migrate=False, forbid_event_loop=True))
        egress = egress_for(s)
        decisions = self._decisions or await self._decision_point(db)
        rt = Runtime(settings=s, db=db, keys=pair, egress=egress, decisions=decisions)
        self.runtime = rt
        outbox = Outbox(rt)
        client = DspClient(rt)
        self.negotiations = NegotiationService(rt, outbox, client)
        self.transfers = TransferService(rt, outbox, client)
        self.outbox = outbox
        usage = Usage(rt, outbox, client, self.transfers.terminate)
        self.transfers.usage = usage
        self.usage = usage
        control = TransferControl(rt, self.transfers)  # the data plane's way to it
        data_jobs = DataJobs(rt, outbox, client, control, usage.delivered).register()
        # deletion deadlines that passed while we were stopped: before anything is served
        await usage.catch_up()
        streams.sweep_parts(rt)
        # TCK mode (conformance testing, loopback only; see connector/tck): off by default.
        tck_auth = s.tck_authorization.get_secret_value() if s.tck_authorization else ""
        static = tck.static_callers(tck_auth) if s.tck_mode else None
        credentials = CredentialVerifier(
            egress, rt.resolver, rt.did, s.trusted_issuers, s.credential_cache_seconds, rt.issuer
        )
        auth = Authenticator(rt.verifier, static, credentials, s.require_membership)
        self.auth = auth
        holder = Holder(rt, Wallet(s.wallet_path), client)
        self.holder = holder
        # the consumer's use decision sees its own verified credentials (issue 17)
        usage.uses.own_claims = wallet_claims(
            credentials, holder.wallet, s.issuer_url, s.credential_cache_seconds
        )
        authority = Authority(rt, auth, Registry(s.registry_path)) if s.authority else None
        self.authority = authority

        public = web.Application(
            middlewares=[
                observability.log_context,
                public_errors,
                store_batch(db),
                request_guard(s.http_body_timeout_seconds),
            ],
            client_max_size=4 * 1024 * 1024,
        )
        observability.Health(self).add_to(public)
        DspRoutes(rt, auth, self.negotiations, self.transfers).add_to(public)
        DataPlaneRoutes(rt, control, data_jobs.settle_later, usage.delivered).add_to(public)
        MeteringRoutes(rt, auth).add_to(public)
        UsagePeerRoutes(rt, auth, usage).add_to(public)
        holder.add_to(public)
        if authority is not None:
            authority.add_public(public)
        if s.tck_mode:
            await tck.install(public, rt, self.negotiations, self.transfers, tck_auth)

        management = web.Application(
            middlewares=[
                observability.log_context,
                problems,
                request_guard(s.http_body_timeout_seconds),
                api_key_middleware(s.api_key.get_secret_value()),
            ]
        )
        observability.add_metrics(management, db)
        self.federated = FederatedCatalog(rt, client)  # off unless federated_catalog = true
        ManagementApi(
            rt,
            client,
            self.negotiations,
            self.transfers,
            self.policy,
            extra=[
                *UsageApi(rt, usage).routes(),
                *CredentialsApi(holder, credentials).routes(),
                *(authority.routes() if authority else []),
                *self.federated.routes(),
            ],
        ).add_to(management)

        ssl_ctx = None
        if s.tls_cert and s.tls_key:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(str(s.tls_cert), str(s.tls_key))
        self.public_port = await self._listen(public, s.public_host, s.public_port, ssl_ctx)
        self.management_port = await self._listen(
            management, s.management_host, s.management_port, None
        )
        self._worker = asyncio.create_task(outbox.run())
        usage.start()
        self.watchdog = Watchdog(rt, self.transfers, self.negotiations)
        self.watchdog.start()
        holder.start()
        self.federated.start()
        log.info(
            "connector %s (%s) listening: public %s, management %s:%s",
            s.name,
            rt.did,
            s.base_url,
            s.management_host,
            self.management_port,
        )

    @property
    def outbox_running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def _decision_point(self, db: Database) -> DecisionPoint:
        """The configured engine with the policies loaded; a bad library stops the start."""
        s = self.settings
        if s.policy_engine == "permit-all":
            return PermitAll()
        opa_bin = s.opa_binary
        engine: Engine
        if s.policy_engine == "embedded":
            if opa_bin is None:
                raise ConfigError(
                    "policy_engine = embedded needs the opa binary to compile the policies:"
                    " set opa_bin (or OPA_BIN), or put opa on PATH"
                )
            engine = EmbeddedEngine(opa_bin)
        else:
            engine = OpaServerEngine(s.opa_url or "")

        keep_inputs = decision_inputs_keeper(s.decision_log_input_days)

        async def record(decisions: list[DecisionRecord]) -> None:
            # with the state change the decision led to, when there is one (one commit)
            # (and at most once an hour, forget the inputs older than decision_log_input_days)
            decisions, forget = keep_inputs(decisions)
            await db.later(lambda store: store.add_decisions(decisions, forget_before=forget))

        point = RegoDecisionPoint(engine, s.policy_folder, record, opa_bin=opa_bin)
        try:
            await point.load()
        except PolicyError as exc:
            await engine.close()
            raise ConfigError(
                f"policies in {s.policy_folder} cannot be used: {exc.detail}"
            ) from exc
        point.watch(s.policy_reload_seconds)
        self.policy = point
        return point

    async def _listen(
        self, app: web.Application, host: str, port: int, ssl_ctx: ssl.SSLContext | None
    ) -> int:
        # at stop, requests under way get the grace (plus a second for short ones); a pull
        # still streaming then is cut, its metering closed as interrupted, and the consumer
        # resumes from another replica (or this one restarted) with Range
        s = self.settings
        grace = s.shutdown_grace_seconds + 1.0
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=grace,
            # aiohttp closes a connection that has not delivered a whole request this long
            # after it opened (or after the previous answer): the header read timeout
            keepalive_timeout=s.http_header_timeout_seconds,
            # a body the handler left unread is drained after the answer for at most this long
            lingering_time=s.http_body_timeout_seconds,
        )
        await runner.setup()
        site = GuardedSite(
            runner,
            host,
            port,
            ssl_context=ssl_ctx,
            max_connections_per_client=s.max_connections_per_client,
            handshake_timeout=s.http_header_timeout_seconds,
        )
        await site.start()
        self._runners.append(runner)
        return site.port

    async def stop(self) -> None:
        if self.watchdog is not None:
            await self.watchdog.stop()
        if self.federated is not None:
            await self.federated.stop()
        if self.usage is not None:
            await self.usage.stop()
        if self.holder is not None:
            await self.holder.stop()
        if self.authority is not None:
            self.authority.registry.close()
        if self.runtime is not None:
            await self.outbox.stop(self.settings.shutdown_grace_seconds)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.policy is not None:
            await self.policy.close()
        if self.runtime is not None:
            await self.runtime.egress.close()
            self.runtime.db.close()
