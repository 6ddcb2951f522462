"""The data space authority role: participant registry, credential issuance, status list."""
