//! Authentication and ACLs on three real `tidemark serve` processes started with
//! `--require-auth` and mutual TLS (`--tls-client-auth optional`, so an anonymous client
//! can be tried): a client without a certificate is UNAUTHENTICATED; `User:bob` without
//! ACLs is refused with PERMISSION_DENIED naming the missing permission for each
//! operation; ACLs granted by the superuser `User:admin` let him in exactly as far as they
//! say, a member of a group acts only for itself, and a deny wins over an allow.

use std::time::Duration;

use tidemark_client::{
    Acl, AclOperation, AclResource, Client, ClientConfig, ClientError, ClientTls, ConsumerConfig, GroupConsumerConfig,
    ProducerConfig, ProducerRecord, StartPosition, TopicSettings,
};
use tidemark_proto::v1::groups_client::GroupsClient;
use tidemark_proto::v1::LeaveGroupRequest;
use tidemark_server::dev_certs::DevTls;
use tidemark_tests::process::ProcessCluster;

const TOPIC: &str = "orders";

fn tls_files(certs: &DevTls, user: Option<&str>) -> ClientTls {
    let (cert, key) = match user {
        Some("admin") => (Some(certs.client_cert()), Some(certs.client_key())),
        Some(name) => (Some(certs.user_cert(name)), Some(certs.user_key(name))),
        None => (None, None),
    };
    ClientTls::from_files(Some(&certs.ca()), cert.as_deref(), key.as_deref()).expect("certificates")
}

fn client(cluster: &ProcessCluster, certs: &DevTls, user: Option<&str>) -> Client {
    let config = ClientConfig {
        tls: Some(tls_files(certs, user)),
        // The nodes may still be starting on a busy machine.
        bootstrap_timeout: Duration::from_secs(30),
        ..ClientConfig::new(cluster.addrs.clone())
    };
    Client::new(config).expect("client")
}

/// The refusal must be PERMISSION_DENIED and say what is missing.
fn denied<T: std::fmt::Debug>(outcome: Result<T, ClientError>, says: &str) {
    let err = outcome.expect_err(says);
    match &err {
        ClientError::Grpc { code: tonic::Code::PermissionDenied, message, .. } => {
            assert!(message.contains(says), "{message:?} should say {says:?}");
            assert!(message.contains("tidemark acl add"), "says how to grant it: {message}");
        }
        other => panic!("expected PERMISSION_DENIED saying {says:?}, got {other}"),
    }
}

async fn produce(client: &Client) -> Result<u64, ClientError> {
    let producer = client.producer(ProducerConfig::default())?;
    producer.send(TOPIC, ProducerRecord::new("from bob")).await.map(|m| m.offset)
}

async fn read_one(client: &Client) -> Result<usize, ClientError> {
    let mut consumer =
        client.consumer(TOPIC, Some(vec![0]), StartPosition::Earliest, ConsumerConfig::default()).await?;
    consumer.poll(Duration::from_secs(2)).await.map(|r| r.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_needs_an_acl_and_a_deny_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = DevTls::ensure_users(dir.path(), 3, &["bob", "carol"]).expect("certificates");
    let args = ["--tls-client-auth", "optional", "--require-auth", "--superuser", "User:admin"];
    let cluster = ProcessCluster::start_tls(3, &args, Some(certs.dir.clone())).expect("start three processes");
    let admin = client(&cluster, &certs, Some("admin"));
    admin.admin().create_topic(TOPIC, 1, 3, 0, 0).await.expect("the superuser creates a topic");
    admin.producer(ProducerConfig::default()).unwrap().send(TOPIC, ProducerRecord::new("a")).await.unwrap();

    // No certificate: not authenticated at all.
    let anonymous = client(&cluster, &certs, None).admin().list_topics().await.expect_err("anonymous");
    assert!(
        matches!(&anonymous, ClientError::Grpc { code: tonic::Code::Unauthenticated, message, .. }
            if message.contains("--tls-cert")),
        "{anonymous}"
    );

    // Bob, authenticated, with no ACL: every operation is refused, naming what is missing.
    let bob = client(&cluster, &certs, Some("bob"));
    let ops = bob.admin();
    assert_eq!(ops.list_topics().await.expect("listing is filtered, not refused"), Vec::<String>::new());
    denied(ops.describe_topic(TOPIC).await, "User:bob may not describe topic \"orders\"");
    denied(ops.create_topic("bobs", 1, 1, 0, 0).await, "may not create topic \"bobs\"");
    denied(ops.alter_topic(TOPIC, TopicSettings::default()).await, "may not alter topic \"orders\"");
    denied(ops.delete_topic(TOPIC).await, "may not delete topic \"orders\"");
    denied(ops.cluster_status().await, "may not describe the cluster");
    denied(
        ops.add_acl(&Acl::allow("User:bob", AclResource::Cluster, "cluster", AclOperation::All)).await,
        "may not alter the cluster",
    );
    denied(ops.describe_group("billing").await, "may not describe group \"billing\"");
    denied(ops.init_producer(Some("bob-app")).await, "may not write to producer \"bob-app\"");
    denied(produce(&bob).await, "topic \"orders\"");
    denied(read_one(&bob).await, "topic \"orders\"");

    // Granted write by prefix: bob produces, and still cannot read.
    let admin_ops = admin.admin();
    let mut write = Acl::allow("User:bob", AclResource::Topic, "ord", AclOperation::Write);
    write.prefix = true;
    admin_ops.add_acl(&write).await.expect("grant write");
    let offset = produce(&bob).await.expect("bob may write now");
    assert_eq!(offset, 1, "bob's record follows the admin's");
    denied(read_one(&bob).await, "may not read topic \"orders\"");
    admin_ops.add_acl(&Acl::allow("User:bob", AclResource::Topic, TOPIC, AclOperation::Read)).await.unwrap();
    assert_eq!(read_one(&bob).await.expect("bob may read now"), 2, "both records");
    // Consuming in a group needs read on the group too.
    let join = bob.group_consumer(GroupConsumerConfig::new("billing", [TOPIC])).await;
    denied(join.map(|_| ()), "may not read group \"billing\"");

    // With read on the group, bob joins; carol, with read on it too, cannot act for his
    // member (here: make it leave), though she may join as herself.
    let group_read = |who: &str| Acl::allow(who, AclResource::Group, "billing", AclOperation::Read);
    admin_ops.add_acl(&group_read("User:bob")).await.unwrap();
    admin_ops.add_acl(&group_read("User:carol")).await.unwrap();
    let member = bob.group_consumer(GroupConsumerConfig::new("billing", [TOPIC])).await.expect("bob joins");
    let carol_tls = tls_files(&certs, Some("carol"));
    let channel = ClientTls::endpoint(Some(&carol_tls), &cluster.addrs[0]).expect("endpoint").connect_lazy();
    let leave = LeaveGroupRequest { group: "billing".into(), member_id: member.member_id().to_string() };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        // Node 1 may learn of the new member a moment after the metadata leader.
        match GroupsClient::new(channel.clone()).leave_group(leave.clone()).await {
            Err(s) if s.code() == tonic::Code::PermissionDenied => break s,
            other if std::time::Instant::now() > deadline => panic!("carol made bob's member leave: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(refused.message().contains("belongs to User:bob"), "{}", refused.message());
    let described = admin_ops.describe_group("billing").await.expect("describe");
    assert_eq!(described.members.len(), 1, "bob's member is still there");
    drop(member);
    admin_ops.remove_acl(&group_read("User:carol")).await.unwrap();
    admin_ops.remove_acl(&group_read("User:bob")).await.unwrap();

    // A deny wins over the allows; removing it restores them.
    let deny = Acl { deny: true, ..Acl::allow("User:*", AclResource::Topic, TOPIC, AclOperation::Write) };
    admin_ops.add_acl(&deny).await.unwrap();
    denied(produce(&bob).await, "may not write to topic \"orders\"");
    assert_eq!(admin_ops.list_acls().await.unwrap().len(), 3, "three bindings");
    assert!(admin_ops.remove_acl(&deny).await.unwrap(), "the deny was there");
    assert!(!admin_ops.remove_acl(&deny).await.unwrap(), "and is gone");
    assert_eq!(produce(&bob).await.expect("allowed again"), 2);
}
