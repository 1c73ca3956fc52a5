"""The operator console: a web page and JSON API over the queue, the tenants' health and the
gateway's readiness, for signed-in viewers and operators (`console.listen`)."""

from gateway.console.auth import Authenticator
from gateway.console.context import Context
from gateway.console.server import ConsoleServer
from gateway.console.service import ConsoleService
from gateway.console.sessions import Sessions

__all__ = ["Authenticator", "ConsoleServer", "ConsoleService", "Context", "Sessions"]
