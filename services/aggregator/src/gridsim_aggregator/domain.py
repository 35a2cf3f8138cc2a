"""Pure domain functions of the aggregator service: no I/O, no asyncio, no SQL."""
