"""A local stand-in for Entra ID (login) and Microsoft Graph mail, served over HTTPS.

Used by the test suite, by `smtp-graph-gateway demo` and by users' dry runs: it issues tokens to
real msal clients, accepts `sendMail` (JSON and MIME), drafts and upload sessions with Graph's
limits and error codes, records every accepted message in an outbox directory, and injects
faults (latency, throttling, outages, refused mailboxes) on demand. It imports nothing from the
rest of the gateway.
"""

from gateway.emulator.faults import Faults
from gateway.emulator.messages import DeliveredAttachment
from gateway.emulator.outbox import DeliveredMessage
from gateway.emulator.server import Emulator, running_emulator
from gateway.emulator.settings import EmulatorApp, EmulatorSettings, load_apps
from gateway.emulator.stats import EmulatorStats, RequestRecord

__all__ = [
    "DeliveredAttachment",
    "DeliveredMessage",
    "Emulator",
    "EmulatorApp",
    "EmulatorSettings",
    "EmulatorStats",
    "Faults",
    "RequestRecord",
    "load_apps",
    "running_emulator",
]
