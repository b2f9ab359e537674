"""``python -m magpie_reader --bootstrap HOST:PORT --topic T --group G``: records as JSON lines on stdout."""

import argparse
import base64
import datetime
import json
import sys

from .reader import DEFAULT_SCHEMA_TOPIC, MagpieReader


def _plain(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(f"cannot print {type(value).__name__}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m magpie_reader", description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--schema-topic", default=DEFAULT_SCHEMA_TOPIC)
    parser.add_argument("--registry-url")
    parser.add_argument("--max", type=int, help="stop after this many records")
    parser.add_argument("--idle-timeout", type=float, default=10.0, help="stop once every partition was at its end this long")
    parser.add_argument("--commit", action="store_true", help="commit the offsets of the records printed")
    parser.add_argument("--meta", action="store_true", help="wrap each record with topic, partition, offset, key")
    args = parser.parse_args()
    with MagpieReader(args.bootstrap, args.topic, args.group, schema_topic=args.schema_topic, registry_url=args.registry_url) as reader:
        for r in reader.records(args.max, args.idle_timeout):
            line = {"topic": r.topic, "partition": r.partition, "offset": r.offset, "key": r.key, "value": r.value} if args.meta else r.value
            sys.stdout.write(json.dumps(line, default=_plain) + "\n")
        if args.commit:
            reader.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
