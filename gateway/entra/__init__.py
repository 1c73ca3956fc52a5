"""Entra ID: app credentials (secrets, certificates), access tokens with msal, delegated
sign-in. The only msal user; shared by both transports and `check`."""
