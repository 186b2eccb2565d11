-- footprint audit (audit.py) counts the events of every hour of received_at (when the collector
-- received them: their Kafka messages' timestamp) against what Kafka accepted in that hour. An index
-- on it, with the event id, makes each count an index-only range scan of the hours asked, however many
-- events the table holds (every monthly partition gets its own; a range probes each partition's).
-- Building it holds up the consumer's inserts as long as building one index on events takes.
CREATE INDEX IF NOT EXISTS events_received_idx ON events (received_at) INCLUDE (event_id);
