//! The node's HTTP endpoints for supervisors and load balancers, on `metrics_listen`:
//!
//! ```text
//!  GET /health  200 "ok"      the process runs and its storage works
//!               503 why       the node is stopping because of a storage failure or damage
//!  GET /ready   200 "ready"   healthy, and caught up with the cluster's metadata
//!               503 why       not yet (just started or restarted), or not healthy
//!  GET /metrics 200           Prometheus text exposition (see `metrics.rs`)
//! ```
//!
//! Kubernetes probes and a Dockerfile HEALTHCHECK use the first two.

use std::convert::Infallible;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tidemark_broker::Broker;

use crate::metrics::Metrics;

/// Serves the endpoints on `listener` until the process exits.
pub async fn serve(listener: tokio::net::TcpListener, broker: Weak<Broker>, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "health endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (broker, metrics) = (broker.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let answer = answer(&broker, &metrics, req.uri().path());
                async move { Ok::<_, Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer(broker: &Weak<Broker>, metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let Some(b) = broker.upgrade() else { return respond(StatusCode::SERVICE_UNAVAILABLE, "stopped\n".into()) };
    let failure = b.failure().map(|why| format!("failing: {why}\n"));
    match path {
        "/health" => match failure {
            None => respond(StatusCode::OK, "ok\n".into()),
            Some(why) => respond(StatusCode::SERVICE_UNAVAILABLE, why),
        },
        "/ready" => match (failure, b.ensure_ready()) {
            (Some(why), _) => respond(StatusCode::SERVICE_UNAVAILABLE, why),
            (None, Err(e)) => respond(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
            (None, Ok(())) => respond(StatusCode::OK, "ready\n".into()),
        },
        "/metrics" => {
            let mut r = respond(StatusCode::OK, metrics.render(&b));
            let kind =
                hyper::header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, kind);
            r
        }
        _ => respond(StatusCode::NOT_FOUND, "not found: this port serves /health, /ready and /metrics\n".into()),
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}
