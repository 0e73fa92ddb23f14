"""The wire contract as msgspec types: what clients send, what the gateway sends back.

`protocol/schema.json` is generated from these types (`python -m gateway.wire.schema`).
"""
