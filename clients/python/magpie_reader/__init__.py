"""Read magpie-stream topics from Python: records as dicts, or an iterable dataset that commits when told.

Records are Avro. In magpie's own format the value is the bare Avro body and two headers name the writer
schema (``magpie-schema``) and its fingerprint (``magpie-schema-fp``, hex SHA-256 of the Parsing Canonical
Form); writer schemas live in the compacted ``_magpie-schemas`` topic, keyed by fingerprint. In Confluent's
format (topologies with ``serde.registry``) the value is a zero byte, a 4-byte schema id and the body, and the
writer schema comes from the registry. Only committed records are read (``isolation.level=read_committed``).
"""

from .reader import MagpieDataset, MagpieReader, Record, SchemaStore

__all__ = ["MagpieReader", "MagpieDataset", "Record", "SchemaStore"]
