"""Pure domain functions of the billing service: no I/O, no asyncio, no SQL."""
