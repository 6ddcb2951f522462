"""TCK mode: what the Eclipse DSP TCK needs from a connector under test, and nothing else.

Enabled only by `tck_mode = true` (with `tck_authorization`), and then only on loopback
(see config.Settings). It seeds the TCK's datasets, offers and agreements, scripts our side
of each TCK case, adds the TCK's two webhooks to the public listener, and maps the TCK's
Authorization value to the participant TCK_PARTICIPANT. See tests/tck/run_tck.py.
"""

from __future__ import annotations

from aiohttp import web

from connector.dsp.negotiation import NegotiationService
from connector.dsp.transfer import TransferService
from connector.runtime import Runtime
from connector.tck.cases import TCK_PARTICIPANT
from connector.tck.routes import TckWebhooks
from connector.tck.scripts import NegotiationScript, TransferScript
from connector.tck.seed import seed

__all__ = ["TCK_PARTICIPANT", "install", "static_callers"]


def static_callers(authorization: str) -> dict[str, str]:
    """Authorization header value -> participant id, for the DSP Authenticator."""
    return {authorization: TCK_PARTICIPANT}


async def install(
    app: web.Application,
    runtime: Runtime,
    negotiations: NegotiationService,
    transfers: TransferService,
    authorization: str,
) -> None:
    await seed(runtime)
    negotiations.script = NegotiationScript(negotiations)
    transfers.script = TransferScript(transfers)
    TckWebhooks(runtime, negotiations, transfers, authorization).add_to(app)
