use super::*;
use crate::groups::{GroupConfig, MemberMeta};

fn group() -> GroupMeta {
    GroupMeta {
        id: 1,
        name: "g".into(),
        config: GroupConfig::default(),
        topics: BTreeSet::new(),
        members: BTreeMap::new(),
        assignments: BTreeMap::new(),
        next_member: 0,
        next_generation: 0,
    }
}

fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
    topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn join(g: &mut GroupMeta, id: &str, topics: &[&str], c: &BTreeMap<String, u32>) {
    let topics = topics.iter().map(|t| t.to_string()).collect();
    g.members.insert(id.into(), MemberMeta { client_id: id.into(), topics, principal: String::new() });
    rebalance(g, c);
}

fn leave(g: &mut GroupMeta, id: &str, c: &BTreeMap<String, u32>) {
    g.members.remove(id);
    rebalance(g, c);
}

/// Every revoking owner commits and releases, as the SDK does.
fn settle(g: &mut GroupMeta, c: &BTreeMap<String, u32>) -> usize {
    let moving: Vec<_> = g
        .assignments
        .iter()
        .filter(|(_, a)| a.moving_to.is_some())
        .map(|(k, a)| (k.clone(), a.owner.clone().unwrap(), a.generation))
        .collect();
    for (k, owner, generation) in &moving {
        assert!(complete_move(g, k, owner, *generation));
    }
    rebalance(g, c);
    moving.len()
}

fn owners(g: &GroupMeta) -> BTreeMap<(String, u32), (String, u64)> {
    g.assignments.iter().map(|(k, a)| (k.clone(), (a.owner.clone().unwrap(), a.generation))).collect()
}

fn per_member(g: &GroupMeta) -> BTreeMap<String, usize> {
    let mut m: BTreeMap<String, usize> = g.members.keys().map(|k| (k.clone(), 0)).collect();
    for a in g.assignments.values() {
        *m.get_mut(a.owner.as_ref().unwrap()).unwrap() += 1;
    }
    m
}

fn assert_balanced(g: &GroupMeta) {
    let m = per_member(g);
    let (lo, hi) = (m.values().min().unwrap(), m.values().max().unwrap());
    assert!(hi - lo <= 1, "balanced within one: {m:?}");
}

#[test]
fn a_join_moves_only_the_needed_partitions_through_revoking() {
    let c = counts(&[("t", 8)]);
    let mut g = group();
    join(&mut g, "a", &["t"], &c);
    assert_eq!(per_member(&g)["a"], 8, "a lone member owns everything at once");
    let before = owners(&g);
    join(&mut g, "b", &["t"], &c);
    let revoking: Vec<u32> = g.assignments.iter().filter(|(_, a)| a.moving_to.is_some()).map(|(k, _)| k.1).collect();
    assert_eq!(revoking.len(), 4, "exactly the excess of a moves");
    assert!(g.assignments.values().all(|a| a.owner.as_deref() == Some("a")), "nothing moves before a releases");
    assert!(g.member_assignment("b").is_empty());
    assert_eq!(settle(&mut g, &c), 4);
    assert_balanced(&g);
    let after = owners(&g);
    for (k, (owner, generation)) in &after {
        if owner == "a" {
            assert_eq!(before[k], (owner.clone(), *generation), "a's kept partitions keep their generation");
        } else {
            assert!(*generation > before[k].1, "a moved partition gets a new generation");
        }
    }
}

#[test]
fn a_leave_spreads_only_the_leavers_partitions() {
    let c = counts(&[("t", 12)]);
    let mut g = group();
    for m in ["a", "b", "c", "d"] {
        join(&mut g, m, &["t"], &c);
        settle(&mut g, &c);
    }
    assert_balanced(&g);
    let before = owners(&g);
    leave(&mut g, "c", &c);
    assert!(g.assignments.values().all(|a| a.moving_to.is_none()), "a dead owner's partitions move at once");
    for (k, (owner, generation)) in owners(&g) {
        let (was, was_gen) = &before[&k];
        if was == "c" {
            assert_ne!(owner, "c");
            assert!(generation > *was_gen);
        } else {
            assert_eq!((&owner, generation), (was, *was_gen), "{k:?} did not belong to the leaver");
        }
    }
    assert_balanced(&g);
}

#[test]
fn a_leave_during_a_move_sends_the_partition_straight_to_its_target() {
    let c = counts(&[("t", 4)]);
    let mut g = group();
    join(&mut g, "a", &["t"], &c);
    join(&mut g, "b", &["t"], &c);
    leave(&mut g, "a", &c);
    assert_eq!(per_member(&g)["b"], 4);
    assert!(g.assignments.values().all(|a| a.moving_to.is_none()));
    // And the other way: the target leaves before the owner released.
    join(&mut g, "c", &["t"], &c);
    leave(&mut g, "c", &c);
    assert!(g.assignments.values().all(|a| a.moving_to.is_none() && a.owner.as_deref() == Some("b")));
}

#[test]
fn a_stale_release_is_ignored() {
    let c = counts(&[("t", 2)]);
    let mut g = group();
    join(&mut g, "a", &["t"], &c);
    join(&mut g, "b", &["t"], &c);
    let (k, a) =
        g.assignments.iter().find(|(_, a)| a.moving_to.is_some()).map(|(k, a)| (k.clone(), a.clone())).unwrap();
    assert!(!complete_move(&mut g, &k, "a", a.generation + 1), "wrong generation");
    assert!(!complete_move(&mut g, &k, "b", a.generation), "not the owner");
    assert!(complete_move(&mut g, &k, "a", a.generation));
    assert!(!complete_move(&mut g, &k, "a", a.generation), "only once");
}

#[test]
fn scaling_up_and_down_stays_balanced_and_sticky() {
    let c = counts(&[("t", 7), ("u", 3)]);
    let mut g = group();
    let names: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    let mut seed = 7u64;
    let mut live: Vec<String> = Vec::new();
    for _ in 0..60 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let pick = &names[(seed >> 33) as usize % names.len()];
        let before = owners(&g);
        if live.contains(pick) && live.len() > 1 {
            live.retain(|m| m != pick);
            leave(&mut g, pick, &c);
        } else if !live.contains(pick) {
            live.push(pick.clone());
            join(&mut g, pick, &["t", "u"], &c);
        }
        settle(&mut g, &c);
        // Sticky: whatever moved had to (its owner left, or its owner was over quota).
        for (k, (owner, _)) in owners(&g) {
            if let Some((was, _)) = before.get(&k) {
                if was != &owner {
                    let n = c[&k.0] as usize;
                    let held = before.iter().filter(|(k2, (o, _))| k2.0 == k.0 && o == was).count();
                    assert!(!live.contains(was) || held > n / live.len(), "{k:?} moved needlessly");
                }
            }
        }
        for t in ["t", "u"] {
            let mut per: BTreeMap<&str, usize> = live.iter().map(|m| (m.as_str(), 0)).collect();
            for ((topic, _), a) in &g.assignments {
                if topic == t {
                    *per.get_mut(a.owner.as_deref().unwrap()).unwrap() += 1;
                }
            }
            let (lo, hi) = (per.values().min().unwrap(), per.values().max().unwrap());
            assert!(hi - lo <= 1, "topic {t} balanced within one: {per:?}");
            assert_eq!(per.values().sum::<usize>(), c[t] as usize, "every partition owned");
        }
    }
}

#[test]
fn deleted_topics_and_unsubscribed_partitions_are_dropped() {
    let mut g = group();
    join(&mut g, "a", &["t", "u"], &counts(&[("t", 2), ("u", 1)]));
    assert_eq!(g.assignments.len(), 3);
    rebalance(&mut g, &counts(&[("t", 2)]));
    assert_eq!(g.assignments.len(), 2, "u was deleted");
    leave(&mut g, "a", &counts(&[("t", 2)]));
    assert!(g.assignments.is_empty());
}
