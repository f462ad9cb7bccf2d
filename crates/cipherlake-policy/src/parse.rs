//! YAML parsing with the path and line of every error.
//!
//! The document is deserialised with `serde-saphyr` (panic-free, no `unsafe`, input budgets
//! against alias bombs and deep nesting, duplicate keys rejected) through
//! `serde_path_to_error`, so a parse error carries both the field path and the line. A second
//! pass records where every key and value is ([`SourceMap`]) so that validation errors, found
//! after parsing, can point at lines too.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::path::{FieldPath, Location, Segment};

/// A policy text that is not well-formed YAML or does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {message}", at_location(.location))]
pub struct ParseError {
    /// The field where parsing stopped.
    pub path: FieldPath,
    /// Where in the text, when known.
    pub location: Option<Location>,
    /// What was wrong.
    pub message: String,
}

/// Formats ` (line L, column C)` for messages, or nothing.
pub(crate) fn at_location(location: &Option<Location>) -> String {
    location
        .map(|location| format!(" ({location})"))
        .unwrap_or_default()
}

/// Most events aliases may replay in one document: a policy needs few, an alias bomb many.
const MAX_REPLAYED_EVENTS: usize = 10_000;

/// Parser options: no source snippets in messages (they could show inline secret values), and a
/// small alias budget; serde-saphyr's default input budget (depth, nodes, size) stays on.
fn options() -> serde_saphyr::Options {
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    serde_saphyr::options! {
        with_snippet: false,
        alias_limits: alias_limits,
    }
}

fn location_of(location: serde_saphyr::Location) -> Option<Location> {
    (location.line() > 0).then(|| Location {
        line: location.line(),
        column: location.column(),
    })
}

/// Deserialises one YAML document into `T`, with the failing field's path and location.
pub(crate) fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let mut failed_at: Option<FieldPath> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            failed_at = Some(convert_path(e.path()));
            e.into_inner()
        })
    });
    result.map_err(|error| {
        let location = error.location().and_then(location_of);
        ParseError {
            path: failed_at.unwrap_or_default(),
            location,
            message: strip_location(&error.without_snippet().to_string()),
        }
    })
}

fn convert_path(path: &serde_path_to_error::Path) -> FieldPath {
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Segment::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// Drops the ` at line L, column C` that serde-saphyr appends (the location is reported
/// separately) and its hints meant for programmers.
fn strip_location(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    let message = match message.find(", set DuplicateKeyPolicy") {
        Some(at) => &message[..at],
        None => message,
    };
    message.to_string()
}

/// Where each field of a document is: path → location of its key (of the element, for list
/// entries).
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    locations: HashMap<FieldPath, Location>,
}

impl SourceMap {
    /// Indexes a document; an unparsable document gives an empty map.
    pub(crate) fn build(text: &str) -> Self {
        let mut map = Self::default();
        if let Ok(root) = serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options()) {
            map.record(&FieldPath::root(), &root);
        }
        map
    }

    /// The location of `path`, or of its nearest ancestor that is written in the text.
    pub(crate) fn locate(&self, path: &FieldPath) -> Option<Location> {
        let mut current = Some(path.clone());
        while let Some(path) = current {
            if let Some(location) = self.locations.get(&path) {
                return Some(*location);
            }
            current = path.parent();
        }
        None
    }

    fn record(&mut self, path: &FieldPath, node: &Spanned<Node>) {
        match &node.value {
            Node::Map(entries) => {
                for (key, value) in entries {
                    let child = path.key(key.value.0.clone());
                    if let Some(location) = location_of(key.referenced) {
                        self.locations.insert(child.clone(), location);
                    }
                    self.record(&child, value);
                }
            }
            Node::Seq(items) => {
                for (index, item) in items.iter().enumerate() {
                    let child = path.index(index);
                    if let Some(location) = location_of(item.referenced) {
                        self.locations.insert(child.clone(), location);
                    }
                    self.record(&child, item);
                }
            }
            Node::Scalar => {}
        }
    }
}

/// A YAML node, for locating fields only.
enum Node {
    Map(Vec<(Spanned<KeyText>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key as text (YAML allows non-string keys; the policy schema does not, but the
/// index must not fail on them).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = KeyText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
        Ok(KeyText(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
        Ok(KeyText("null".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_map_locates_nested_keys_and_items() {
        let text = "a:\n  b: 1\n  list:\n    - x\n    - y: 2\n";
        let map = SourceMap::build(text);
        let root = FieldPath::root();
        let b = map.locate(&root.key("a").key("b")).expect("located");
        assert_eq!((b.line, b.column), (2, 3));
        let y = map
            .locate(&root.key("a").key("list").index(1).key("y"))
            .expect("located");
        assert_eq!(y.line, 5);
        // Absent fields fall back to their nearest written ancestor.
        let absent = map.locate(&root.key("a").key("missing")).expect("ancestor");
        assert_eq!(absent.line, 1);
    }

    #[test]
    fn source_map_of_an_alias_bomb_is_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            let refs = vec![format!("*a{p}"); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        // Ten to the twelfth nodes if expanded: the input budget refuses it, the map stays empty.
        let map = SourceMap::build(&text);
        assert!(map.locate(&FieldPath::root().key("a0")).is_none());
    }
}
