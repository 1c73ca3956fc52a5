"""Pure message handling: header parsing, recipient reconciliation, and MIME preparation."""
