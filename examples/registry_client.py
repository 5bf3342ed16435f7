"""Integration example for teams with a Schema Registry: publish texts framed with their registered schema id and
read registry-framed scores, with confluent-kafka's own Avro serializer and deserializer.

Imports nothing from this project: the producer registers the input schema (schemas/text_message.avsc, or any
compatible evolution of it) under '<input topic>-value'; the scorer (run with --schema-registry-url) registers
SentimentScore under '<output topic>-value'; the consumer needs no schema file at all.

    python examples/registry_client.py --bootstrap 127.0.0.1:9092 --schema-registry-url http://127.0.0.1:8081 \
        "a wonderful film" "a dull, lifeless plot"
"""

import argparse
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("texts", nargs="+")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--schema-registry-url", default="http://127.0.0.1:8081")
    parser.add_argument("--input-topic", default="text-messages")
    parser.add_argument("--output-topic", default="sentiment-scores")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    # The client's default is to wait for an answer forever; a bounded request fails with a clear error instead.
    registry = SchemaRegistryClient({"url": args.schema_registry_url, "timeout": 30})

    # Producer side: the serializer registers the schema once (cached) and frames every record with its id.
    serialize = AvroSerializer(
        registry,
        (SCHEMAS / "text_message.avsc").read_text(),
        conf={"subject.name.strategy": topic_subject_name_strategy},  # '<topic>-value', the scorer's default too
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    ids = []
    for text in args.texts:
        record = {"id": str(uuid.uuid4()), "text": text, "produced_at": int(time.time() * 1000)}
        value = serialize(record, SerializationContext(args.input_topic, MessageField.VALUE))
        producer.produce(args.input_topic, key=record["id"].encode(), value=value)
        ids.append(record["id"])
    assert producer.flush(30) == 0, "not all texts were acknowledged"

    # Consumer side: the deserializer fetches the writer schema by the id in each record's frame.
    deserialize = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"example-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",  # only committed scores when workers run --delivery exactly-once
        }
    )
    consumer.subscribe([args.output_topic])
    wanted, deadline = set(ids), time.monotonic() + args.timeout
    try:
        while wanted and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            score = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            if score["id"] in wanted:
                wanted.discard(score["id"])
                print(f"{score['id']}  {score['label']:<8} {score['score']:.3f}  model {score['model_version']}")
    finally:
        consumer.close()
    if wanted:
        raise SystemExit(f"{len(wanted)} of {len(ids)} texts got no score within {args.timeout:.0f}s")


if __name__ == "__main__":
    main()
