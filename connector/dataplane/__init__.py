"""Moving the bytes: sources, transfer tokens, pull and push streams."""
