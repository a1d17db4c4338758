"""Entities, enums and rules of qroute: pure Python, no I/O, no gRPC, no asyncio."""
