//! Database connection URLs: `postgres://USER:PASSWORD@HOST:PORT/DB` (or `postgresql://`) and
//! `sqlite:PATH`. A URL's `Display` and `Debug` never show its password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use zeroize::Zeroizing;

use super::error::SqlDbError;

/// Where a database is.
#[derive(Clone)]
pub enum DbUrl {
    /// A PostgreSQL server; the full URL (it may contain a password).
    Postgres(Zeroizing<String>),
    /// A SQLite database file.
    Sqlite(PathBuf),
}

impl DbUrl {
    /// The URL with its password replaced by `***`, for messages.
    pub fn redacted(&self) -> String {
        match self {
            DbUrl::Postgres(url) => redact(url),
            DbUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
        }
    }
}

/// `url` with the password of its `user:password@` part replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: mask whatever could be a password before an '@'.
        return match (url.split_once(':'), url.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}:***@{host}"),
            _ => url.to_owned(),
        };
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{}", redact_query(tail))
        }
        None => format!("{scheme}://{authority}{}", redact_query(tail)),
    }
}

/// Masks a `password=` query parameter.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

impl FromStr for DbUrl {
    type Err = SqlDbError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(DbUrl::Postgres(Zeroizing::new(s.to_owned())))
        } else if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(SqlDbError::Url {
                    url: redact(s),
                    reason: "expected sqlite:PATH".into(),
                });
            }
            Ok(DbUrl::Sqlite(PathBuf::from(path)))
        } else {
            Err(SqlDbError::Url {
                url: redact(s),
                reason: "expected postgres://USER:PASSWORD@HOST:PORT/DB or sqlite:PATH".into(),
            })
        }
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

/// A command-line argument holding a URL (or `NAME=URL`) as text until it is parsed after
/// argument parsing, so that parse errors never echo a password; `Debug` redacts it.
#[derive(Clone)]
pub struct UrlArg(pub String);

impl FromStr for UrlArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(UrlArg(s.to_owned()))
    }
}

impl fmt::Debug for UrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UrlArg({})", redact(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("postgres://bob:s3cr@t@db:5432/hr?sslmode=disable&password=x"),
            "postgres://bob:***@db:5432/hr?sslmode=disable&password=***"
        );
        assert_eq!(redact("postgres://bob@db/hr"), "postgres://bob@db/hr");
        let url: DbUrl = "postgresql://a:pw@h/d".parse().unwrap();
        assert_eq!(
            format!("{url} {url:?}"),
            "postgresql://a:***@h/d DbUrl(postgresql://a:***@h/d)"
        );
        assert!("mysql://x".parse::<DbUrl>().is_err());
        assert_eq!(redact("postgres:pw@h:5/d"), "postgres:***@h:5/d");
        let arg: UrlArg = "hr=postgres://u:pw@h/d".parse().unwrap();
        assert_eq!(format!("{arg:?}"), "UrlArg(hr=postgres://u:***@h/d)");
        assert!(matches!(
            "sqlite:/tmp/a.db".parse::<DbUrl>(),
            Ok(DbUrl::Sqlite(_))
        ));
    }
}
