use super::*;
use crate::meta::{MetaCommand, MetaLogic, MetaResponse, MetaShared, TopicConfig};
use tidemark_raft::StateMachineLogic;
use tidemark_types::TopicName;

struct Replica {
    shared: std::sync::Arc<MetaShared>,
    logic: MetaLogic,
    index: u64,
}

impl Replica {
    fn new() -> Replica {
        let shared = MetaShared::new();
        Replica { logic: MetaLogic(shared.clone()), shared, index: 0 }
    }

    fn apply(&mut self, cmd: MetaCommand) -> MetaResponse {
        self.index += 1;
        bincode::deserialize(&self.logic.apply(self.index, &cmd.encode()).0).unwrap()
    }

    fn group(&mut self, cmd: GroupCommand) -> GroupResponse {
        match self.apply(MetaCommand::Group(cmd)) {
            MetaResponse::Group(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn topic(&mut self, name: &str, partitions: usize) {
        let replicas = vec![vec![1]; partitions];
        let name = TopicName::new(name).unwrap();
        self.apply(MetaCommand::CreateTopic { name, replicas, config: TopicConfig::default() });
    }

    fn join(&mut self, group: &str, client: &str) -> String {
        let cmd = GroupCommand::Join {
            group: group.into(),
            member_id: None,
            client_id: client.into(),
            topics: vec!["t".into()],
            create: Some(GroupConfig::default()),
            mode: GroupMode::Partitioned,
            principal: "User:ANONYMOUS".into(),
        };
        match self.group(cmd) {
            GroupResponse::Joined { member_id, .. } => member_id,
            other => panic!("{other:?}"),
        }
    }

    fn assignment(&self, group: &str, member: &str) -> Vec<MemberPartition> {
        self.shared.read().groups[group].member_assignment(member)
    }
}

#[test]
fn revoke_then_release_hands_partitions_over_with_new_generations() {
    let mut r = Replica::new();
    r.topic("t", 4);
    let a = r.join("g", "app");
    assert_eq!(r.assignment("g", &a).len(), 4, "the group was created on first join");
    let b = r.join("g", "app");
    assert_ne!(a, b, "member ids are unique");
    let revoking: Vec<_> = r.assignment("g", &a).into_iter().filter(|p| p.revoking).collect();
    assert_eq!(revoking.len(), 2);
    assert!(r.assignment("g", &b).is_empty(), "b waits until a released");
    // A release from a member that is not the owner changes nothing.
    let stale: Vec<_> = revoking.iter().map(|p| (p.topic.clone(), p.partition, p.generation)).collect();
    let cmd = GroupCommand::Release { group: "g".into(), member: b.clone(), partitions: stale.clone() };
    assert_eq!(r.group(cmd), GroupResponse::Done);
    assert!(r.assignment("g", &b).is_empty());
    let cmd = GroupCommand::Release { group: "g".into(), member: a.clone(), partitions: stale };
    assert_eq!(r.group(cmd), GroupResponse::Done);
    let got = r.assignment("g", &b);
    assert_eq!(got.len(), 2);
    let old_max = revoking.iter().map(|p| p.generation).max().unwrap();
    assert!(got.iter().all(|p| !p.revoking && p.generation > old_max));
    assert!(r.assignment("g", &a).iter().all(|p| !p.revoking));
}

#[test]
fn a_forced_release_moves_a_stuck_partition_and_fences_the_owner() {
    let mut r = Replica::new();
    r.topic("t", 2);
    let a = r.join("g", "x");
    let b = r.join("g", "x");
    let stuck = r.assignment("g", &a).into_iter().find(|p| p.revoking).unwrap();
    let force = |generation| GroupCommand::ForceRelease {
        group: "g".into(),
        partitions: vec![(stuck.topic.clone(), stuck.partition, generation)],
    };
    assert_eq!(r.group(force(stuck.generation + 1)), GroupResponse::Done);
    assert!(r.assignment("g", &b).is_empty(), "a force for another generation changes nothing");
    assert_eq!(r.group(force(stuck.generation)), GroupResponse::Done);
    let moved = r.assignment("g", &b);
    assert_eq!(moved.len(), 1);
    assert!(moved[0].generation > stuck.generation, "the old owner's generation is fenced");
    assert_eq!(r.assignment("g", &a).len(), 1);
}

#[test]
fn an_expired_member_is_removed_and_its_partitions_move_at_once() {
    let mut r = Replica::new();
    r.topic("t", 3);
    let a = r.join("g", "x");
    let b = r.join("g", "x");
    // b never released anything: a dies (session expiry proposes Leave).
    assert_eq!(r.group(GroupCommand::Leave { group: "g".into(), members: vec![a.clone()] }), GroupResponse::Done);
    let got = r.assignment("g", &b);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|p| !p.revoking));
    let refresh = GroupCommand::Join {
        group: "g".into(),
        member_id: Some(a.clone()),
        client_id: "x".into(),
        topics: vec!["t".into()],
        create: None,
        mode: GroupMode::Partitioned,
        principal: "User:ANONYMOUS".into(),
    };
    assert_eq!(r.group(refresh), GroupResponse::Rejected(GroupReject::UnknownMember), "the dead member must rejoin");
}

#[test]
fn group_lifecycle_and_refusals() {
    let mut r = Replica::new();
    r.topic("t", 2);
    let create = |name: &str, topics: Vec<String>| GroupCommand::Create {
        name: name.into(),
        config: GroupConfig::default(),
        topics,
    };
    assert!(matches!(r.group(create("g", vec!["t".into()])), GroupResponse::Created(_)));
    assert_eq!(r.group(create("g", vec![])), GroupResponse::Rejected(GroupReject::Exists));
    assert_eq!(
        r.group(create("h", vec!["nope".into()])),
        GroupResponse::Rejected(GroupReject::UnknownTopic("nope".into()))
    );
    let a = r.join("g", "x");
    let delete = || GroupCommand::Delete { name: "g".into() };
    assert_eq!(r.group(delete()), GroupResponse::Rejected(GroupReject::NotEmpty { members: 1 }));
    r.group(GroupCommand::Leave { group: "g".into(), members: vec![a] });
    let first_id = r.shared.read().groups["g"].id;
    assert_eq!(r.group(delete()), GroupResponse::Deleted);
    r.join("g", "x");
    assert!(r.shared.read().groups["g"].id > first_id, "a re-created group gets a fresh id");
    let shared = GroupConfig { mode: GroupMode::Shared, ..GroupConfig::default() };
    r.group(GroupCommand::Create { name: "s".into(), config: shared, topics: vec![] });
    let join_shared = GroupCommand::Join {
        group: "s".into(),
        member_id: None,
        client_id: "x".into(),
        topics: vec!["t".into()],
        create: None,
        mode: GroupMode::Partitioned,
        principal: "User:ANONYMOUS".into(),
    };
    assert_eq!(r.group(join_shared.clone()), GroupResponse::Rejected(GroupReject::WrongMode(GroupMode::Shared)));
    let GroupCommand::Join { group, member_id, client_id, topics, create, principal, .. } = join_shared else {
        unreachable!()
    };
    let shared_member =
        GroupCommand::Join { group, member_id, client_id, topics, create, mode: GroupMode::Shared, principal };
    assert!(matches!(r.group(shared_member), GroupResponse::Joined { ref assignment, .. } if assignment.is_empty()));
    assert!(r.shared.read().groups["s"].assignments.is_empty(), "shared members own no partitions");
    // Deleting the topic drops its assignments.
    r.apply(MetaCommand::DeleteTopic { name: "t".into() });
    assert!(r.shared.read().groups["g"].assignments.is_empty());
}

#[test]
fn replicas_and_snapshots_agree() {
    let mut one = Replica::new();
    let mut two = Replica::new();
    for r in [&mut one, &mut two] {
        r.topic("t", 5);
        let a = r.join("g", "x");
        r.join("g", "y");
        r.join("g", "z");
        r.group(GroupCommand::Leave { group: "g".into(), members: vec![a] });
    }
    assert_eq!(*one.shared.read(), *two.shared.read());
    let mut three = Replica::new();
    three.logic.restore(&one.logic.snapshot()).unwrap();
    assert_eq!(*three.shared.read(), *one.shared.read());
}
