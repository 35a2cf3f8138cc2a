"""Pure domain functions of the meter-sim service: no I/O, no asyncio, no SQL."""
