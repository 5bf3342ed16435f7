"""Integration example for other teams: publish texts and read their scores with plain confluent-kafka + fastavro.

Reads only the project's public contract (the two .avsc files in schemas/); imports nothing from this project.

    python examples/plain_client.py --bootstrap 127.0.0.1:19092 "a wonderful film" "a dull, lifeless plot"
"""

import argparse
import io
import json
import time
import uuid
from pathlib import Path

import fastavro
from confluent_kafka import Consumer, Producer

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
TEXT_MESSAGE = fastavro.parse_schema(json.loads((SCHEMAS / "text_message.avsc").read_text()))
SENTIMENT_SCORE = fastavro.parse_schema(json.loads((SCHEMAS / "sentiment_score.avsc").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("texts", nargs="+")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--input-topic", default="text-messages")
    parser.add_argument("--output-topic", default="sentiment-scores")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    # Producer side: one Avro record per text, keyed by its id.
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    ids = []
    for text in args.texts:
        record = {"id": str(uuid.uuid4()), "text": text, "produced_at": int(time.time() * 1000)}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, TEXT_MESSAGE, record)
        producer.produce(args.input_topic, key=record["id"].encode(), value=buf.getvalue())
        ids.append(record["id"])
    assert producer.flush(30) == 0, "not all texts were acknowledged"

    # Consumer side: read SentimentScore records until every id has its score.
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
            score = fastavro.schemaless_reader(io.BytesIO(msg.value()), SENTIMENT_SCORE, None)
            if score["id"] in wanted:
                wanted.discard(score["id"])
                print(
                    json.dumps(
                        {
                            "id": score["id"],
                            "label": score["label"],
                            "score": round(score["score"], 4),
                            "model_version": score["model_version"],
                        }
                    )
                )
    finally:
        consumer.close()
    if wanted:
        raise SystemExit(f"{len(wanted)} scores did not arrive within {args.timeout}s")


if __name__ == "__main__":
    main()
