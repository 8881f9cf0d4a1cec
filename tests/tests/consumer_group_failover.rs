//! Consumer groups across failures, on three in-process nodes over real gRPC:
//! - the wire-level handover protocol and commit fencing (a member that released a
//!   partition can no longer commit to it);
//! - a member that stops polling loses a revoking partition after the rebalance timeout;
//! - a metadata-leader failover: members keep their membership (the new leader gives
//!   every member a fresh session) and keep consuming; committed offsets survive.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use ::tidemark_client::{Client, ClientConfig, GroupConsumer, GroupConsumerConfig, GroupSettings};
use tidemark_proto::error::{code_of, leader_of};
use tidemark_proto::v1::groups_client::GroupsClient;
use tidemark_proto::v1::*;
use tidemark_simulation::workload::produce;
use tidemark_tests::InProcessCluster;
use tidemark_types::ErrorCode;
use tonic::transport::Channel;
use tonic::{Response, Status};

/// Calls `call` on whichever node can answer, following NotLeader hints and waiting out
/// Unavailable; any other error is returned.
async fn on_leader<T, F, Fut>(c: &InProcessCluster, mut call: F) -> Result<T, Status>
where
    F: FnMut(GroupsClient<Channel>) -> Fut,
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let mut target = 0usize;
    for _ in 0..100 {
        match call(GroupsClient::new(c.channel(target))).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s)
                if matches!(code_of(&s), Some(ErrorCode::NotLeader | ErrorCode::Unavailable))
                    || code_of(&s).is_none() =>
            {
                target = leader_of(&s).map_or((target + 1) % c.addrs.len(), |(id, _)| id as usize - 1);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => return Err(s),
        }
    }
    panic!("no node answered");
}

fn commit(group_id: u64, member: &str, p: &MemberPartition, offset: u64) -> CommitOffsetRequest {
    CommitOffsetRequest {
        group: "g".into(),
        group_id,
        member_id: member.into(),
        generation: p.generation,
        topic: p.topic.clone(),
        partition: p.partition,
        offset,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_partition_fences_its_old_owner() {
    let c = InProcessCluster::start(3).await.unwrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic("t", 2, 3, 0, 0).await.unwrap();
    let join = |client_id: &str| JoinGroupRequest {
        group: "g".into(),
        topics: vec!["t".into()],
        member_id: String::new(),
        client_id: client_id.into(),
        create_if_missing: true,
        shared: false,
    };
    let a = on_leader(&c, |mut g| {
        let r = join("a");
        async move { g.join_group(r).await }
    })
    .await
    .unwrap();
    assert_eq!(a.assignment.len(), 2, "a lone member owns both partitions");
    let b = on_leader(&c, |mut g| {
        let r = join("b");
        async move { g.join_group(r).await }
    })
    .await
    .unwrap();
    assert!(b.assignment.is_empty(), "b waits for a to release");
    let hb = HeartbeatRequest { group: "g".into(), member_id: a.member_id.clone() };
    let beat = on_leader(&c, |mut g| {
        let r = hb.clone();
        async move { g.heartbeat(r).await }
    })
    .await
    .unwrap();
    let moving: Vec<MemberPartition> = beat.assignment.iter().filter(|p| p.revoking).cloned().collect();
    assert_eq!(moving.len(), 1, "a learns from its heartbeat that one partition moves: {beat:?}");
    let moving = moving[0].clone();

    // a commits, then releases; b then owns the partition under a newer generation.
    let req = commit(a.group_id, &a.member_id, &moving, 0);
    on_leader(&c, |mut g| {
        let r = req.clone();
        async move { g.commit_offset(r).await }
    })
    .await
    .expect("the owner may commit while revoking");
    let release = ReleasePartitionsRequest {
        group: "g".into(),
        member_id: a.member_id.clone(),
        partitions: vec![moving.clone()],
    };
    on_leader(&c, |mut g| {
        let r = release.clone();
        async move { g.release_partitions(r).await }
    })
    .await
    .unwrap();
    let hb = HeartbeatRequest { group: "g".into(), member_id: b.member_id.clone() };
    let got = on_leader(&c, |mut g| {
        let r = hb.clone();
        async move { g.heartbeat(r).await }
    })
    .await
    .unwrap()
    .assignment;
    assert_eq!(got.len(), 1);
    assert!(got[0].generation > moving.generation && got[0].partition == moving.partition);

    let stale = on_leader(&c, |mut g| {
        let r = req.clone();
        async move { g.commit_offset(r).await }
    })
    .await
    .expect_err("the old owner is fenced");
    assert_eq!(code_of(&stale), Some(ErrorCode::StaleGeneration), "{stale:?}");
    assert!(stale.message().contains("no longer owns"), "{}", stale.message());
    let fresh = commit(b.group_id, &b.member_id, &got[0], 0);
    on_leader(&c, |mut g| {
        let r = fresh.clone();
        async move { g.commit_offset(r).await }
    })
    .await
    .expect("the new owner commits");

    // An administrative reset is refused while members are alive.
    let reset = CommitOffsetRequest { member_id: String::new(), ..fresh.clone() };
    let refused = on_leader(&c, |mut g| {
        let r = reset.clone();
        async move { g.commit_offset(r).await }
    })
    .await
    .expect_err("reset with live members");
    assert_eq!(code_of(&refused), Some(ErrorCode::GroupNotEmpty));
}

/// Polls every member until `want` distinct records were seen.
async fn drain(members: &mut [GroupConsumer], seen: &mut BTreeSet<(u32, u64)>, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while seen.len() < want {
        assert!(tokio::time::Instant::now() < deadline, "only {} of {want} records", seen.len());
        for m in members.iter_mut() {
            for r in m.poll(Duration::from_millis(100)).await.expect("poll") {
                seen.insert((r.partition, r.offset));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_survive_a_metadata_leader_failover() {
    let mut c = InProcessCluster::start(3).await.unwrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic("f", 2, 3, 0, 0).await.unwrap();
    let settings = GroupSettings {
        session_timeout: Some(Duration::from_millis(3_000)),
        heartbeat_interval: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    client.admin().create_group("g", &["f".to_string()], &settings).await.unwrap();
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut config = GroupConsumerConfig::new("g", ["f"]);
        config.auto_commit_interval = Duration::from_millis(300);
        members.push(client.group_consumer(config).await.unwrap());
    }
    let (acked, _) = produce(&client, "f", 0..200).await;
    let mut seen = BTreeSet::new();
    drain(&mut members, &mut seen, acked.len()).await;
    let ids: Vec<String> = members.iter().map(|m| m.member_id().to_string()).collect();

    let leader = c.metadata_leader().await.unwrap();
    let (node, stop) = c.nodes.remove(leader);
    let _ = stop.send(());
    node.wait().await.unwrap();

    let (more, _) = produce(&client, "f", 200..400).await;
    drain(&mut members, &mut seen, acked.len() + more.len()).await;
    let after: Vec<String> = members.iter().map(|m| m.member_id().to_string()).collect();
    assert_eq!(ids, after, "no member lost its membership across the failover");
    let d = client.admin().describe_group("g").await.unwrap();
    assert_eq!(d.members.len(), 2, "{:?}", d.members);
    for m in members {
        m.close().await.unwrap();
    }
    let d = client.admin().describe_group("g").await.unwrap();
    assert!(d.partitions.iter().all(|p| p.lag == Some(0)), "everything committed: {:?}", d.partitions);

    // A new member resumes from the committed offsets: nothing to read.
    let mut config = GroupConsumerConfig::new("g", ["f"]);
    config.auto_commit = false;
    let mut late = client.group_consumer(config.clone()).await.unwrap();
    assert!(late.poll(Duration::from_millis(800)).await.unwrap().is_empty(), "resumed at the committed end");
    late.close().await.unwrap();
    // Replay: reset to the beginning, and a member reads everything again.
    let reset = client.admin().reset_offsets("g", ::tidemark_client::StartPosition::Earliest).await.unwrap();
    assert!(reset.iter().all(|(_, _, o)| *o == 0), "{reset:?}");
    let mut replay = vec![client.group_consumer(config).await.unwrap()];
    let mut again = BTreeSet::new();
    drain(&mut replay, &mut again, seen.len()).await;
    assert_eq!(again, seen, "the reset replays the whole log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_polling_loses_a_revoking_partition_after_the_rebalance_timeout() {
    let c = InProcessCluster::start(3).await.unwrap();
    let client = Client::new(ClientConfig::new(c.addrs.clone())).unwrap();
    client.admin().create_topic("s", 2, 3, 0, 0).await.unwrap();
    let settings = GroupSettings {
        session_timeout: Some(Duration::from_millis(3_000)),
        heartbeat_interval: Some(Duration::from_millis(200)),
        rebalance_timeout: Some(Duration::from_millis(1_500)),
        ..Default::default()
    };
    client.admin().create_group("g", &["s".to_string()], &settings).await.unwrap();
    produce(&client, "s", 0..100).await;
    let mut stuck = client.group_consumer(GroupConsumerConfig::new("g", ["s"])).await.unwrap();
    assert_eq!(stuck.assignment().len(), 2);
    assert!(!stuck.poll(Duration::from_secs(2)).await.unwrap().is_empty());
    // `stuck` stops polling now; its heartbeats go on in the background.
    let started = tokio::time::Instant::now();
    let mut other = client.group_consumer(GroupConsumerConfig::new("g", ["s"])).await.unwrap();
    while other.assignment().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(15), "the stuck handover never completed");
        other.poll(Duration::from_millis(200)).await.unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(1_000), "the handover waited for the rebalance timeout");
    let d = client.admin().describe_group("g").await.unwrap();
    assert_eq!(d.members.len(), 2, "the slow member is still alive: {:?}", d.members);
    stuck.poll(Duration::from_millis(300)).await.unwrap();
    assert_eq!(stuck.assignment().len(), 1, "the slow member learns it lost the partition");
    assert_ne!(stuck.assignment(), other.assignment());
    stuck.commit().await.expect("commits of what it still owns are accepted");
    stuck.close().await.unwrap();
    other.close().await.unwrap();
}
