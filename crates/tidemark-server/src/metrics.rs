//! Prometheus metrics, served at `/metrics` on `metrics_listen` (see `http.rs`).
//!
//! Request counters and latency histograms are kept as requests are served; the state
//! of every replica on the node (leadership, term, offsets, follower and consumer-group
//! lag) is read from the broker at scrape time, so a metric never goes stale and costs
//! nothing between scrapes. Names follow Prometheus conventions (`_total`, `_seconds`,
//! `_bytes`); `deploy/grafana-dashboard.json` uses them.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tidemark_broker::Broker;
use tokio::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    api: &'static str,
    /// `ok`, or the error's gRPC code.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Api {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Part {
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Follower {
    topic: String,
    partition: String,
    follower: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPart {
    group: String,
    topic: String,
    partition: String,
}

type Latency = Family<Api, Histogram, fn() -> Histogram>;

/// The node's long-lived metrics; cheap to clone (the families are shared).
#[derive(Clone)]
pub struct Metrics {
    requests: Family<Call, Counter>,
    latency: Latency,
    records: Family<Api, Counter>,
    bytes: Family<Api, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            records: Family::default(),
            bytes: Family::default(),
        })
    }

    /// Records one `api` request that started at `started`: its outcome, and for a
    /// success the records and bytes it carried.
    pub fn observe(&self, api: &'static str, started: Instant, outcome: Result<(u64, u64), &tonic::Status>) {
        self.latency.get_or_create(&Api { api }).observe(started.elapsed().as_secs_f64());
        let outcome = match outcome {
            Ok((records, bytes)) => {
                self.records.get_or_create(&Api { api }).inc_by(records);
                self.bytes.get_or_create(&Api { api }).inc_by(bytes);
                "ok".to_string()
            }
            Err(status) => format!("{:?}", status.code()),
        };
        self.requests.get_or_create(&Call { api, outcome }).inc();
    }

    /// The text exposition of every metric, the replicas' state read now.
    pub fn render(&self, broker: &Broker) -> String {
        let mut r = Registry::with_prefix("tidemark");
        r.register("requests", "Client requests served, by API and outcome", self.requests.clone());
        let help = "Time to serve a client request (a fetch includes its long-poll wait for new records)";
        r.register("request_duration_seconds", help, self.latency.clone());
        r.register("records", "Records produced or fetched", self.records.clone());
        r.register("bytes", "Record batch bytes produced or fetched", self.bytes.clone());
        register_node(&mut r, broker);
        register_replicas(&mut r, broker);
        let mut out = String::new();
        match prometheus_client::encoding::text::encode(&mut out, &r) {
            Ok(()) => out,
            Err(e) => format!("# encoding the metrics failed: {e}\n"),
        }
    }
}

fn gauge(r: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    r.register(name, help, g);
}

fn register_node(r: &mut Registry, b: &Broker) {
    gauge(r, "node_healthy", "1 while the node's storage works", i64::from(b.failure().is_none()));
    gauge(r, "node_ready", "1 once caught up with the cluster's metadata", i64::from(b.ensure_ready().is_ok()));
    let leads = b.metadata_leader() == Some(b.node_id());
    gauge(r, "metadata_leader", "1 on the node leading the metadata group", i64::from(leads));
    gauge(r, "repairing_replicas", "Replicas repairing from peers after disk damage", b.repairing() as i64);
}

fn register_replicas(r: &mut Registry, b: &Broker) {
    let families: [(&str, &str); 8] = [
        ("partition_leader", "1 where this node leads the partition"),
        ("partition_raft_term", "The partition group's Raft term, as this replica knows it"),
        ("partition_applied_index", "Last Raft log index applied by this replica"),
        ("partition_log_start_offset", "Oldest offset kept (retention moves it)"),
        ("partition_log_end_offset", "Next offset to be written"),
        ("partition_retained_bytes", "Bytes of record batches kept"),
        ("partition_replicas", "Replicas the partition should have"),
        ("partition_in_sync_replicas", "Replicas caught up with the leader (on the leader)"),
    ];
    let gauges: Vec<Family<Part, Gauge>> = families.iter().map(|_| Family::default()).collect();
    let lag: Family<Follower, Gauge> = Family::default();
    let group_lag: Family<GroupPart, Gauge> = Family::default();
    for s in b.replica_stats() {
        let part = Part { topic: s.topic.clone(), partition: s.partition.to_string() };
        let values = [
            Some(i64::from(s.leader)),
            Some(s.term as i64),
            Some(s.applied_index as i64),
            Some(s.log_start_offset as i64),
            Some(s.log_end_offset as i64),
            Some(s.retained_bytes as i64),
            Some(s.replicas as i64),
            s.in_sync.map(|n| n as i64),
        ];
        for (family, value) in gauges.iter().zip(values) {
            if let Some(v) = value {
                family.get_or_create(&part).set(v);
            }
        }
        for (follower, behind) in &s.follower_lag {
            let f =
                Follower { topic: s.topic.clone(), partition: part.partition.clone(), follower: follower.to_string() };
            lag.get_or_create(&f).set(*behind as i64);
        }
        for (group, behind) in &s.group_lag {
            let g = GroupPart { group: group.clone(), topic: s.topic.clone(), partition: part.partition.clone() };
            group_lag.get_or_create(&g).set(*behind as i64);
        }
    }
    for ((name, help), family) in families.iter().zip(gauges) {
        r.register(*name, *help, family);
    }
    r.register("partition_follower_lag_entries", "Raft log entries a follower is behind (on the leader)", lag);
    r.register("group_lag_records", "Records a consumer group is behind the log end (on the leader)", group_lag);
}
