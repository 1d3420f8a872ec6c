"""The topology declared once (shared/topology.py): the names it gives are the ones the pipeline has
always used, and docs/architecture.md's table is generated from it."""

from devstack.stack import SERVICES, StackConfig
from services.query.app import QuerySettings
from services.query.status import pipeline_services
from shared import topology
from shared.config import KafkaSettings


def test_topic_names_are_the_pipelines():
    kafka = KafkaSettings(topic_prefix="p", source_database="db")
    assert (kafka.accounts_topic, kafka.posts_topic, kafka.signal_topic) == ("p.db.accounts", "p.db.posts", "p-signal")
    assert kafka.viable_posts_topic == "p.pipeline.posts.viable"
    assert kafka.embedded_posts_topic == "p.pipeline.posts.embedded"
    assert kafka.source_topic("other") == "p.db.other"


def test_group_names_live_and_per_version():
    assert [topology.live_group(s, "p") for s in ("viability", "embedder", "classifier", "indexer", "summarizer")] == [
        "p-viability", "p-embedder", "p-classifier", "p-indexer", "p-summarizer"]
    assert topology.live_group("cdc", "p") == "p-cdc-signals"
    assert topology.version_group("indexer", "p", "posts_v2") == "p-indexer-posts_v2"
    assert topology.version_group("classifier", "p", "posts_v2") == "p-indexer-posts_v2-classifier"
    assert topology.version_group("summarizer", "p", "posts_v2") == "p-summarizer-posts_v2"


def test_every_topic_a_stage_reads_is_written_by_a_stage():
    written = {role for stage in topology.STAGES for role in stage.outputs}
    for stage in topology.STAGES:
        assert set(stage.inputs) <= written, f"{stage.name} reads a topic no stage writes"


def test_local_stack_and_status_page_follow_the_declaration():
    assert list(SERVICES) == ["cdc", "viability", "embedder", "classifier", "query"]
    assert SERVICES["query"] == ("services.query.edge_host", '"ready"')
    config = StackConfig(root=None, query_port=8000)  # type: ignore[arg-type]
    assert [config.ops_port(name) for name in SERVICES] == [8001, 8002, 8003, 8004, 0]
    urls = QuerySettings(query_port=8000, status_metrics_urls="local").metrics_urls()
    assert urls == {name: f"http://127.0.0.1:{config.ops_port(name)}/metrics" for name in topology.local_workers()}


def test_architecture_table_is_generated_from_the_declaration():
    page = topology.ARCHITECTURE_DOC.read_text()
    assert topology.rendered_page(page) == page, "docs/architecture.md is stale: run `python -m shared.topology --write`"
    for stage in topology.STAGES:
        assert f"| {stage.name} | `{stage.module}` |" in page


def test_status_page_rows_are_the_pipelines():
    rows = [(s.name, s.group, s.topics) for s in pipeline_services(KafkaSettings(topic_prefix="p", source_database="db"))]
    assert rows == [
        ("cdc", None, ("p.db.accounts", "p.db.posts")),
        ("viability", "p-viability", ("p.db.accounts", "p.db.posts")),
        ("embedder", "p-embedder", ("p.pipeline.posts.viable",)),
        ("classifier", "p-classifier", ("p.pipeline.posts.embedded",)),
        ("indexer", "p-indexer", ("p.pipeline.posts.embedded",)),
    ]
