//! Server-side, sticky, incremental partition assignment, computed inside the metadata
//! apply so every replica reaches the same answer.
//!
//! Per topic, each subscribed member gets ⌊n/m⌋ or ⌈n/m⌉ partitions. Members keep what
//! they hold up to their quota; only the excess of over-quota members and unowned
//! partitions move. A partition whose owner is alive moves through "revoking" (the owner
//! commits and releases it); one whose owner is gone moves at once.

use std::collections::{BTreeMap, BTreeSet};

use super::{GroupMeta, GroupMode, PartitionAssignment};

/// Brings `group`'s assignment in line with its members and the topics' partition
/// counts (`topic -> partitions`; a topic missing here no longer exists).
pub fn rebalance(group: &mut GroupMeta, partition_counts: &BTreeMap<String, u32>) {
    if group.config.mode == GroupMode::Shared {
        // Shared members read every partition; nothing is owned.
        group.assignments.clear();
        return;
    }
    forget_gone(group, partition_counts);
    let mut load: BTreeMap<String, usize> = group.members.keys().map(|m| (m.clone(), 0)).collect();
    for t in group.assignments.values().filter_map(target) {
        *load.entry(t.to_string()).or_default() += 1;
    }
    let topics: BTreeSet<String> = group.members.values().flat_map(|m| m.topics.iter().cloned()).collect();
    for topic in topics {
        let Some(&count) = partition_counts.get(&topic) else { continue };
        let eligible: Vec<String> =
            group.members.iter().filter(|(_, m)| m.topics.contains(&topic)).map(|(id, _)| id.clone()).collect();
        let targets = plan_topic(group, &topic, count, &eligible, &load);
        for (partition, to) in targets {
            let key = (topic.clone(), partition);
            if let Some(old) = group.assignments.get(&key).and_then(target) {
                *load.get_mut(old).expect("targets are members") -= 1;
            }
            *load.get_mut(&to).expect("targets are members") += 1;
            move_partition(group, key, to);
        }
    }
}

/// Where a partition is headed: the member it is moving to, else its owner.
fn target(a: &PartitionAssignment) -> Option<&str> {
    a.moving_to.as_deref().or(a.owner.as_deref())
}

/// Drops assignments of deleted topics, partitions nobody may own, and references to
/// members that left. A partition whose owner left while it was moving goes to its
/// target at once: nobody is left to release it.
fn forget_gone(group: &mut GroupMeta, partition_counts: &BTreeMap<String, u32>) {
    let members = &group.members;
    let next_generation = &mut group.next_generation;
    let subscribed = |m: &Option<String>, topic: &str| {
        m.as_ref().is_some_and(|m| members.get(m).is_some_and(|meta| meta.topics.contains(topic)))
    };
    group.assignments.retain(|(topic, p), a| {
        if partition_counts.get(topic).is_none_or(|n| p >= n) {
            return false;
        }
        if !subscribed(&a.owner, topic) {
            a.owner = None;
        }
        if !subscribed(&a.moving_to, topic) {
            a.moving_to = None;
        }
        if a.owner.is_none() && a.moving_to.is_some() {
            *next_generation += 1;
            a.owner = a.moving_to.take();
            a.generation = *next_generation;
        }
        a.owner.is_some()
    });
}

/// The partitions of one topic whose target must change, and their new target.
fn plan_topic(
    group: &GroupMeta,
    topic: &str,
    count: u32,
    eligible: &[String],
    load: &BTreeMap<String, usize>,
) -> Vec<(u32, String)> {
    if eligible.is_empty() {
        return Vec::new();
    }
    let current = |p: u32| group.assignments.get(&(topic.to_string(), p));
    let mut held: BTreeMap<&str, Vec<u32>> = eligible.iter().map(|m| (m.as_str(), Vec::new())).collect();
    let mut free = Vec::new();
    for p in 0..count {
        match current(p).and_then(target) {
            Some(t) => held.get_mut(t).expect("targets are eligible").push(p),
            None => free.push(p),
        }
    }
    // Who gets the extra partitions: those holding most already (nothing moves), then
    // the least loaded on other topics, then by id.
    let (base, extra) = (count as usize / eligible.len(), count as usize % eligible.len());
    let mut order: Vec<&str> = eligible.iter().map(String::as_str).collect();
    order.sort_by_key(|m| (std::cmp::Reverse(held[m].len()), load[*m].saturating_sub(held[m].len()), *m));
    let quota: BTreeMap<&str, usize> =
        order.iter().enumerate().map(|(i, m)| (*m, base + usize::from(i < extra))).collect();
    for (m, parts) in held.iter_mut() {
        // Give up first what has not arrived yet (cancelling a move is free), then the
        // highest partitions.
        parts.sort_by_key(|p| (current(*p).is_some_and(|a| a.owner.as_deref() == Some(*m)), std::cmp::Reverse(*p)));
        while parts.len() > quota[m] {
            free.push(parts.remove(0));
        }
    }
    free.sort_unstable();
    let mut plan = Vec::new();
    for p in free {
        let owner = current(p).and_then(|a| a.owner.as_deref());
        let back_home = owner.filter(|o| held.get(o).is_some_and(|h| h.len() < quota[o]));
        let to =
            back_home.or_else(|| order_by_id(eligible).find(|m| held[m].len() < quota[m])).expect("quotas sum to n");
        held.get_mut(to).expect("eligible").push(p);
        if current(p).and_then(target) != Some(to) {
            plan.push((p, to.to_string()));
        }
    }
    plan
}

fn order_by_id(eligible: &[String]) -> impl Iterator<Item = &str> {
    eligible.iter().map(String::as_str)
}

/// Points a partition at `to`: at once if nobody owns it, else through revoking.
fn move_partition(group: &mut GroupMeta, key: (String, u32), to: String) {
    let next_generation = &mut group.next_generation;
    let a = group.assignments.entry(key).or_insert(PartitionAssignment { owner: None, generation: 0, moving_to: None });
    match &a.owner {
        None => {
            *next_generation += 1;
            *a = PartitionAssignment { owner: Some(to), generation: *next_generation, moving_to: None };
        }
        Some(owner) if *owner == to => a.moving_to = None,
        Some(_) => a.moving_to = Some(to),
    }
}

/// The owner released `key` (after committing): it goes to the member it was moving to.
/// Returns whether it moved.
pub fn complete_move(group: &mut GroupMeta, key: &(String, u32), member: &str, generation: u64) -> bool {
    let Some(a) = group.assignments.get_mut(key) else { return false };
    if a.owner.as_deref() != Some(member) || a.generation != generation {
        return false;
    }
    let Some(to) = a.moving_to.take() else { return false };
    group.next_generation += 1;
    a.owner = Some(to);
    a.generation = group.next_generation;
    true
}

#[cfg(test)]
#[path = "assign_tests.rs"]
mod tests;
