"""Our SWIM: the sans-I/O core (protocol, codec) and its asyncio UDP shell (transport)."""
