//! SQL Server types and values, and their Always Encrypted normalisation: the exact plaintext
//! bytes SQL Server clients encrypt for each type (normalisation rule version 1).
//!
//! | type | plaintext bytes |
//! |---|---|
//! | bit, tinyint, smallint, int, bigint | 8-byte little-endian `i64` |
//! | real / float | 4-byte / 8-byte little-endian IEEE 754 |
//! | decimal(p,s), numeric(p,s) | sign byte (1 = positive, 0 = negative) ‖ 16-byte LE magnitude of the unscaled value (17 bytes written; any magnitude length read) |
//! | money, smallmoney | 8 bytes: high `i32` LE ‖ low `u32` LE of the value in 1/10000 units (smallmoney is normalised to money) |
//! | nchar, nvarchar | UTF-16LE, unpadded (nchar is padded with spaces when read) |
//! | char, varchar | bytes in the column collation's code page, unpadded (char padded when read) |
//! | binary, varbinary | the bytes |
//! | uniqueidentifier | 16 bytes, first three groups little-endian |
//! | date | 3-byte LE days since 0001-01-01 |
//! | time(n) | 5-byte LE 100 ns ticks since midnight, truncated to scale n |
//! | datetime2(n) | time(n) bytes ‖ date bytes |
//! | datetimeoffset(n) | UTC datetime2(n) bytes ‖ 2-byte LE offset in minutes |
//! | datetime | `i32` LE days since 1900-01-01 ‖ `u32` LE 1/300 s ticks since midnight |
//! | smalldatetime | `u16` LE days since 1900-01-01 ‖ `u16` LE minutes since midnight |
//!
//! `char`/`varchar` support two code pages: Windows-1252 (the code page of the `Latin1_General`
//! and `SQL_Latin1_General_CP1` collations, the SQL Server default) and UTF-8 (collations ending
//! in `_UTF8`). Other collations are rejected rather than guessed.
//!
//! Errors never contain the value being converted: it may be confidential.

use std::fmt;
use std::str::FromStr;

use super::temporal::{
    self, BadText, DAYS_TO_1900, Date, TICKS_PER_DAY, TICKS_PER_SECOND, truncate_to_scale,
};

/// The code page of a `char`/`varchar` column, from its collation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CodePage {
    /// Windows-1252 (`Latin1_General_*`, `SQL_Latin1_General_CP1_*`); the default.
    #[default]
    Windows1252,
    /// UTF-8 (collations ending in `_UTF8`, SQL Server 2019 and later).
    Utf8,
}

impl CodePage {
    /// The code page of a SQL Server collation name, if supported.
    pub fn from_collation(collation: &str) -> Option<CodePage> {
        let c = collation.to_ascii_lowercase();
        if c.ends_with("_utf8") {
            Some(CodePage::Utf8)
        } else if c.starts_with("latin1_general_") || c.starts_with("sql_latin1_general_cp1_") {
            Some(CodePage::Windows1252)
        } else {
            None
        }
    }
}

/// A SQL Server column type that Always Encrypted supports.
///
/// Parsed from SQL Server's spelling (`bigint`, `nvarchar(50)`, `decimal(18,2)`,
/// `datetime2(7)`, `varchar(20) COLLATE Latin1_General_100_BIN2_UTF8`, …), case-insensitively.
/// `varchar`, `nvarchar` and `varbinary` without a length mean `(max)`; `char`, `nchar` and
/// `binary` without a length mean length 1, `decimal`/`numeric` without arguments mean (18,0),
/// and temporal types without a scale mean scale 7, as in SQL Server DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlType {
    /// `bit`
    Bit,
    /// `tinyint` (0–255)
    TinyInt,
    /// `smallint`
    SmallInt,
    /// `int`
    Int,
    /// `bigint`
    BigInt,
    /// `real` (also `float(1..=24)`)
    Real,
    /// `float` (also `float(25..=53)`)
    Float,
    /// `decimal(precision, scale)`
    Decimal {
        /// Total digits, 1–38.
        precision: u8,
        /// Digits after the point, 0–precision.
        scale: u8,
    },
    /// `numeric(precision, scale)`: the same as decimal.
    Numeric {
        /// Total digits, 1–38.
        precision: u8,
        /// Digits after the point, 0–precision.
        scale: u8,
    },
    /// `money`
    Money,
    /// `smallmoney`
    SmallMoney,
    /// `char(n)`: n bytes in the code page.
    Char {
        /// Length in bytes, 1–8000.
        len: u32,
        /// Code page of the column collation.
        code_page: CodePage,
    },
    /// `varchar(n | max)`
    VarChar {
        /// Maximum length in bytes; `None` is `max`.
        len: Option<u32>,
        /// Code page of the column collation.
        code_page: CodePage,
    },
    /// `nchar(n)`: n UTF-16 code units.
    NChar {
        /// Length in UTF-16 code units, 1–4000.
        len: u32,
    },
    /// `nvarchar(n | max)`
    NVarChar {
        /// Maximum length in UTF-16 code units; `None` is `max`.
        len: Option<u32>,
    },
    /// `binary(n)`
    Binary {
        /// Maximum length in bytes, 1–8000.
        len: u32,
    },
    /// `varbinary(n | max)`
    VarBinary {
        /// Maximum length in bytes; `None` is `max`.
        len: Option<u32>,
    },
    /// `uniqueidentifier`
    UniqueIdentifier,
    /// `date`
    Date,
    /// `time(scale)`
    Time {
        /// Fractional second digits, 0–7.
        scale: u8,
    },
    /// `datetime2(scale)`
    DateTime2 {
        /// Fractional second digits, 0–7.
        scale: u8,
    },
    /// `datetimeoffset(scale)`
    DateTimeOffset {
        /// Fractional second digits, 0–7.
        scale: u8,
    },
    /// `datetime` (1753-01-01..9999-12-31, 1/300 s)
    DateTime,
    /// `smalldatetime` (1900-01-01..2079-06-06, minutes)
    SmallDateTime,
}

/// A decimal number: `unscaled × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// The value without its decimal point; |unscaled| < 10^38.
    pub unscaled: i128,
    /// Digits after the decimal point.
    pub scale: u8,
}

/// A value of a [`SqlType`].
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `bit`
    Bit(bool),
    /// `tinyint`
    TinyInt(u8),
    /// `smallint`
    SmallInt(i16),
    /// `int`
    Int(i32),
    /// `bigint`
    BigInt(i64),
    /// `real`
    Real(f32),
    /// `float`
    Float(f64),
    /// `decimal` / `numeric`
    Decimal(Decimal),
    /// `money`, in units of 1/10000.
    Money(i64),
    /// `smallmoney`, in units of 1/10000.
    SmallMoney(i32),
    /// `char`, `varchar`, `nchar`, `nvarchar`
    String(String),
    /// `binary`, `varbinary`
    Binary(Vec<u8>),
    /// `uniqueidentifier`, in RFC 4122 (text) byte order.
    Guid([u8; 16]),
    /// `date`
    Date(Date),
    /// `time(scale)`
    Time {
        /// 100 ns ticks since midnight.
        ticks: u64,
        /// Fractional second digits shown.
        scale: u8,
    },
    /// `datetime2(scale)`
    DateTime2 {
        /// The date.
        date: Date,
        /// 100 ns ticks since midnight.
        ticks: u64,
        /// Fractional second digits shown.
        scale: u8,
    },
    /// `datetimeoffset(scale)`, as local date and time plus offset.
    DateTimeOffset {
        /// Local date.
        date: Date,
        /// Local 100 ns ticks since midnight.
        ticks: u64,
        /// Fractional second digits shown.
        scale: u8,
        /// Offset from UTC in minutes.
        offset_minutes: i16,
    },
    /// `datetime`
    DateTime {
        /// The date (1753-01-01 or later).
        date: Date,
        /// 1/300 second ticks since midnight.
        ticks_300: u32,
    },
    /// `smalldatetime`
    SmallDateTime {
        /// The date (1900-01-01..2079-06-06).
        date: Date,
        /// Minutes since midnight.
        minutes: u16,
    },
}

/// Errors of type parsing, value parsing and (de)normalisation. Never contain values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// The type name is not a supported SQL Server type spelling.
    #[error("unsupported or malformed SQL type {0:?}")]
    InvalidTypeName(String),
    /// A `COLLATE` clause names a collation whose code page is not supported.
    #[error(
        "unsupported collation {0:?} (supported: Latin1_General_*, SQL_Latin1_General_CP1_*, *_UTF8)"
    )]
    UnsupportedCollation(String),
    /// The text is not a valid value of the type.
    #[error("invalid {ty} value: {reason}")]
    InvalidValue {
        /// The SQL type.
        ty: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The value is longer than the column allows.
    #[error("{ty} value too long: {len} > {max}")]
    ValueTooLong {
        /// The SQL type.
        ty: String,
        /// Length of the value (bytes or UTF-16 units).
        len: usize,
        /// The column's maximum.
        max: u32,
    },
    /// The value's variant does not belong to the type.
    #[error("value does not belong to type {ty}")]
    TypeMismatch {
        /// The SQL type.
        ty: String,
    },
    /// Decrypted bytes have the wrong length for the type.
    #[error("decrypted {ty} value has invalid length {len}")]
    InvalidNormalizedLength {
        /// The SQL type.
        ty: String,
        /// Length of the decrypted bytes.
        len: usize,
    },
    /// Decrypted bytes have the right length but are not a valid value of the type.
    #[error("decrypted {ty} value is invalid: {reason}")]
    InvalidNormalizedValue {
        /// The SQL type.
        ty: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Days from 0001-01-01 to 1753-01-01, the first `datetime` day.
const DAYS_TO_1753: u32 = 639_905;
/// 1/300 s ticks in a day.
const TICKS_300_PER_DAY: u32 = 25_920_000;
/// Days from 1900-01-01 to 2079-06-06, the last `smalldatetime` day.
const SMALLDATETIME_MAX_DAYS: u32 = 65_535;

impl FromStr for SqlType {
    type Err = TypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TypeError::InvalidTypeName(s.to_owned());
        let lower = s.trim().to_ascii_lowercase();
        let (decl, collation) = match lower.find(" collate ") {
            Some(i) => {
                let name_start = s.trim().len() - lower[i + 9..].len();
                (lower[..i].trim(), Some(s.trim()[name_start..].trim()))
            }
            None => (lower.as_str(), None),
        };
        let (name, args) = match decl.find('(') {
            Some(open) => {
                let close = decl.strip_suffix(')').ok_or_else(bad)?;
                let args: Vec<&str> = close[open + 1..].split(',').map(str::trim).collect();
                (decl[..open].trim(), args)
            }
            None => (decl.trim(), Vec::new()),
        };
        let num = |a: &str, lo: u32, hi: u32| -> Result<u32, TypeError> {
            a.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(bad)
        };
        let len_or = |default: Option<u32>, max: u32| -> Result<Option<u32>, TypeError> {
            match args.as_slice() {
                [] => Ok(default),
                ["max"] => Ok(None),
                [n] => num(n, 1, max).map(Some),
                _ => Err(bad()),
            }
        };
        let fixed_len = |max: u32| -> Result<u32, TypeError> {
            match args.as_slice() {
                [] => Ok(1),
                [n] => num(n, 1, max),
                _ => Err(bad()),
            }
        };
        let scale = || -> Result<u8, TypeError> {
            match args.as_slice() {
                [] => Ok(7),
                [n] => num(n, 0, 7).map(|n| n as u8),
                _ => Err(bad()),
            }
        };
        let no_args = |t: SqlType| if args.is_empty() { Ok(t) } else { Err(bad()) };
        let code_page = match collation {
            None => CodePage::Windows1252,
            Some(c) => CodePage::from_collation(c)
                .ok_or_else(|| TypeError::UnsupportedCollation(c.to_owned()))?,
        };
        if collation.is_some() && !matches!(name, "char" | "varchar") {
            return Err(bad());
        }
        match name {
            "bit" => no_args(SqlType::Bit),
            "tinyint" => no_args(SqlType::TinyInt),
            "smallint" => no_args(SqlType::SmallInt),
            "int" | "integer" => no_args(SqlType::Int),
            "bigint" => no_args(SqlType::BigInt),
            "real" => no_args(SqlType::Real),
            "float" => match args.as_slice() {
                [] => Ok(SqlType::Float),
                [n] if num(n, 1, 24).is_ok() => Ok(SqlType::Real),
                [n] => num(n, 25, 53).map(|_| SqlType::Float),
                _ => Err(bad()),
            },
            "decimal" | "dec" | "numeric" => {
                let (precision, scale) = match args.as_slice() {
                    [] => (18, 0),
                    [p] => (num(p, 1, 38)?, 0),
                    [p, s] => {
                        let p = num(p, 1, 38)?;
                        (p, num(s, 0, p)?)
                    }
                    _ => return Err(bad()),
                };
                let (precision, scale) = (precision as u8, scale as u8);
                Ok(if name == "numeric" {
                    SqlType::Numeric { precision, scale }
                } else {
                    SqlType::Decimal { precision, scale }
                })
            }
            "money" => no_args(SqlType::Money),
            "smallmoney" => no_args(SqlType::SmallMoney),
            "char" | "character" => Ok(SqlType::Char {
                len: fixed_len(8000)?,
                code_page,
            }),
            "varchar" => Ok(SqlType::VarChar {
                len: len_or(None, 8000)?,
                code_page,
            }),
            "nchar" => Ok(SqlType::NChar {
                len: fixed_len(4000)?,
            }),
            "nvarchar" => Ok(SqlType::NVarChar {
                len: len_or(None, 4000)?,
            }),
            "binary" => Ok(SqlType::Binary {
                len: fixed_len(8000)?,
            }),
            "varbinary" => Ok(SqlType::VarBinary {
                len: len_or(None, 8000)?,
            }),
            "uniqueidentifier" => no_args(SqlType::UniqueIdentifier),
            "date" => no_args(SqlType::Date),
            "time" => Ok(SqlType::Time { scale: scale()? }),
            "datetime2" => Ok(SqlType::DateTime2 { scale: scale()? }),
            "datetimeoffset" => Ok(SqlType::DateTimeOffset { scale: scale()? }),
            "datetime" => no_args(SqlType::DateTime),
            "smalldatetime" => no_args(SqlType::SmallDateTime),
            _ => Err(bad()),
        }
    }
}

fn write_len(f: &mut fmt::Formatter<'_>, name: &str, len: Option<u32>) -> fmt::Result {
    match len {
        Some(n) => write!(f, "{name}({n})"),
        None => write!(f, "{name}(max)"),
    }
}

fn write_collation(f: &mut fmt::Formatter<'_>, code_page: CodePage) -> fmt::Result {
    match code_page {
        CodePage::Windows1252 => Ok(()),
        CodePage::Utf8 => f.write_str(" COLLATE Latin1_General_100_BIN2_UTF8"),
    }
}

impl fmt::Display for SqlType {
    /// SQL Server's spelling. A UTF-8 code page is shown as
    /// `COLLATE Latin1_General_100_BIN2_UTF8` whatever UTF-8 collation was parsed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SqlType::Bit => f.write_str("bit"),
            SqlType::TinyInt => f.write_str("tinyint"),
            SqlType::SmallInt => f.write_str("smallint"),
            SqlType::Int => f.write_str("int"),
            SqlType::BigInt => f.write_str("bigint"),
            SqlType::Real => f.write_str("real"),
            SqlType::Float => f.write_str("float"),
            SqlType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            SqlType::Numeric { precision, scale } => write!(f, "numeric({precision},{scale})"),
            SqlType::Money => f.write_str("money"),
            SqlType::SmallMoney => f.write_str("smallmoney"),
            SqlType::Char { len, code_page } => {
                write!(f, "char({len})")?;
                write_collation(f, code_page)
            }
            SqlType::VarChar { len, code_page } => {
                write_len(f, "varchar", len)?;
                write_collation(f, code_page)
            }
            SqlType::NChar { len } => write!(f, "nchar({len})"),
            SqlType::NVarChar { len } => write_len(f, "nvarchar", len),
            SqlType::Binary { len } => write!(f, "binary({len})"),
            SqlType::VarBinary { len } => write_len(f, "varbinary", len),
            SqlType::UniqueIdentifier => f.write_str("uniqueidentifier"),
            SqlType::Date => f.write_str("date"),
            SqlType::Time { scale } => write!(f, "time({scale})"),
            SqlType::DateTime2 { scale } => write!(f, "datetime2({scale})"),
            SqlType::DateTimeOffset { scale } => write!(f, "datetimeoffset({scale})"),
            SqlType::DateTime => f.write_str("datetime"),
            SqlType::SmallDateTime => f.write_str("smalldatetime"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Windows-1252

/// Unicode code points of Windows-1252 bytes 0x80..=0x9F. The five bytes Windows leaves
/// undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) map to the C1 control of the same value, as
/// Windows' and WHATWG's decoders do.
const CP1252_HIGH: [u16; 32] = [
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
];

fn cp1252_decode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => char::from_u32(u32::from(CP1252_HIGH[usize::from(b - 0x80)]))
                .unwrap_or(char::REPLACEMENT_CHARACTER),
            _ => char::from(b),
        })
        .collect()
}

fn cp1252_encode(s: &str) -> Option<Vec<u8>> {
    s.chars()
        .map(|c| {
            let cp = u32::from(c);
            match cp {
                0..=0x7F | 0xA0..=0xFF => Some(cp as u8),
                _ => CP1252_HIGH
                    .iter()
                    .position(|&u| u32::from(u) == cp)
                    .map(|i| 0x80 + i as u8),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Value text

fn invalid(ty: &SqlType, reason: &'static str) -> TypeError {
    TypeError::InvalidValue {
        ty: ty.to_string(),
        reason,
    }
}

/// Parses a decimal literal (`-12.345`, `+1`, `.5`) into (negative, digits before, digits after).
fn split_decimal(s: &str) -> Option<(bool, &str, &str)> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |p: &str| p.bytes().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    Some((neg, int, frac))
}

/// Parses decimal text to an unscaled integer at `scale`, rounding half away from zero.
/// Fails if the result has more than `max_digits` digits.
fn parse_scaled(s: &str, scale: u8, max_digits: u8) -> Option<i128> {
    let (neg, int, frac) = split_decimal(s)?;
    let int = int.trim_start_matches('0');
    let scale = usize::from(scale);
    if int.len() + scale > usize::from(max_digits) {
        return None;
    }
    let mut digits = String::with_capacity(int.len() + scale);
    digits.push_str(int);
    let kept = &frac[..frac.len().min(scale)];
    digits.push_str(kept);
    digits.extend(std::iter::repeat_n('0', scale - kept.len()));
    let mut value: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if frac.as_bytes().get(scale).is_some_and(|&d| d >= b'5') {
        value += 1;
    }
    if value >= 10i128.pow(u32::from(max_digits)) {
        return None;
    }
    Some(if neg { -value } else { value })
}

fn write_scaled(f: &mut fmt::Formatter<'_>, unscaled: i128, scale: u8) -> fmt::Result {
    let sign = if unscaled < 0 { "-" } else { "" };
    let mag = unscaled.unsigned_abs();
    if scale == 0 {
        return write!(f, "{sign}{mag}");
    }
    let div = 10u128.pow(u32::from(scale));
    write!(
        f,
        "{sign}{}.{:0width$}",
        mag / div,
        mag % div,
        width = usize::from(scale)
    )
}

fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Money text to 1/10000 units (rounded half away from zero), within `min..=max`.
fn parse_money(s: &str, min: i64, max: i64) -> Option<i64> {
    let v = parse_scaled(s.trim(), 4, 19)?;
    i64::try_from(v).ok().filter(|v| (min..=max).contains(v))
}

/// Rounds 100 ns ticks to 1/300 s ticks, as SQL Server converts to `datetime`.
fn ticks_to_300(ticks: u64) -> u64 {
    (ticks * 3 + 50_000) / 100_000
}

impl SqlValue {
    /// Parses text (as SQL Server would accept it in a literal) into a value of `ty`.
    ///
    /// Numbers: decimal notation (`float`/`real` also accept exponents; digits beyond a
    /// decimal's scale are rounded half away from zero). `bit`: `0`, `1`, `true`, `false`.
    /// Strings: taken verbatim. Binary: hex with optional `0x`. GUIDs: `8-4-4-4-12` hex,
    /// optionally in braces. Dates `YYYY-MM-DD`; times `HH:MM[:SS[.fffffff]]` (truncated to the
    /// type's scale; `datetime` rounds to 1/300 s and `smalldatetime` to the minute, 29.998 s
    /// rounding down); date-times `date time` or `dateTtime`; `datetimeoffset` takes a trailing
    /// `+HH:MM`, `-HH:MM` or `Z` (no offset means `+00:00`).
    pub fn parse(ty: &SqlType, text: &str) -> Result<SqlValue, TypeError> {
        let t = text.trim();
        let err = |reason| invalid(ty, reason);
        let int = |min: i64, max: i64| -> Result<i64, TypeError> {
            t.parse::<i64>()
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| err("not an integer in range"))
        };
        let text_err = |e: BadText| err(e.0);
        let value = match *ty {
            SqlType::Bit => SqlValue::Bit(match t.to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Err(err("expected 0, 1, true or false")),
            }),
            SqlType::TinyInt => SqlValue::TinyInt(int(0, 255)? as u8),
            SqlType::SmallInt => SqlValue::SmallInt(int(i16::MIN.into(), i16::MAX.into())? as i16),
            SqlType::Int => SqlValue::Int(int(i32::MIN.into(), i32::MAX.into())? as i32),
            SqlType::BigInt => SqlValue::BigInt(int(i64::MIN, i64::MAX)?),
            SqlType::Real => {
                let v: f32 = t.parse().map_err(|_| err("not a number"))?;
                if !v.is_finite() {
                    return Err(err("not a finite number"));
                }
                SqlValue::Real(v)
            }
            SqlType::Float => {
                let v: f64 = t.parse().map_err(|_| err("not a number"))?;
                if !v.is_finite() {
                    return Err(err("not a finite number"));
                }
                SqlValue::Float(v)
            }
            SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
                let unscaled = parse_scaled(t, scale, precision)
                    .ok_or_else(|| err("not a decimal number within the precision"))?;
                SqlValue::Decimal(Decimal { unscaled, scale })
            }
            SqlType::Money => SqlValue::Money(
                parse_money(t, i64::MIN, i64::MAX)
                    .ok_or_else(|| err("not a money amount in range"))?,
            ),
            SqlType::SmallMoney => SqlValue::SmallMoney(
                parse_money(t, i32::MIN.into(), i32::MAX.into())
                    .ok_or_else(|| err("not a smallmoney amount in range"))? as i32,
            ),
            SqlType::Char { .. }
            | SqlType::VarChar { .. }
            | SqlType::NChar { .. }
            | SqlType::NVarChar { .. } => SqlValue::String(text.to_owned()),
            SqlType::Binary { .. } | SqlType::VarBinary { .. } => {
                SqlValue::Binary(parse_hex(t).ok_or_else(|| err("expected hex bytes"))?)
            }
            SqlType::UniqueIdentifier => {
                SqlValue::Guid(parse_guid(t).ok_or_else(|| err("expected a GUID"))?)
            }
            SqlType::Date => SqlValue::Date(Date::parse(t).map_err(text_err)?),
            SqlType::Time { scale } => SqlValue::Time {
                ticks: truncate_to_scale(temporal::parse_time_of_day(t).map_err(text_err)?, scale),
                scale,
            },
            SqlType::DateTime2 { scale } => {
                let (date, ticks) = temporal::parse_date_time(t).map_err(text_err)?;
                SqlValue::DateTime2 {
                    date,
                    ticks: truncate_to_scale(ticks, scale),
                    scale,
                }
            }
            SqlType::DateTimeOffset { scale } => {
                let (dt, offset) = match t.rfind(['+', 'Z', 'z']).or_else(|| {
                    // A '-' offset sign comes after the time, never within the date part.
                    t.rfind('-').filter(|&i| i > 10)
                }) {
                    Some(i) => (
                        t[..i].trim_end(),
                        temporal::parse_offset(&t[i..]).map_err(text_err)?,
                    ),
                    None => (t, 0),
                };
                let (date, ticks) = temporal::parse_date_time(dt).map_err(text_err)?;
                let value = SqlValue::DateTimeOffset {
                    date,
                    ticks: truncate_to_scale(ticks, scale),
                    scale,
                    offset_minutes: offset,
                };
                // The UTC instant must also lie within 0001-01-01..9999-12-31.
                utc_of(date, truncate_to_scale(ticks, scale), offset)
                    .ok_or_else(|| err("UTC instant out of range"))?;
                value
            }
            SqlType::DateTime => {
                let (date, ticks) = temporal::parse_date_time(t).map_err(text_err)?;
                let mut days = date.days();
                let mut t300 = ticks_to_300(ticks);
                if t300 >= u64::from(TICKS_300_PER_DAY) {
                    days += 1;
                    t300 = 0;
                }
                let date = Date::from_days(days)
                    .filter(|d| d.days() >= DAYS_TO_1753)
                    .ok_or_else(|| err("outside 1753-01-01..9999-12-31"))?;
                SqlValue::DateTime {
                    date,
                    ticks_300: t300 as u32,
                }
            }
            SqlType::SmallDateTime => {
                let (date, ticks) = temporal::parse_date_time(t).map_err(text_err)?;
                let mut days = date.days();
                // SQL Server rounds 29.998 s down and 29.999 s up.
                let mut minutes =
                    (ticks + 30 * TICKS_PER_SECOND + 10_000) / (60 * TICKS_PER_SECOND);
                if minutes >= 1440 {
                    days += 1;
                    minutes = 0;
                }
                let date = Date::from_days(days)
                    .filter(|d| {
                        (DAYS_TO_1900..=DAYS_TO_1900 + SMALLDATETIME_MAX_DAYS).contains(&d.days())
                    })
                    .ok_or_else(|| err("outside 1900-01-01..2079-06-06"))?;
                SqlValue::SmallDateTime {
                    date,
                    minutes: minutes as u16,
                }
            }
        };
        check_length(ty, &value)?;
        Ok(value)
    }
}

fn utc_of(date: Date, ticks: u64, offset_minutes: i16) -> Option<(Date, u64)> {
    let total = i128::from(date.days()) * i128::from(TICKS_PER_DAY) + i128::from(ticks)
        - i128::from(offset_minutes) * 60 * i128::from(TICKS_PER_SECOND);
    let day = i128::from(TICKS_PER_DAY);
    let days = u32::try_from(total.div_euclid(day)).ok()?;
    Some((Date::from_days(days)?, total.rem_euclid(day) as u64))
}

fn check_length(ty: &SqlType, value: &SqlValue) -> Result<(), TypeError> {
    let (len, max) = match (ty, value) {
        (SqlType::NChar { len: max }, SqlValue::String(s)) => {
            (s.encode_utf16().count(), Some(*max))
        }
        (SqlType::NVarChar { len: max }, SqlValue::String(s)) => (s.encode_utf16().count(), *max),
        (SqlType::Binary { len: max }, SqlValue::Binary(b)) => (b.len(), Some(*max)),
        (SqlType::VarBinary { len: max }, SqlValue::Binary(b)) => (b.len(), *max),
        (
            SqlType::Char {
                len: max,
                code_page,
            },
            SqlValue::String(s),
        ) => (encode_string(ty, *code_page, s)?.len(), Some(*max)),
        (
            SqlType::VarChar {
                len: max,
                code_page,
            },
            SqlValue::String(s),
        ) => (encode_string(ty, *code_page, s)?.len(), *max),
        _ => return Ok(()),
    };
    match max {
        Some(max) if len > max as usize => Err(TypeError::ValueTooLong {
            ty: ty.to_string(),
            len,
            max,
        }),
        _ => Ok(()),
    }
}

fn decode_string(code_page: CodePage, bytes: &[u8]) -> Result<String, &'static str> {
    match code_page {
        CodePage::Windows1252 => Ok(cp1252_decode(bytes)),
        CodePage::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|_| "invalid UTF-8"),
    }
}

fn encode_string(ty: &SqlType, code_page: CodePage, s: &str) -> Result<Vec<u8>, TypeError> {
    match code_page {
        CodePage::Utf8 => Ok(s.as_bytes().to_vec()),
        CodePage::Windows1252 => cp1252_encode(s)
            .ok_or_else(|| invalid(ty, "character not representable in code page 1252")),
    }
}

impl fmt::Display for SqlValue {
    /// The value as text, in the form [`SqlValue::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlValue::Bit(b) => f.write_str(if *b { "1" } else { "0" }),
            SqlValue::TinyInt(v) => write!(f, "{v}"),
            SqlValue::SmallInt(v) => write!(f, "{v}"),
            SqlValue::Int(v) => write!(f, "{v}"),
            SqlValue::BigInt(v) => write!(f, "{v}"),
            SqlValue::Real(v) => write!(f, "{v:?}"),
            SqlValue::Float(v) => write!(f, "{v:?}"),
            SqlValue::Decimal(d) => write_scaled(f, d.unscaled, d.scale),
            SqlValue::Money(v) => write_scaled(f, i128::from(*v), 4),
            SqlValue::SmallMoney(v) => write_scaled(f, i128::from(*v), 4),
            SqlValue::String(s) => f.write_str(s),
            SqlValue::Binary(b) => {
                f.write_str("0x")?;
                b.iter().try_for_each(|x| write!(f, "{x:02X}"))
            }
            SqlValue::Guid(g) => {
                for (i, b) in g.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02X}")?;
                }
                Ok(())
            }
            SqlValue::Date(d) => write!(f, "{d}"),
            SqlValue::Time { ticks, scale } => temporal::write_time_of_day(f, *ticks, *scale),
            SqlValue::DateTime2 { date, ticks, scale } => {
                write!(f, "{date} ")?;
                temporal::write_time_of_day(f, *ticks, *scale)
            }
            SqlValue::DateTimeOffset {
                date,
                ticks,
                scale,
                offset_minutes,
            } => {
                write!(f, "{date} ")?;
                temporal::write_time_of_day(f, *ticks, *scale)?;
                f.write_str(" ")?;
                temporal::write_offset(f, *offset_minutes)
            }
            SqlValue::DateTime { date, ticks_300 } => {
                let ms = (u64::from(*ticks_300) * 10 + 1) / 3;
                write!(f, "{date} ")?;
                temporal::write_time_of_day(f, ms * 10_000, 3)
            }
            SqlValue::SmallDateTime { date, minutes } => {
                write!(f, "{date} ")?;
                temporal::write_time_of_day(f, u64::from(*minutes) * 60 * TICKS_PER_SECOND, 0)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation

fn guid_swap(g: &[u8; 16]) -> [u8; 16] {
    let mut out = *g;
    out[0..4].reverse();
    out[4..6].reverse();
    out[6..8].reverse();
    out
}

fn time5(ticks: u64) -> [u8; 5] {
    let b = ticks.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4]]
}

fn date3(date: Date) -> [u8; 3] {
    let b = date.days().to_le_bytes();
    [b[0], b[1], b[2]]
}

fn money_bytes(v: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    out.extend_from_slice(&((v >> 32) as i32).to_le_bytes());
    out.extend_from_slice(&(v as u32).to_le_bytes());
    out
}

/// Converts a value to the plaintext bytes SQL Server encrypts for a column of type `ty`.
pub fn normalize(ty: &SqlType, value: &SqlValue) -> Result<Vec<u8>, TypeError> {
    let mismatch = || TypeError::TypeMismatch { ty: ty.to_string() };
    check_length(ty, value)?;
    let long = |v: i64| Ok(v.to_le_bytes().to_vec());
    match (ty, value) {
        (SqlType::Bit, SqlValue::Bit(b)) => long(i64::from(*b)),
        (SqlType::TinyInt, SqlValue::TinyInt(v)) => long(i64::from(*v)),
        (SqlType::SmallInt, SqlValue::SmallInt(v)) => long(i64::from(*v)),
        (SqlType::Int, SqlValue::Int(v)) => long(i64::from(*v)),
        (SqlType::BigInt, SqlValue::BigInt(v)) => long(*v),
        (SqlType::Real, SqlValue::Real(v)) => Ok(v.to_le_bytes().to_vec()),
        (SqlType::Float, SqlValue::Float(v)) => Ok(v.to_le_bytes().to_vec()),
        (
            SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale },
            SqlValue::Decimal(d),
        ) => {
            // Rescale to the column's scale; the value must fit the precision exactly.
            let unscaled = if d.scale <= *scale {
                10i128
                    .checked_pow(u32::from(scale - d.scale))
                    .and_then(|m| d.unscaled.checked_mul(m))
            } else {
                let div = 10i128.checked_pow(u32::from(d.scale - scale));
                div.filter(|div| d.unscaled % div == 0)
                    .map(|div| d.unscaled / div)
            }
            .filter(|u| u.unsigned_abs() < 10u128.pow(u32::from(*precision)))
            .ok_or_else(|| invalid(ty, "does not fit the column's precision and scale"))?;
            let mut out = Vec::with_capacity(17);
            out.push(u8::from(unscaled >= 0));
            out.extend_from_slice(&unscaled.unsigned_abs().to_le_bytes());
            Ok(out)
        }
        (SqlType::Money, SqlValue::Money(v)) => Ok(money_bytes(*v)),
        (SqlType::SmallMoney, SqlValue::SmallMoney(v)) => Ok(money_bytes(i64::from(*v))),
        (SqlType::NChar { .. } | SqlType::NVarChar { .. }, SqlValue::String(s)) => {
            Ok(s.encode_utf16().flat_map(u16::to_le_bytes).collect())
        }
        (
            SqlType::Char { code_page, .. } | SqlType::VarChar { code_page, .. },
            SqlValue::String(s),
        ) => encode_string(ty, *code_page, s),
        (SqlType::Binary { .. } | SqlType::VarBinary { .. }, SqlValue::Binary(b)) => Ok(b.clone()),
        (SqlType::UniqueIdentifier, SqlValue::Guid(g)) => Ok(guid_swap(g).to_vec()),
        (SqlType::Date, SqlValue::Date(d)) => Ok(date3(*d).to_vec()),
        (SqlType::Time { scale }, SqlValue::Time { ticks, .. }) => {
            Ok(time5(truncate_to_scale(day_ticks(ty, *ticks)?, *scale)).to_vec())
        }
        (SqlType::DateTime2 { scale }, SqlValue::DateTime2 { date, ticks, .. }) => {
            let mut out = time5(truncate_to_scale(day_ticks(ty, *ticks)?, *scale)).to_vec();
            out.extend_from_slice(&date3(*date));
            Ok(out)
        }
        (
            SqlType::DateTimeOffset { scale },
            SqlValue::DateTimeOffset {
                date,
                ticks,
                offset_minutes,
                ..
            },
        ) => {
            if offset_minutes.unsigned_abs() > 14 * 60 {
                return Err(invalid(ty, "UTC offset out of range"));
            }
            let local = truncate_to_scale(day_ticks(ty, *ticks)?, *scale);
            let (utc_date, utc_ticks) = utc_of(*date, local, *offset_minutes)
                .ok_or_else(|| invalid(ty, "UTC instant out of range"))?;
            let mut out = time5(utc_ticks).to_vec();
            out.extend_from_slice(&date3(utc_date));
            out.extend_from_slice(&offset_minutes.to_le_bytes());
            Ok(out)
        }
        (SqlType::DateTime, SqlValue::DateTime { date, ticks_300 }) => {
            if date.days() < DAYS_TO_1753 || *ticks_300 >= TICKS_300_PER_DAY {
                return Err(invalid(ty, "outside the datetime range"));
            }
            let days = date.days() as i32 - DAYS_TO_1900 as i32;
            let mut out = days.to_le_bytes().to_vec();
            out.extend_from_slice(&ticks_300.to_le_bytes());
            Ok(out)
        }
        (SqlType::SmallDateTime, SqlValue::SmallDateTime { date, minutes }) => {
            let days = date
                .days()
                .checked_sub(DAYS_TO_1900)
                .filter(|d| *d <= SMALLDATETIME_MAX_DAYS && *minutes < 1440)
                .ok_or_else(|| invalid(ty, "outside the smalldatetime range"))?;
            let mut out = (days as u16).to_le_bytes().to_vec();
            out.extend_from_slice(&minutes.to_le_bytes());
            Ok(out)
        }
        _ => Err(mismatch()),
    }
}

fn day_ticks(ty: &SqlType, ticks: u64) -> Result<u64, TypeError> {
    if ticks < TICKS_PER_DAY {
        Ok(ticks)
    } else {
        Err(invalid(ty, "time of day out of range"))
    }
}

fn pad_to(s: String, len: usize) -> String {
    let have = s.encode_utf16().count();
    if have >= len {
        return s;
    }
    let mut s = s;
    s.extend(std::iter::repeat_n(' ', len - have));
    s
}

/// Converts decrypted plaintext bytes back into a value of `ty`.
///
/// `char(n)`/`nchar(n)` values are padded with spaces to n, as SQL Server clients do.
pub fn denormalize(ty: &SqlType, bytes: &[u8]) -> Result<SqlValue, TypeError> {
    let bad_len = || TypeError::InvalidNormalizedLength {
        ty: ty.to_string(),
        len: bytes.len(),
    };
    let bad = |reason| TypeError::InvalidNormalizedValue {
        ty: ty.to_string(),
        reason,
    };
    let fixed = |n: usize| {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(bad_len())
        }
    };
    let long = || -> Result<i64, TypeError> {
        Ok(i64::from_le_bytes(
            fixed(8)?.try_into().map_err(|_| bad_len())?,
        ))
    };
    let range = |v: i64, min: i64, max: i64| {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(bad("integer out of range for the type"))
        }
    };
    let money = || -> Result<i64, TypeError> {
        let b = fixed(8)?;
        let hi = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let lo = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        Ok((i64::from(hi) << 32) | i64::from(lo))
    };
    let time = |b: &[u8]| -> Result<u64, TypeError> {
        let ticks = b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
        if ticks < TICKS_PER_DAY {
            Ok(ticks)
        } else {
            Err(bad("time of day out of range"))
        }
    };
    let date = |b: &[u8]| -> Result<Date, TypeError> {
        Date::from_days(u32::from_le_bytes([b[0], b[1], b[2], 0]))
            .ok_or_else(|| bad("date out of range"))
    };
    Ok(match *ty {
        SqlType::Bit => SqlValue::Bit(long()? != 0),
        SqlType::TinyInt => SqlValue::TinyInt(range(long()?, 0, 255)? as u8),
        SqlType::SmallInt => {
            SqlValue::SmallInt(range(long()?, i16::MIN.into(), i16::MAX.into())? as i16)
        }
        SqlType::Int => SqlValue::Int(range(long()?, i32::MIN.into(), i32::MAX.into())? as i32),
        SqlType::BigInt => SqlValue::BigInt(long()?),
        SqlType::Real | SqlType::Float => {
            let v = match bytes.len() {
                4 => f64::from(f32::from_le_bytes(bytes.try_into().map_err(|_| bad_len())?)),
                8 => f64::from_le_bytes(bytes.try_into().map_err(|_| bad_len())?),
                _ => return Err(bad_len()),
            };
            if *ty == SqlType::Real {
                SqlValue::Real(v as f32)
            } else {
                SqlValue::Float(v)
            }
        }
        SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
            let (&sign, mag) = bytes.split_first().ok_or_else(bad_len)?;
            let significant = mag.len() - mag.iter().rev().take_while(|&&b| b == 0).count();
            if significant > 16 {
                return Err(bad("decimal magnitude too large"));
            }
            let mut buf = [0u8; 16];
            buf[..significant].copy_from_slice(&mag[..significant]);
            let m = u128::from_le_bytes(buf);
            if m >= 10u128.pow(u32::from(precision)) {
                return Err(bad("decimal exceeds the column precision"));
            }
            let unscaled = if sign == 0 { -(m as i128) } else { m as i128 };
            SqlValue::Decimal(Decimal { unscaled, scale })
        }
        SqlType::Money => SqlValue::Money(money()?),
        SqlType::SmallMoney => {
            SqlValue::SmallMoney(range(money()?, i32::MIN.into(), i32::MAX.into())? as i32)
        }
        SqlType::NChar { .. } | SqlType::NVarChar { .. } => {
            if !bytes.len().is_multiple_of(2) {
                return Err(bad_len());
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let s = String::from_utf16(&units).map_err(|_| bad("invalid UTF-16"))?;
            match *ty {
                SqlType::NChar { len } => SqlValue::String(pad_to(s, len as usize)),
                _ => SqlValue::String(s),
            }
        }
        SqlType::Char { len, code_page } => SqlValue::String(pad_to(
            decode_string(code_page, bytes).map_err(bad)?,
            len as usize,
        )),
        SqlType::VarChar { code_page, .. } => {
            SqlValue::String(decode_string(code_page, bytes).map_err(bad)?)
        }
        SqlType::Binary { .. } | SqlType::VarBinary { .. } => SqlValue::Binary(bytes.to_vec()),
        SqlType::UniqueIdentifier => {
            let g: [u8; 16] = fixed(16)?.try_into().map_err(|_| bad_len())?;
            SqlValue::Guid(guid_swap(&g))
        }
        SqlType::Date => SqlValue::Date(date(fixed(3)?)?),
        SqlType::Time { scale } => SqlValue::Time {
            ticks: time(fixed(5)?)?,
            scale,
        },
        SqlType::DateTime2 { scale } => {
            let b = fixed(8)?;
            SqlValue::DateTime2 {
                date: date(&b[5..8])?,
                ticks: time(&b[..5])?,
                scale,
            }
        }
        SqlType::DateTimeOffset { scale } => {
            let b = fixed(10)?;
            let offset_minutes = i16::from_le_bytes([b[8], b[9]]);
            if offset_minutes.unsigned_abs() > 14 * 60 {
                return Err(bad("offset out of range"));
            }
            let (utc_date, utc_ticks) = (date(&b[5..8])?, time(&b[..5])?);
            let (date, ticks) = utc_of(utc_date, utc_ticks, -offset_minutes)
                .ok_or_else(|| bad("local date out of range"))?;
            SqlValue::DateTimeOffset {
                date,
                ticks,
                scale,
                offset_minutes,
            }
        }
        SqlType::DateTime => {
            let b = fixed(8)?;
            let days = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let ticks_300 = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let date = u32::try_from(i64::from(days) + i64::from(DAYS_TO_1900))
                .ok()
                .and_then(Date::from_days)
                .filter(|d| d.days() >= DAYS_TO_1753)
                .ok_or_else(|| bad("date out of range"))?;
            if ticks_300 >= TICKS_300_PER_DAY {
                return Err(bad("time of day out of range"));
            }
            SqlValue::DateTime { date, ticks_300 }
        }
        SqlType::SmallDateTime => {
            let b = fixed(4)?;
            let days = u16::from_le_bytes([b[0], b[1]]);
            let minutes = u16::from_le_bytes([b[2], b[3]]);
            if u32::from(days) > SMALLDATETIME_MAX_DAYS || minutes >= 1440 {
                return Err(bad("smalldatetime out of range"));
            }
            let date = Date::from_days(DAYS_TO_1900 + u32::from(days))
                .ok_or_else(|| bad("date out of range"))?;
            SqlValue::SmallDateTime { date, minutes }
        }
    })
}
