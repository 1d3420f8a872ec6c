"""embedder: all-MiniLM-L6-v2 (ONNX Runtime) vectors for viable posts, cached in Redis.

Reads:   <prefix>.pipeline.posts.viable    post.upsert | post.delete | account.purge
Writes:  <prefix>.pipeline.posts.embedded  key {"account_id"}  post.embedded (+ deletes/purges unchanged)
         <prefix>.pipeline.posts.viable.dlq
Cache:   Redis emb:<model id>:<sha256 of text> → float32 bytes
"""

from __future__ import annotations

from confluent_kafka import Message

from services.embedder.core import PostEmbedding
from shared.cache import EmbeddingCache, connect_redis
from shared.config import KafkaSettings, ModelSettings, RedisSettings, ServiceSettings, dlq_topic
from shared.embedding import load_text_embedder
from shared.events import MalformedEvent, account_key, encode, parse_pipeline_event
from shared.health import Heartbeat, HealthServer, kafka_reachable, shutdown_event
from shared.kafka import BatchLoop, BatchResult, DeadLetter, OutboundMessage, ensure_topics, make_consumer, make_producer
from shared.logging import configure_logging, get_logger
from shared.metrics import STAGE_SECONDS


class EmbedderService:
    def __init__(self, kafka: KafkaSettings, embedding: PostEmbedding) -> None:
        self.kafka = kafka
        self.embedding = embedding

    def handle_batch(self, messages: list[Message]) -> BatchResult:
        result, events = BatchResult(), []
        for message in messages:
            try:
                event = parse_pipeline_event(message.value())
                if event.kind == "post.embedded":
                    raise MalformedEvent("already embedded: wrong topic")
                events.append(event)
            except MalformedEvent as exc:
                result.dead_letters.append(DeadLetter(message, exc))
        with STAGE_SECONDS.labels(stage="embed_batch").time():
            processed = self.embedding.process(events)
        for event in processed:
            account_id = event.post.account_id if event.kind == "post.embedded" else event.account_id
            result.outputs.append(OutboundMessage(self.kafka.embedded_posts_topic, account_key(account_id or 0),
                                                  encode(event)))
        return result


def main() -> None:
    settings, kafka, model, redis_settings = ServiceSettings(), KafkaSettings(), ModelSettings(), RedisSettings()
    configure_logging(settings.log_level, service="embedder")
    embedder = load_text_embedder(model.model_cache_dir, batch_size=model.embedding_batch_size,
                                  intra_op_threads=model.embedding_threads)
    get_logger("embedder").info("model loaded", model_id=embedder.model_id)
    redis_client = connect_redis(redis_settings.redis_url)
    cache = EmbeddingCache(redis_client, embedder.model_id)
    service = EmbedderService(kafka, PostEmbedding(embedder, cache))
    source = kafka.viable_posts_topic
    ensure_topics(kafka, [source, kafka.embedded_posts_topic, dlq_topic(source)])
    heartbeat, stop = Heartbeat(), shutdown_event()
    # Redis is a cache here: the embedder keeps working without it, so it is not a readiness check.
    HealthServer(settings.metrics_port, heartbeat, {"kafka": kafka_reachable(kafka.kafka_bootstrap_servers)}).start()
    BatchLoop(service="embedder", settings=kafka, consumer=make_consumer(kafka, f"{kafka.topic_prefix}-embedder"),
              producer=make_producer(kafka), topics=[source], handle_batch=service.handle_batch, stop=stop,
              heartbeat=heartbeat).run()


if __name__ == "__main__":
    main()
