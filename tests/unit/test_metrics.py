"""The metrics and the connection records without a server: what a scrape reads."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatgate.ops.metrics import GatewayCollector, Metrics
from chatgate.ops.records import (
    CLIENT_LEFT,
    USER_AGENT_CHARS,
    ConnectionRecord,
    ConnectionRecords,
)

from support import RECORD_FIELDS

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class FakeOutbox:
    def __init__(self, queued: int) -> None:
        self.queued_bytes = queued


def scrape(metrics: Metrics) -> Samples:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wired(records: ConnectionRecords, *, up: set[str] | None = None, in_flight: int = 0) -> Metrics:
    metrics = Metrics()
    alive = {"store", "broker"} if up is None else up
    metrics.registry.register(
        GatewayCollector(
            metrics, records, up=lambda name: name in alive, runs_in_flight=lambda: in_flight
        )
    )
    return metrics


def opened(records: ConnectionRecords, connection_id: str) -> ConnectionRecord:
    record = records.open(connection_id, "127.0.0.1:5000")
    records.accepted_total += 1
    return record


def test_counters_become_series_at_scrape_time() -> None:
    records = ConnectionRecords()
    metrics = wired(records, up={"store"}, in_flight=3)
    live = opened(records, "conn_live")
    live.frames_in, live.frames_out = 4, 9
    live.outbox = FakeOutbox(700)
    done = opened(records, "conn_done")
    done.frames_in, done.frames_out = 1, 2
    done.closing(4102, "slow_consumer: send queue full", "server")
    records.close(done, authenticated=True)
    metrics.run_ended("completed")
    metrics.run_ended("completed")
    metrics.run_ended("failed")
    metrics.text_deltas += 5
    metrics.resumed(12)

    samples = scrape(metrics)

    assert samples[("chatgate_connections_open", ())] == 1
    assert samples[("chatgate_connections_total", ())] == 2
    assert samples[("chatgate_connections_closed_total", (("code", "4102"),))] == 1
    assert samples[("chatgate_frames_received_total", ())] == 5
    assert samples[("chatgate_frames_sent_total", ())] == 11
    assert samples[("chatgate_send_queue_bytes", ())] == 700
    runs = {
        o: samples[("chatgate_runs_total", (("outcome", o),))]
        for o in ("completed", "cancelled", "failed", "interrupted")
    }
    assert runs == {"completed": 2, "cancelled": 0, "failed": 1, "interrupted": 0}
    assert samples[("chatgate_runs_in_flight", ())] == 3
    assert samples[("chatgate_text_deltas_total", ())] == 5
    assert samples[("chatgate_resumes_total", ())] == 1
    assert samples[("chatgate_resume_events_sum", ())] == 12
    assert samples[("chatgate_store_up", ())] == 1
    assert samples[("chatgate_broker_up", ())] == 0
    assert ("process_cpu_seconds_total", ()) in samples


def test_agent_error_codes_are_a_bounded_set() -> None:
    metrics = wired(ConnectionRecords())
    for code in ("model_unavailable", "model_unavailable", "my_agents_own_code", "x" * 500):
        metrics.agent_error(code)
    errors = {
        labels: value
        for (name, labels), value in scrape(metrics).items()
        if name == "chatgate_agent_errors_total"
    }
    assert errors == {(("code", "model_unavailable"),): 2, (("code", "other"),): 2}


def test_histograms_are_observed_per_commit_and_publish() -> None:
    metrics = wired(ConnectionRecords())
    metrics.observe_commit(0.002, 40)
    metrics.observe_publish(0.001, 7)
    samples = scrape(metrics)
    assert samples[("chatgate_store_write_seconds_count", ())] == 1
    assert samples[("chatgate_store_batch_items_sum", ())] == 40
    assert samples[("chatgate_broker_publish_seconds_count", ())] == 1


def test_two_gateways_in_one_process_do_not_share_series() -> None:
    one, other = wired(ConnectionRecords()), wired(ConnectionRecords())
    one.text_deltas += 1
    assert scrape(one)[("chatgate_text_deltas_total", ())] == 1
    assert scrape(other)[("chatgate_text_deltas_total", ())] == 0


def test_a_record_keeps_the_first_close_and_the_json_fields() -> None:
    records = ConnectionRecords()
    record = opened(records, "conn_a")
    record.user_id, record.auth_method = "alice", "subprotocol"
    record.set_user_agent("x" * 1000)
    record.closing(1000, "normal", "client")
    record.closing(1011, "internal_error: cid=1", "server")
    records.close(record, authenticated=True)
    shown = records.get("conn_a")
    assert shown is not None
    body = shown.to_json()
    assert set(body) == RECORD_FIELDS
    assert (body["close_code"], body["close_reason"], body["closed_by"]) == (
        1000,
        "normal",
        "client",
    )
    assert len(body["user_agent"]) == USER_AGENT_CHARS
    assert body["opened_at"].endswith("Z")


def test_a_peer_that_vanished_is_1006_by_the_client() -> None:
    records = ConnectionRecords()
    record = opened(records, "conn_gone")
    records.close(record, authenticated=True)
    assert (record.close_code, record.closed_by) == (1006, "client")


def test_a_client_close_reason_is_scrubbed_of_tokens() -> None:
    record = ConnectionRecord("conn_t", None, 0.0)
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    record.closing(4000, f"bye {token}", "client")
    assert token not in str(record.to_json())


def test_handshake_failures_are_labelled_by_slug() -> None:
    records = ConnectionRecords()
    refused = opened(records, "conn_refused")
    refused.closing(4004, "auth_expired: token expired", "server")
    records.close(refused, authenticated=False)
    left = opened(records, "conn_left")
    left.closing(1001, "", "client")
    records.close(left, authenticated=False)
    fine = opened(records, "conn_fine")
    records.close(fine, authenticated=True)
    assert dict(records.handshake_failures) == {"auth_expired": 1, CLIENT_LEFT: 1}


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_closed_records_are_bounded_oldest_first(keep: int) -> None:
    records = ConnectionRecords(keep)
    for n in range(5):
        records.close(opened(records, f"conn_{n}"), authenticated=True)
    kept = [n for n in range(5) if records.get(f"conn_{n}") is not None]
    assert kept == list(range(5 - keep, 5))


def test_a_live_record_is_served_and_counted_open() -> None:
    records = ConnectionRecords(0)
    record = opened(records, "conn_open")
    assert records.get("conn_open") is record
    assert records.open_count == 1
    records.close(record, authenticated=True)
    records.close(record, authenticated=True)
    assert records.open_count == 0
    assert records.closed_by_code[1006] == 1
