"""An OTLP receiver built from the `opentelemetry-proto` package (and grpcio), not by us.

Used by collector/tests/sink_otlp.rs to check Warden's OTLP exporter against an
implementation we did not write. Serves OTLP/gRPC (the package's *_pb2_grpc servicers)
and OTLP/HTTP with protobuf bodies (http.server), optionally over TLS (with client
certificate verification), and appends one JSON line per export request to --out:

  {"t": unix time, "protocol": "grpc"|"http", "signal": "traces"|"logs"|"metrics",
   "answer": "ok"|"fail", "items": N, "rejected": N, "content_encoding": ...,
   "headers": {name: value for each --record-header}, "data": [...]}

`data` holds one entry per span / log record / metric with names, ids, attributes and
values (see to_json_*); with --bodies-only, logs are just their string bodies.

Fault injection: --fail-first N answers the first N export requests (both protocols
together) with --fail-grpc-code / --fail-http-status, adding a google.rpc.RetryInfo /
Retry-After of --retry-after seconds when that is given. --reject N answers every
accepted request with a partial_success rejecting min(N, items) items.

usage: otlp_receiver.py --out FILE [--grpc-port P] [--http-port P] [options]
"""

import argparse
import gzip
import json
import signal
import ssl
import sys
import threading
import time
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

MAX_BODY = 64 * 1024 * 1024


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.requests = 0
        self.out = open(args.out, "a", encoding="utf-8")

    def next_fails(self):
        """Whether this export request is one of the first --fail-first."""
        with self.lock:
            self.requests += 1
            return self.requests <= self.args.fail_first

    def write(self, record):
        line = json.dumps(record, sort_keys=True)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


# ---------------------------------------------------------------------------------------
# Proto → JSON


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attrs(v.kvlist_value.values)
    return "?" + kind


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def to_json_traces(req):
    out = []
    for rs in req.resource_spans:
        res = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    {
                        "resource": res,
                        "scope": ss.scope.name,
                        "name": s.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": attrs(s.attributes),
                        "events": [e.name for e in s.events],
                        "links": [l.span_id.hex() for l in s.links],
                        "status": s.status.code,
                    }
                )
    return out


def to_json_logs(req, bodies_only):
    out = []
    for rl in req.resource_logs:
        res = None if bodies_only else attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                if bodies_only:
                    out.append(any_value(r.body))
                    continue
                out.append(
                    {
                        "resource": res,
                        "scope": sl.scope.name,
                        "time": r.time_unix_nano,
                        "severity_number": r.severity_number,
                        "severity_text": r.severity_text,
                        "body": any_value(r.body),
                        "attributes": attrs(r.attributes),
                        "trace_id": r.trace_id.hex(),
                        "span_id": r.span_id.hex(),
                    }
                )
    return out


def to_json_metrics(req):
    out = []
    for rm in req.resource_metrics:
        res = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                entry = {"resource": res, "scope": sm.scope.name, "name": m.name, "type": kind, "points": []}
                if kind in ("gauge", "sum"):
                    d = getattr(m, kind)
                    if kind == "sum":
                        entry["monotonic"] = d.is_monotonic
                        entry["temporality"] = d.aggregation_temporality
                    for p in d.data_points:
                        v = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                        entry["points"].append({"attributes": attrs(p.attributes), "value": v, "time": p.time_unix_nano})
                elif kind == "histogram":
                    for p in m.histogram.data_points:
                        entry["points"].append(
                            {
                                "attributes": attrs(p.attributes),
                                "count": p.count,
                                "sum": p.sum,
                                "bucket_counts": list(p.bucket_counts),
                                "bounds": list(p.explicit_bounds),
                                "time": p.time_unix_nano,
                            }
                        )
                elif kind == "summary":
                    for p in m.summary.data_points:
                        entry["points"].append(
                            {
                                "attributes": attrs(p.attributes),
                                "count": p.count,
                                "sum": p.sum,
                                "quantiles": [[q.quantile, q.value] for q in p.quantile_values],
                                "time": p.time_unix_nano,
                            }
                        )
                out.append(entry)
    return out


SIGNALS = {
    # signal: (request type, response type, partial success type, rejected field, items, to_json)
    "traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        trace_service_pb2.ExportTracePartialSuccess,
        "rejected_spans",
        lambda r: sum(len(ss.spans) for rs in r.resource_spans for ss in rs.scope_spans),
        lambda r, a: to_json_traces(r),
    ),
    "logs": (
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
        logs_service_pb2.ExportLogsPartialSuccess,
        "rejected_log_records",
        lambda r: sum(len(sl.log_records) for rl in r.resource_logs for sl in rl.scope_logs),
        lambda r, a: to_json_logs(r, a.bodies_only),
    ),
    "metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        metrics_service_pb2.ExportMetricsPartialSuccess,
        "rejected_data_points",
        lambda r: sum(
            len(getattr(m, m.WhichOneof("data")).data_points)
            for rm in r.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.WhichOneof("data")
        ),
        lambda r, a: to_json_metrics(r),
    ),
}


def handle(state, protocol, signal_name, req, headers, content_encoding):
    """Records one request; returns (ok, response message or None)."""
    _, resp_type, partial_type, field, count, to_json = SIGNALS[signal_name]
    args = state.args
    items = count(req)
    record = {
        "t": time.time(),
        "protocol": protocol,
        "signal": signal_name,
        "items": items,
        "content_encoding": content_encoding,
        "headers": {h: headers.get(h) for h in args.record_header},
    }
    if state.next_fails():
        record.update(answer="fail", rejected=0, data=[])
        state.write(record)
        return False, None
    rejected = min(args.reject, items)
    record.update(answer="ok", rejected=rejected, data=to_json(req, args))
    state.write(record)
    resp = resp_type()
    if rejected:
        getattr(resp, "partial_success").CopyFrom(
            partial_type(**{field: rejected, "error_message": "rejected by the test receiver"})
        )
    return True, resp


def rpc_status(code, message, retry_after):
    st = status_pb2.Status(code=code, message=message)
    if retry_after is not None:
        secs = int(retry_after)
        info = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=secs, nanos=int((retry_after - secs) * 1e9))
        )
        st.details.add().Pack(info)
    return st


# ---------------------------------------------------------------------------------------
# gRPC


def grpc_servicer(state, signal_name, base):
    class Servicer(base):
        def Export(self, request, context):
            md = {k: v for k, v in context.invocation_metadata()}
            ok, resp = handle(state, "grpc", signal_name, request, md, None)
            if ok:
                return resp
            code = getattr(grpc.StatusCode, state.args.fail_grpc_code)
            st = rpc_status(code.value[0], "failing as told", state.args.retry_after)
            context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
            context.abort(code, "failing as told")

    return Servicer()


def start_grpc(state, port):
    args = state.args
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", MAX_BODY), ("grpc.so_reuseport", 0)],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
        grpc_servicer(state, "traces", trace_service_pb2_grpc.TraceServiceServicer), server
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
        grpc_servicer(state, "logs", logs_service_pb2_grpc.LogsServiceServicer), server
    )
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
        grpc_servicer(state, "metrics", metrics_service_pb2_grpc.MetricsServiceServicer), server
    )
    addr = f"127.0.0.1:{port}"
    if args.tls_cert:
        key = open(args.tls_key, "rb").read()
        cert = open(args.tls_cert, "rb").read()
        ca = open(args.client_ca, "rb").read() if args.client_ca else None
        creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
        bound = server.add_secure_port(addr, creds)
    else:
        bound = server.add_insecure_port(addr)
    if bound == 0:
        sys.exit(f"cannot listen on {addr} (gRPC)")
    server.start()
    return server


# ---------------------------------------------------------------------------------------
# HTTP


def http_handler(state):
    paths = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}
    args = state.args

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, body, content_type="application/x-protobuf", extra=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.reply(413, b"")
                return
            body = self.rfile.read(length)
            signal_name = paths.get(self.path)
            if signal_name is None:
                self.reply(404, b"")
                return
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self.reply(415, b"")
                return
            enc = self.headers.get("Content-Encoding")
            try:
                if enc == "gzip":
                    body = gzip.decompress(body)
                elif enc not in (None, "identity"):
                    self.reply(415, b"")
                    return
                req = SIGNALS[signal_name][0].FromString(body)
            except (OSError, EOFError, zlib.error, ValueError, Exception):  # noqa: BLE001 - any decode error is a 400
                self.reply(400, rpc_status(3, "bad request body", None).SerializeToString())
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok, resp = handle(state, "http", signal_name, req, headers, enc)
            if ok:
                self.reply(200, resp.SerializeToString())
                return
            extra = []
            if args.retry_after is not None:
                extra.append(("Retry-After", str(int(args.retry_after))))
            st = rpc_status(14, "failing as told", args.retry_after)
            self.reply(args.fail_http_status, st.SerializeToString(), extra=extra)

    return Handler


def start_http(state, port):
    args = state.args
    server = ThreadingHTTPServer(("127.0.0.1", port), http_handler(state))
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--grpc-port", type=int)
    ap.add_argument("--http-port", type=int)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-grpc-code", default="UNAVAILABLE")
    ap.add_argument("--fail-http-status", type=int, default=503)
    ap.add_argument("--retry-after", type=float)
    ap.add_argument("--reject", type=int, default=0)
    ap.add_argument("--record-header", action="append", default=[])
    ap.add_argument("--bodies-only", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    args = ap.parse_args()
    args.record_header = [h.lower() for h in args.record_header]
    state = State(args)
    servers = []
    if args.grpc_port:
        servers.append(start_grpc(state, args.grpc_port))
    if args.http_port:
        servers.append(start_http(state, args.http_port))
    if not servers:
        sys.exit("nothing to serve: give --grpc-port and/or --http-port")
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


if __name__ == "__main__":
    main()
