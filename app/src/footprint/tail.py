"""``footprint tail``: print events as they arrive on the topic."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from typing import TextIO

from confluent_kafka import Consumer

from footprint.contract import decode_message
from footprint.settings import KafkaSettings


def tail(
    settings: KafkaSettings,
    stop: threading.Event,
    from_beginning: bool = False,
    max_events: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Follow the topic with a throwaway group (commits nothing); returns events printed."""
    consumer = Consumer({
        **settings.kafka_client_config("consumer"),
        "group.id": f"footprint-tail-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
    })
    consumer.subscribe([settings.kafka_topic])
    printed = 0
    try:
        while not stop.is_set() and (max_events is None or printed < max_events):
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            try:
                line = decode_message(msg.value())[1].decode()
            except ValueError as exc:
                line = json.dumps({"invalid": True, "reason": str(exc)[:200], "partition": msg.partition(),
                                   "offset": msg.offset()})
            out.write(line + "\n")
            out.flush()
            printed += 1
    finally:
        consumer.close()
    return printed
