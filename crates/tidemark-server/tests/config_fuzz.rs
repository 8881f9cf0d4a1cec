//! Property tests of the node configuration read from a file, the environment or flags:
//! [`NodeConfig`] from TOML, [`NodeConfig::from_file`] and [`parse_peers`]. No text, and
//! no combination of values, may panic the node at start; whatever `validate` accepts
//! must be usable as the node uses it, and what `--print-config` prints must read back.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use tidemark_server::tls::ClientAuth;
use tidemark_server::{parse_peers, NodeConfig};

const FIELDS: &[&str] = &[
    "id",
    "listen",
    "advertise",
    "cluster_listen",
    "join",
    "cluster_id",
    "data_dir",
    "peers",
    "heartbeat_ms",
    "election_timeout_min_ms",
    "election_timeout_max_ms",
    "max_batch_bytes",
    "max_record_bytes",
    "producer_expiry_ms",
    "retention_check_ms",
    "checkpoint_entries",
    "segment_bytes",
    "metrics_listen",
    "leader_balance",
    "max_topics",
    "max_partitions",
    "replace_dead_after_ms",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "tls_client_auth",
    "require_auth",
    "superusers",
    "max_connections",
    "max_requests_per_connection",
    "not_a_field",
];

/// Every accessor the node calls on a configuration: none may panic, and a configuration
/// `validate` accepts must give the node what it needs.
fn check(c: &NodeConfig, from_text: bool) -> Result<(), TestCaseError> {
    let (listen, cluster, peers) = (c.listen_addr(), c.cluster_listen_addr(), c.peer_map());
    let (_, _, _, _) = (c.client_address(), c.limits(), c.timing(), c.tls_files());
    if c.validate().is_err() {
        return Ok(());
    }
    prop_assert!(listen.is_ok() && cluster.is_ok());
    prop_assert!(peers.unwrap().contains_key(&c.id));
    let timing = c.timing();
    prop_assert!(timing.heartbeat_ms > 0 && timing.election_min_ms < timing.election_max_ms);
    let limits = c.limits();
    prop_assert!(0 < limits.max_record_bytes && limits.max_record_bytes <= limits.max_batch_bytes);
    prop_assert_eq!(c.tls_files().is_some(), !c.tls_cert.is_empty());
    // What `serve --print-config` shows reads back as the same configuration. (TOML has
    // no integers above i64::MAX, which flags may give: printing those is an error.)
    match c.to_toml() {
        Ok(printed) => prop_assert_eq!(&toml::from_str::<NodeConfig>(&printed).unwrap(), c),
        Err(e) => prop_assert!(!from_text, "a configuration read from TOML does not print: {}", e),
    }
    Ok(())
}

/// Parses `text` as a config file would be; anything that parses is checked.
fn parse_and_check(text: &str) -> Result<Option<NodeConfig>, TestCaseError> {
    match toml::from_str::<NodeConfig>(text) {
        Ok(c) => check(&c, true).map(|()| Some(c)),
        Err(_) => Ok(None),
    }
}

/// A TOML value of any type, biased towards what the fields hold and their edges.
fn value() -> impl Strategy<Value = String> {
    let address = select(vec![
        "127.0.0.1:9092",
        "127.0.0.1:9192",
        "0.0.0.0:9092",
        "[::1]:9092",
        "node-1.example:9092",
        "host:99999",
        ":1",
        "",
    ]);
    let text = prop_oneof![
        address.prop_map(str::to_string),
        "[ -~]{0,24}",
        "(1|2|0|18446744073709551616)=127\\.0\\.0\\.1:9[0-9]{3}(,[0-9]=[a-z.:0-9]{0,12}){0,3}",
        select(vec!["none", "optional", "required", "User:admin", "User:", "ca.pem"]).prop_map(str::to_string),
    ];
    let number = prop_oneof![
        any::<i64>(),
        0i64..200_000,
        select(vec![0, 1, 99, 100, 30_000, 59_999, 60_000, 1 << 20, 1 << 30, (1 << 30) + 1, 64 << 20, i64::MAX]),
    ];
    prop_oneof![
        3 => text.prop_map(|s| format!("{s:?}")),
        3 => number.prop_map(|n| n.to_string()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => vec("[ -~]{0,10}", 0..3).prop_map(|v| format!("{v:?}")),
        1 => Just("1.5".to_string()),
    ]
}

/// A config file: a valid one (node 1 of a cluster of one) with some keys, real ones or
/// not, set to some value, so that `validate` is reached with every kind of mistake.
fn config_text() -> impl Strategy<Value = String> {
    btree_map(select(FIELDS), value(), 0..6).prop_map(|mut lines| {
        lines.entry("id").or_insert_with(|| "1".into());
        lines.entry("peers").or_insert_with(|| "\"1=127.0.0.1:9192\"".into());
        lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    })
}

/// A number as flags could give it: small, at a bound `validate` checks, or anything.
fn flag_number() -> impl Strategy<Value = u64> {
    let edges = vec![0, 1, 99, 100, 30_000, 60_000, 1 << 20, 1 << 30, 64 << 20, i64::MAX as u64, u64::MAX / 3 + 1];
    prop_oneof![0u64..1_000, 1_000u64..200_000, select(edges), any::<u64>()]
}

/// A configuration as flags could give it: a valid one with a few numeric settings set
/// to anything, values no file can hold (above i64::MAX) included.
fn config_from_flags() -> impl Strategy<Value = NodeConfig> {
    let auth = select(vec![ClientAuth::None, ClientAuth::Optional, ClientAuth::Required]);
    (vec((0usize..14, flag_number()), 0..4), proptest::option::of(auth)).prop_map(|(settings, auth)| {
        let mut c = NodeConfig { id: 1, peers: "1=127.0.0.1:9192".into(), ..NodeConfig::default() };
        for (field, n) in settings {
            match field {
                0 => c.id = n,
                1 => c.heartbeat_ms = n,
                2 => c.election_timeout_min_ms = n,
                3 => c.election_timeout_max_ms = n,
                4 => c.max_batch_bytes = n as usize,
                5 => c.max_record_bytes = n as usize,
                6 => c.producer_expiry_ms = n,
                7 => c.retention_check_ms = n,
                8 => c.checkpoint_entries = n,
                9 => c.segment_bytes = n,
                10 => c.max_partitions = n as u32,
                11 => c.max_connections = n as u32,
                12 => c.replace_dead_after_ms = n,
                _ => c.max_requests_per_connection = n as u32,
            }
        }
        if let Some(auth) = auth {
            (c.tls_client_auth, c.require_auth) = (auth, true);
        }
        c
    })
}

fn valid_config_text() -> String {
    let c = NodeConfig { id: 1, peers: "1=127.0.0.1:9192".into(), ..NodeConfig::default() };
    c.to_toml().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        parse_and_check(&text)?;
    }

    /// Files made of the real keys with values of every type: the parser's type checks
    /// and `validate` both get exercised.
    #[test]
    fn plausible_files_never_panic(text in config_text()) {
        parse_and_check(&text)?;
    }

    /// A valid file with a few characters changed (a typo, a damaged file).
    #[test]
    fn a_damaged_valid_file_never_panics(edits in vec((any::<prop::sample::Index>(), any::<char>()), 1..4)) {
        let mut text: Vec<char> = valid_config_text().chars().collect();
        for (at, ch) in edits {
            let at = at.index(text.len());
            text[at] = ch;
        }
        parse_and_check(&text.into_iter().collect::<String>())?;
    }

    /// Values no file can hold (above i64::MAX) come from flags and the environment.
    #[test]
    fn any_values_from_flags_never_panic(c in config_from_flags()) {
        check(&c, false)?;
    }

    /// A file of arbitrary bytes (not UTF-8, say) is an error, not a panic.
    #[test]
    fn from_file_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        if let Ok(c) = NodeConfig::from_file(file.path()) {
            check(&c, true)?;
        }
    }

    #[test]
    fn arbitrary_peer_lists_never_panic(text in "\\PC{0,64}") {
        if let Ok(peers) = parse_peers(&text) {
            prop_assert!(!peers.contains_key(&0));
        }
    }

    /// Every well-formed peer list reads back as the map it was written from, whatever
    /// the spacing around its parts.
    #[test]
    fn peer_lists_round_trip(
        peers in btree_map(1u64.., "[a-z0-9.:\\[\\]-]{1,20}", 0..6),
        pad in select(vec!["", " ", "  "]),
    ) {
        let text: Vec<String> = peers.iter().map(|(id, addr)| format!("{pad}{id}{pad}={pad}{addr}{pad}")).collect();
        prop_assert_eq!(parse_peers(&text.join(",")).unwrap(), peers.clone());
        let twice = format!("{},{}", text.join(","), text.join(","));
        prop_assert_eq!(parse_peers(&twice).is_err(), !peers.is_empty());
    }
}

/// Found by the properties above: `validate` computed `heartbeat_ms * 3` unchecked, so a
/// heartbeat above u64::MAX / 3 panicked ("attempt to multiply with overflow") in a debug
/// build and wrapped in a release one.
#[test]
fn a_huge_heartbeat_is_refused_not_a_panic() {
    let text = "id = 1\npeers = \"1=127.0.0.1:9192\"\nheartbeat_ms = 9223372036854775807\n";
    let c: NodeConfig = toml::from_str(text).unwrap();
    assert!(c.validate().is_err());
    let from_flags = NodeConfig { heartbeat_ms: u64::MAX, ..c };
    assert!(from_flags.validate().is_err());
}

/// The sample files and the defaults the properties start from are themselves valid.
#[test]
fn the_starting_points_are_valid() {
    let c: NodeConfig = toml::from_str(&valid_config_text()).unwrap();
    c.validate().unwrap();
    let peers: BTreeMap<u64, String> = parse_peers("1=127.0.0.1:9192").unwrap();
    assert_eq!(c.peer_map().unwrap(), peers);
}
