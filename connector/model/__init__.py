"""The bottom layer: records, enums, DSP messages and state tables, job payloads.

Nothing here imports the rest of the connector (only `connector.errors`), so every other
layer can use these types without an import cycle.
"""
