from __future__ import annotations

import io
import json
import struct
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

SCHEMA_HEADER = "magpie-schema"
FINGERPRINT_HEADER = "magpie-schema-fp"
DEFAULT_SCHEMA_TOPIC = "_magpie-schemas"


@dataclass(frozen=True)
class Record:
    """One decoded record and where it came from."""

    value: Dict[str, Any]
    topic: str
    partition: int
    offset: int
    key: Optional[str]
    schema: Optional[str]


def _parse(schema_json: str) -> Any:
    # A fresh named-type table per schema: two versions of magpie.Conversation must not collide.
    return fastavro.parse_schema(json.loads(schema_json), named_schemas={})


class SchemaStore:
    """Writer schemas by fingerprint, read from the ``_magpie-schemas`` topic; read again on a miss."""

    def __init__(self, bootstrap: str, topic: str = DEFAULT_SCHEMA_TOPIC, config: Optional[Dict[str, Any]] = None):
        self._bootstrap = bootstrap
        self._topic = topic
        self._config = dict(config or {})
        self._schemas: Dict[str, Any] = {}

    def get(self, fingerprint: str) -> Any:
        if fingerprint not in self._schemas:
            self._load()
        if fingerprint not in self._schemas:
            raise LookupError(f"writer schema {fingerprint} is not in the schema store topic {self._topic}: "
                              "was the record produced by magpie with the same schema store topic?")
        return self._schemas[fingerprint]

    def _load(self) -> None:
        consumer = Consumer({**self._config, "bootstrap.servers": self._bootstrap, "group.id": "magpie-reader-schemas",
                             "enable.auto.commit": False, "isolation.level": "read_committed"})
        try:
            metadata = consumer.list_topics(self._topic, timeout=30)
            partitions = metadata.topics[self._topic].partitions
            ends = {}
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(self._topic, p), timeout=30)
                if high > low:
                    ends[p] = high
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in ends])
            while ends:
                msg = consumer.poll(5.0)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        ends.pop(msg.partition(), None)
                        continue
                    raise KafkaException(msg.error())
                if msg.key() is not None and msg.value() is not None:
                    self._schemas[msg.key().decode()] = _parse(msg.value().decode())
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
        finally:
            consumer.close()


class RegistrySchemas:
    """Writer schemas by id from a Confluent Schema Registry (``GET /schemas/ids/<id>``)."""

    def __init__(self, url: str):
        self._url = url.rstrip("/")
        self._schemas: Dict[int, Any] = {}

    def get(self, schema_id: int) -> Any:
        if schema_id not in self._schemas:
            with urllib.request.urlopen(f"{self._url}/schemas/ids/{schema_id}", timeout=30) as response:
                self._schemas[schema_id] = _parse(json.load(response)["schema"])
        return self._schemas[schema_id]


class MagpieReader:
    """
    Committed records of a topic, decoded to dicts, in a consumer group. Offsets are committed only when
    ``commit()`` is called, for the records handed out so far: call it once their use is durable (a training
    step done, a checkpoint written), and a restart resumes after them and never skips one.
    """

    def __init__(self, bootstrap: str, topic: str, group_id: str, *, schema_topic: str = DEFAULT_SCHEMA_TOPIC,
                 registry_url: Optional[str] = None, reader_schema: Optional[Dict[str, Any]] = None,
                 config: Optional[Dict[str, Any]] = None):
        extra = dict(config or {})
        self._topic = topic
        self._consumer = Consumer({**extra, "bootstrap.servers": bootstrap, "group.id": group_id,
                                   "isolation.level": "read_committed", "enable.auto.commit": False,
                                   "auto.offset.reset": "earliest", "enable.partition.eof": True})
        self._consumer.subscribe([topic])
        self._store = SchemaStore(bootstrap, schema_topic, extra)
        self._registry = RegistrySchemas(registry_url) if registry_url else None
        self._reader = fastavro.parse_schema(reader_schema, named_schemas={}) if reader_schema else None
        self._positions: Dict[Tuple[str, int], int] = {}

    def decode(self, value: bytes, headers: Dict[str, str]) -> Dict[str, Any]:
        fingerprint = headers.get(FINGERPRINT_HEADER)
        if fingerprint is not None:
            writer, body = self._store.get(fingerprint), value
        elif self._registry is not None and len(value) >= 5 and value[0] == 0:
            writer, body = self._registry.get(struct.unpack(">I", value[1:5])[0]), value[5:]
        else:
            raise ValueError("record has neither a magpie-schema-fp header nor the Confluent wire format (with registry_url)")
        return fastavro.schemaless_reader(io.BytesIO(body), writer, self._reader)

    def records(self, max_records: Optional[int] = None, idle_timeout: Optional[float] = None) -> Iterator[Record]:
        """Yields records; ends after ``max_records``, or when every partition is at its end for ``idle_timeout`` s."""
        count = 0
        at_end = set()
        idle = 0.0
        while max_records is None or count < max_records:
            msg = self._consumer.poll(1.0)
            if msg is None:
                idle += 1.0
                assigned = {tp.partition for tp in self._consumer.assignment()}
                if idle_timeout is not None and idle >= idle_timeout and assigned and assigned <= at_end:
                    return
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                raise KafkaException(msg.error())
            idle = 0.0
            at_end.discard(msg.partition())
            headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (msg.headers() or [])}
            value = self.decode(msg.value(), headers)
            self._positions[(msg.topic(), msg.partition())] = msg.offset() + 1
            count += 1
            yield Record(value=value, topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                         key=msg.key().decode() if msg.key() is not None else None, schema=headers.get(SCHEMA_HEADER))

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return (r.value for r in self.records())

    def commit(self) -> List[TopicPartition]:
        """Commits, synchronously, the offsets after every record handed out so far."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        return offsets

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "MagpieReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


try:  # A torch IterableDataset when PyTorch is installed; the same protocol without it.
    from torch.utils.data import IterableDataset as _DatasetBase  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _DatasetBase = object  # type: ignore


class MagpieDataset(_DatasetBase):  # type: ignore[misc,valid-type]
    """
    A PyTorch-style iterable dataset over a topic: iterating yields record dicts; offsets are committed only
    when ``commit()`` is called (e.g. after an optimizer step), so records are never lost to a crash between
    reading and training on them. Use with ``num_workers=0``: one consumer holds the group's positions.
    """

    def __init__(self, bootstrap: str, topic: str, group_id: str, **reader_options: Any):
        super().__init__()
        self._reader = MagpieReader(bootstrap, topic, group_id, **{k: v for k, v in reader_options.items() if k not in ("max_records", "idle_timeout")})
        self._max_records = reader_options.get("max_records")
        self._idle_timeout = reader_options.get("idle_timeout")

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return (r.value for r in self._reader.records(self._max_records, self._idle_timeout))

    def commit(self) -> List[TopicPartition]:
        return self._reader.commit()

    def close(self) -> None:
        self._reader.close()
