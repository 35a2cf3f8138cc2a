"""Pure domain functions of the feasibility service: no I/O, no asyncio, no SQL."""
