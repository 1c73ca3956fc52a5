"""A local stand-in for Entra ID (login) and Microsoft Graph mail, served over HTTPS.

Used by the test suite, by `smtp-graph-gateway demo` and by users' dry runs: it issues tokens to
real msal clients (client credentials, and delegated sign-in by device code or authorization
code with PKCE, with refresh tokens that can be revoked), accepts `sendMail` (JSON and MIME, for
`/users/{id}` and a signed-in user's `/me`), drafts and upload sessions with Graph's limits and
error codes, optionally runs an SMTP submission listener like smtp.office365.com:587 (STARTTLS,
AUTH XOAUTH2), records every accepted message in an outbox directory, and injects faults
(latency, throttling, outages, refused mailboxes, SMTP replies) on demand. Apps may prove
themselves with federated credentials (tokens of a test Kubernetes issuer it serves, or of a
managed identity, whose endpoints it serves too). It imports nothing from the rest of the
gateway.
"""

from gateway.emulator.faults import Faults
from gateway.emulator.identities import EmulatorManagedIdentity, FederatedCredential
from gateway.emulator.messages import DeliveredAttachment
from gateway.emulator.outbox import DeliveredMessage, Envelope
from gateway.emulator.server import Emulator, running_emulator
from gateway.emulator.settings import (
    MSA_TENANT_ID,
    EmulatorApp,
    EmulatorSettings,
    EmulatorUser,
    load_apps,
    load_managed_identities,
    load_users,
)
from gateway.emulator.signin import DeviceFlow, SignInRefused
from gateway.emulator.stats import EmulatorStats, FederatedUse, RequestRecord

__all__ = [
    "MSA_TENANT_ID",
    "DeliveredAttachment",
    "DeliveredMessage",
    "DeviceFlow",
    "Emulator",
    "EmulatorApp",
    "EmulatorManagedIdentity",
    "EmulatorSettings",
    "EmulatorStats",
    "EmulatorUser",
    "Envelope",
    "Faults",
    "FederatedCredential",
    "FederatedUse",
    "RequestRecord",
    "SignInRefused",
    "load_apps",
    "load_managed_identities",
    "load_users",
    "running_emulator",
]
