//! `otlp-sink`: an OTLP/HTTP endpoint that accepts and discards every export, counting
//! requests and bytes. Benchmarks point a traced service at it so that the cost of
//! exporting is included without a collector on the machine.
//!
//! Usage: `otlp-sink 127.0.0.1:4318`; prints `{"requests":N,"bytes":N}` on SIGTERM/SIGINT.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4318".into());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        let requests = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    let (requests, bytes) = (requests.clone(), bytes.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let (requests, bytes) = (requests.clone(), bytes.clone());
                            async move {
                                let body = req.into_body().collect().await?.to_bytes();
                                requests.fetch_add(1, Ordering::Relaxed);
                                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                                let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                                resp.headers_mut().insert(
                                    hyper::header::CONTENT_TYPE,
                                    hyper::header::HeaderValue::from_static("application/x-protobuf"),
                                );
                                Ok::<_, hyper::Error>(resp)
                            }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        println!(
            "{}",
            serde_json::json!({"requests": requests.load(Ordering::Relaxed), "bytes": bytes.load(Ordering::Relaxed)})
        );
        Ok(())
    })
}
