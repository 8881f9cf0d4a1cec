//! Names that users choose. They are validated once, at the edge, so every layer below
//! can trust them (and so a name can never escape into a path or a key prefix).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest topic name; Kafka's limit, so names move between the two systems.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name is {len} characters long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("topic name {name:?} has the character {ch:?}; use only ASCII letters, digits, '.', '_' and '-'")]
    BadCharacter { name: String, ch: char },
    #[error("topic name {name:?} is reserved")]
    Reserved { name: String },
}

/// A validated topic name: 1 to 249 of `[A-Za-z0-9._-]`, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(String);

impl TopicName {
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_TOPIC_NAME_LEN {
            return Err(NameError::TooLong { len: name.len(), max: MAX_TOPIC_NAME_LEN });
        }
        if let Some(ch) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return Err(NameError::BadCharacter { name, ch });
        }
        if name == "." || name == ".." {
            return Err(NameError::Reserved { name });
        }
        Ok(TopicName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        TopicName::new(s)
    }
}

impl From<TopicName> for String {
    fn from(n: TopicName) -> String {
        n.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_style_names() {
        for n in ["orders", "a", "orders.v1", "my_topic-2", &"x".repeat(249)] {
            assert!(TopicName::new(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        assert_eq!(TopicName::new(""), Err(NameError::Empty));
        assert!(matches!(TopicName::new("x".repeat(250)), Err(NameError::TooLong { len: 250, .. })));
        assert!(matches!(TopicName::new("a/b"), Err(NameError::BadCharacter { ch: '/', .. })));
        assert!(matches!(TopicName::new("héllo"), Err(NameError::BadCharacter { ch: 'é', .. })));
        assert!(matches!(TopicName::new(".."), Err(NameError::Reserved { .. })));
    }
}
