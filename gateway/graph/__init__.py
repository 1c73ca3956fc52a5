"""Microsoft Graph: the HTTP client (the only aiohttp client) and token providers (msal)."""
