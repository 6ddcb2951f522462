"""Dataspace Protocol 2025-1: messages, state machines, HTTPS routes and the client."""
