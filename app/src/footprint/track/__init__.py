"""Page views from your own web app: one line around your ASGI (FastAPI, Starlette) or WSGI (Flask,
Django) app.

    from footprint.track import FootprintASGI, HttpSender
    app = FootprintASGI(app, HttpSender("https://collector.example.org", key="PUBLIC_KEY"))

Every request becomes a page event (method, path, time, referrer host, visitor): while the request
comes in the middleware keeps only its few fields, and once the response is sent it builds the event
and queues it in a sender: ``HttpSender`` batches them to the collector's ``POST /v1/events`` (no
dependency beyond Python), ``KafkaSender`` validates and produces them straight to the topic from its
own thread (``pip install footprint[kafka]``), ``KafkaRelaySender`` the same from a process of its own (the
app's process then only writes each event as a line to its pipe).
A full queue, a collector or Kafka outage or a bug in here never slows or fails your request: the
event is dropped and counted (``sender.dropped``).
"""

from footprint.track.asgi import FootprintASGI
from footprint.track.record import PageRecorder
from footprint.track.senders import HttpSender, KafkaRelaySender, KafkaSender, Sender
from footprint.track.wsgi import FootprintWSGI

__all__ = ["FootprintASGI", "FootprintWSGI", "HttpSender", "KafkaRelaySender", "KafkaSender", "PageRecorder", "Sender"]
