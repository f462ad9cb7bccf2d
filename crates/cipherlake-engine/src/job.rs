//! A confidential job's SQL script and what it may show.
//!
//! - [`substitute`] fills `${NAME}` references from the configuration the CAS released; an
//!   undefined name is an error before anything runs.
//! - [`Redactor`] replaces every released value in a text by its `${NAME}` reference, so error
//!   messages (which quote statements) never carry secrets.
//! - [`Console`] is the policy's setting for what a job may print, and [`Console::render`]
//!   applies it to a statement's result.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use zeroize::Zeroizing;

use crate::output::{OutputFormat, write_batches};

/// Why a job script cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The script references a name the configuration does not define.
    #[error(
        "job line {line}: ${{{name}}} is not defined by the configuration the CAS released (defined: {defined})"
    )]
    Undefined {
        /// The name.
        name: String,
        /// 1-based line.
        line: usize,
        /// The names that are defined, comma-separated (never values).
        defined: String,
    },
    /// `${` without a closing `}` or with a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("job line {line}: malformed reference {text:?} (expected ${{NAME}})")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// The text after `${`, up to 40 characters.
        text: String,
    },
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces each `${NAME}` in `script` with `values[NAME]`. The result holds secrets: it is
/// zeroized on drop and must not be logged (use a [`Redactor`] on anything derived from it).
pub fn substitute(
    script: &str,
    values: &BTreeMap<String, Zeroizing<String>>,
) -> Result<Zeroizing<String>, JobError> {
    let mut out = Zeroizing::new(String::with_capacity(script.len()));
    let mut rest = script;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let line = script[..script.len() - rest.len() + start]
            .matches('\n')
            .count()
            + 1;
        let after = &rest[start + 2..];
        let Some(end) = after.find('}').filter(|&end| is_name(&after[..end])) else {
            return Err(JobError::Malformed {
                line,
                text: after.chars().take(40).collect(),
            });
        };
        let name = &after[..end];
        let value = values.get(name).ok_or_else(|| JobError::Undefined {
            name: name.to_string(),
            line,
            defined: values.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces released values by their `${NAME}` references in texts about to be shown.
pub struct Redactor {
    /// (value, name), longest values first so that a value containing another is replaced whole.
    values: Vec<(Zeroizing<String>, String)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field(
                "names",
                &self.values.iter().map(|(_, n)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Values shorter than this are not redacted: replacing every `1` or `on` in a message would
/// make it unreadable, and such values are not secrets.
const MIN_REDACTED_LEN: usize = 4;

impl Redactor {
    /// A redactor for these name → value pairs.
    pub fn new(values: &BTreeMap<String, Zeroizing<String>>) -> Self {
        let mut values: Vec<_> = values
            .iter()
            .filter(|(_, v)| v.len() >= MIN_REDACTED_LEN)
            .map(|(k, v)| (v.clone(), k.clone()))
            .collect();
        values.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        Redactor { values }
    }

    /// `text` with every value replaced by `${NAME}`, and the signatures of signed URLs (a
    /// SAS token's `sig=`, S3's `X-Amz-Signature=`) that storage clients quote in their errors,
    /// re-encoded so that the token's text does not match, replaced by `REDACTED`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (value, name) in &self.values {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), &format!("${{{name}}}"));
            }
        }
        for parameter in SIGNATURE_PARAMETERS {
            text = redact_parameter(&text, parameter);
        }
        text
    }
}

/// URL query parameters whose values are signatures.
const SIGNATURE_PARAMETERS: [&str; 2] = ["sig=", "X-Amz-Signature="];

/// Replaces the value of every `parameter` (up to `&`, whitespace or a quote) by `REDACTED`.
fn redact_parameter(text: &str, parameter: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(parameter) {
        let value_start = at + parameter.len();
        out.push_str(&rest[..value_start]);
        out.push_str("REDACTED");
        let value = &rest[value_start..];
        let end = value
            .find(|c: char| c == '&' || c.is_whitespace() || "\"'`)".contains(c))
            .unwrap_or(value.len());
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// What a job may print, as the policy's service `console` setting says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Nothing derived from data: only that each statement completed.
    None,
    /// The number of result rows of each statement, no values.
    RowCounts,
    /// Result rows in the clear.
    Full,
}

impl Console {
    /// Parses the setting the CAS released; anything unknown is the strictest, `none`.
    pub fn from_setting(setting: &str) -> Self {
        match setting {
            "full" => Console::Full,
            "row-counts" => Console::RowCounts,
            _ => Console::None,
        }
    }

    /// The setting's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Console::None => "none",
            Console::RowCounts => "row-counts",
            Console::Full => "full",
        }
    }

    /// Writes what this setting lets a job show of statement `index`'s result to `out`.
    pub fn render(
        self,
        index: usize,
        batches: &[RecordBatch],
        has_columns: bool,
        format: OutputFormat,
        out: &mut dyn std::io::Write,
    ) -> Result<(), crate::EngineError> {
        let io = |e: std::io::Error| crate::EngineError::Output(e.to_string());
        match self {
            Console::Full if has_columns => write_batches(format, batches, out),
            Console::RowCounts if has_columns => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                writeln!(out, "statement {index}: {rows} row(s)").map_err(io)
            }
            _ => writeln!(out, "statement {index}: done").map_err(io),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, Zeroizing<String>> {
        [
            ("TAXI_URI", "file:///data/taxi"),
            ("SAS", "sv=2024&sig=c2VjcmV0"),
            ("ON", "on"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Zeroizing::new(v.to_string())))
        .collect()
    }

    #[test]
    fn substitutes_defined_names() {
        let out = substitute("SELECT * FROM '${TAXI_URI}/x' -- ${ON}", &values()).unwrap();
        assert_eq!(out.as_str(), "SELECT * FROM 'file:///data/taxi/x' -- on");
    }

    #[test]
    fn undefined_names_fail_with_their_line_and_no_values() {
        let err = substitute("SELECT 1;\n${NOPE}", &values()).unwrap_err();
        assert_eq!(
            err,
            JobError::Undefined {
                name: "NOPE".into(),
                line: 2,
                defined: "ON, SAS, TAXI_URI".into()
            }
        );
        assert!(!err.to_string().contains("sig="));
    }

    #[test]
    fn malformed_references_are_refused() {
        for script in ["SELECT '${'", "SELECT '${a b}'", "SELECT '${1X}'", "${}"] {
            assert!(
                matches!(
                    substitute(script, &values()),
                    Err(JobError::Malformed { .. })
                ),
                "{script}"
            );
        }
    }

    #[test]
    fn redaction_replaces_values_by_names() {
        let redactor = Redactor::new(&values());
        let text = "cannot open az://c/x?sv=2024&sig=c2VjcmV0 at file:///data/taxi: on";
        assert_eq!(
            redactor.redact(text),
            "cannot open az://c/x?${SAS} at ${TAXI_URI}: on"
        );
        assert!(!format!("{redactor:?}").contains("sig"));
        assert_eq!(
            redactor.redact("GET http://h/c/x?sv=2024&sig=c2Vj%2BcmV0&se=1 failed"),
            "GET http://h/c/x?sv=2024&sig=REDACTED&se=1 failed"
        );
    }

    #[test]
    fn console_settings_gate_what_is_shown() {
        let batch = RecordBatch::try_from_iter([(
            "secret_column",
            std::sync::Arc::new(arrow::array::Int64Array::from(vec![4242, 4343])) as _,
        )])
        .unwrap();
        let show = |console: Console| {
            let mut out = Vec::new();
            console
                .render(
                    3,
                    std::slice::from_ref(&batch),
                    true,
                    OutputFormat::Csv,
                    &mut out,
                )
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(show(Console::None), "statement 3: done\n");
        assert_eq!(show(Console::RowCounts), "statement 3: 2 row(s)\n");
        assert!(show(Console::Full).contains("4242"));
        assert_eq!(Console::from_setting("bogus"), Console::None);
    }
}
