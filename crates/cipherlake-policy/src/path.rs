//! Field paths (`services.driver.env.SQL_URL`) and source locations (line, column) for errors.

use std::fmt;

/// Where something is in the policy's YAML text (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line, starting at 1.
    pub line: u64,
    /// Column, starting at 1.
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A mapping key (field name, service name, secret name, environment variable, file path).
    Key(String),
    /// A position in a sequence, from 0.
    Index(usize),
}

/// The path of a field in the policy, rendered like `services.driver.env.SQL_URL`,
/// `owners[1]` or `services.driver.files["/etc/app.conf"]` (keys that are not plain words are
/// quoted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// The path of the document root.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path extended by a mapping key.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.segments.clone();
        segments.push(Segment::Key(key.into()));
        Self { segments }
    }

    /// This path extended by a sequence index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.segments.clone();
        segments.push(Segment::Index(index));
        Self { segments }
    }

    /// The path one level up, or `None` at the root.
    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.segments.split_last()?;
        Some(Self {
            segments: rest.to_vec(),
        })
    }

    /// The steps of this path.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl FromIterator<Segment> for FieldPath {
    fn from_iter<I: IntoIterator<Item = Segment>>(iter: I) -> Self {
        Self {
            segments: iter.into_iter().collect(),
        }
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) if is_plain_key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{key:?}]")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_keys_indices_and_quoted_keys() {
        let root = FieldPath::root();
        assert_eq!(root.to_string(), "(document)");
        let env = root.key("services").key("driver").key("env").key("SQL_URL");
        assert_eq!(env.to_string(), "services.driver.env.SQL_URL");
        assert_eq!(root.key("owners").index(1).to_string(), "owners[1]");
        let file = root
            .key("services")
            .key("w")
            .key("files")
            .key("/etc/a.conf");
        assert_eq!(file.to_string(), r#"services.w.files["/etc/a.conf"]"#);
        assert_eq!(
            env.parent().map(|p| p.to_string()).as_deref(),
            Some("services.driver.env")
        );
        assert!(root.parent().is_none());
    }
}
