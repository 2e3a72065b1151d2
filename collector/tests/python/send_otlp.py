"""Sends traces, logs and metrics to an OTLP receiver with the OpenTelemetry Python SDK.

Used by collector/tests/otlp.rs: an OTLP client we did not write. The SDK records into
in-memory exporters/readers, then the SDK's own OTLP exporters (gRPC or HTTP/protobuf)
send the result, so the test sees what the SDK encodes and learns whether each export
succeeded. Prints one JSON object on stdout: the ids it generated and each export result.

usage: send_otlp.py --protocol grpc|http --endpoint URL [--gzip]
"""

import argparse
import json
import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def exporters(protocol, endpoint, gzip):
    if protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        kw = {"endpoint": endpoint, "insecure": True, "timeout": 10}
        if gzip:
            kw["compression"] = grpc.Compression.Gzip
        return OTLPSpanExporter(**kw), OTLPLogExporter(**kw), OTLPMetricExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    comp = Compression.Gzip if gzip else Compression.NoCompression
    return (
        OTLPSpanExporter(endpoint=base + "/v1/traces", compression=comp, timeout=10),
        OTLPLogExporter(endpoint=base + "/v1/logs", compression=comp, timeout=10),
        OTLPMetricExporter(endpoint=base + "/v1/metrics", compression=comp, timeout=10),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["grpc", "http"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--gzip", action="store_true")
    args = ap.parse_args()

    resource = Resource.create(
        {
            "service.name": "py-otlp-test",
            "service.namespace": "warden",
            "service.instance.id": "inst-1",
            "deployment.environment": "test",
        }
    )
    span_exporter, log_exporter, metric_exporter = exporters(args.protocol, args.endpoint, args.gzip)
    out = {"protocol": args.protocol, "gzip": args.gzip}

    # Traces: a server span with a child, an event, a link and typed attributes.
    memory_spans = InMemorySpanExporter()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(memory_spans))
    tracer = tp.get_tracer("warden.test", "1.2.3")

    # Logs: stdlib logging through the SDK handler, emitted inside the server span.
    memory_logs = InMemoryLogExporter()
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(memory_logs))
    pylog = logging.getLogger("warden.test.logs")
    pylog.propagate = False
    pylog.setLevel(logging.DEBUG)
    pylog.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=lp))

    with tracer.start_as_current_span(
        "GET /v1/items/{id}",
        kind=SpanKind.SERVER,
        attributes={
            "http.route": "/v1/items/{id}",
            "http.request.method": "GET",
            "http.response.status_code": 200,
            "retry.ratio": 0.25,
            "cache.hit": True,
            "tags": ["a", "b"],
        },
    ) as server:
        server.add_event("cache.miss", {"cache.key.length": 12})
        ctx = server.get_span_context()
        out["trace_id"] = format(ctx.trace_id, "032x")
        out["server_span_id"] = format(ctx.span_id, "016x")
        pylog.warning("lookup finished", extra={"request.kind": "lookup"})
        with tracer.start_as_current_span("db.query", kind=SpanKind.CLIENT, links=[Link(ctx, {"link.kind": "self"})]) as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
            out["child_span_id"] = format(child.get_span_context().span_id, "016x")

    out["traces"] = span_exporter.export(memory_spans.get_finished_spans()).name
    out["logs"] = log_exporter.export(memory_logs.get_finished_logs()).name

    # Metrics: a counter, a gauge and a histogram with explicit buckets, cumulative.
    reader = InMemoryMetricReader()
    mp = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[View(instrument_name="request.duration", aggregation=ExplicitBucketHistogramAggregation([0.1, 0.5, 1.0]))],
    )
    meter = mp.get_meter("warden.test.metrics")
    requests = meter.create_counter("requests", unit="{request}")
    requests.add(2, {"route": "/a"})
    requests.add(1, {"route": "/a"})
    requests.add(5, {"route": "/b"})
    depth = meter.create_gauge("queue.depth", unit="{item}")
    depth.set(7, {"queue": "ingest"})
    duration = meter.create_histogram("request.duration", unit="s")
    for v in (0.05, 0.3, 0.3, 2.0):
        duration.record(v, {"route": "/a"})
    out["metrics"] = metric_exporter.export(reader.get_metrics_data()).name

    for e in (span_exporter, log_exporter, metric_exporter):
        e.shutdown()
    print(json.dumps(out))
    ok = all(out[k] == "SUCCESS" for k in ("traces", "logs", "metrics"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
