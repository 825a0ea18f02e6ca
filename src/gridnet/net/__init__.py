"""Transports: in-memory (simulation and tests); asyncio TCP comes with the real network."""
