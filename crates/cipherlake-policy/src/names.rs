//! Rules for names in policies: policy, service and secret names, environment variables,
//! file paths and DNS names.

/// Longest policy, service or secret name.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// A policy, service or secret name: 1 to 64 ASCII letters, digits, `-` or `_`, starting with
/// a letter or digit (these names appear in certificate URIs, metrics labels and templates).
pub(crate) fn is_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An environment variable name: a letter or `_`, then letters, digits or `_`.
pub(crate) fn is_env_name(name: &str) -> bool {
    name.len() <= 256
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why a file path is refused, or `None` when it is acceptable: absolute, no `.`/`..`/empty
/// components, no NUL, at most 4096 bytes.
pub(crate) fn file_path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        return Some("must be absolute");
    }
    if path.len() > 4096 {
        return Some("is longer than 4096 bytes");
    }
    if path.contains('\0') {
        return Some("contains a NUL byte");
    }
    if path.ends_with('/') {
        return Some("names a directory, not a file");
    }
    if path[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Some("has an empty, '.' or '..' component");
    }
    None
}

/// A DNS name for a certificate: labels of letters, digits and inner hyphens, at most 253
/// bytes; the first label may be `*`.
pub(crate) fn is_dns_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && name.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("taxi-footer") && is_name("sql_url") && is_name("a1"));
        assert!(!is_name("") && !is_name("-x") && !is_name("a.b") && !is_name("é"));
        assert!(!is_name(&"a".repeat(65)));
        assert!(is_env_name("SQL_URL") && is_env_name("_x1"));
        assert!(!is_env_name("1X") && !is_env_name("A-B") && !is_env_name(""));
        assert!(file_path_problem("/etc/app/conf.yaml").is_none());
        for bad in ["etc/x", "/a/../b", "/a//b", "/a/", "/./a", "/a\0b"] {
            assert!(file_path_problem(bad).is_some(), "{bad:?}");
        }
        assert!(is_dns_name("driver.taxi.svc") && is_dns_name("*.example.com"));
        assert!(!is_dns_name("-a.com") && !is_dns_name("a..b") && !is_dns_name("a_b.com"));
    }
}
