//! Conversions between database cells ([`Value`]), SQL Server values ([`SqlValue`], for
//! encrypted columns) and Arrow arrays.

use std::sync::Arc;

use cipherlake_crypto::always_encrypted::{
    CellKey, Date, EncryptionType, SqlType, SqlValue, decrypt_value, encrypt_value,
};
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
    Float64Array, Int16Array, Int32Array, Int64Array, StringArray, UInt8Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use super::conn::Value;
use super::error::SqlDbError;
use super::schema::PlainType;

/// Days from 0001-01-01 to 1970-01-01 (the Arrow `Date32` epoch).
const DAYS_TO_1970: i64 = 719_162;

/// The Arrow type of decrypted values of a SQL Server type. Types without an exact Arrow
/// counterpart here (uniqueidentifier, time, datetime2, datetimeoffset, datetime,
/// smalldatetime) are strings in SQL Server's text form, which [`SqlValue::parse`] reads
/// back, so no precision or range is lost.
pub fn arrow_type(ty: &SqlType) -> DataType {
    match *ty {
        SqlType::Bit => DataType::Boolean,
        SqlType::TinyInt => DataType::UInt8,
        SqlType::SmallInt => DataType::Int16,
        SqlType::Int => DataType::Int32,
        SqlType::BigInt => DataType::Int64,
        SqlType::Real => DataType::Float32,
        SqlType::Float => DataType::Float64,
        SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
            DataType::Decimal128(precision, scale as i8)
        }
        SqlType::Money => DataType::Decimal128(19, 4),
        SqlType::SmallMoney => DataType::Decimal128(10, 4),
        SqlType::Binary { .. } | SqlType::VarBinary { .. } => DataType::Binary,
        SqlType::Date => DataType::Date32,
        _ => DataType::Utf8,
    }
}

/// The value of an Arrow `Date32` day count as a SQL Server date, if in range.
fn date_from_date32(days: i32) -> Option<Date> {
    Date::from_days(u32::try_from(i64::from(days) + DAYS_TO_1970).ok()?)
}

/// Builds the Arrow array of decrypted values of type `ty`.
fn sql_values_to_array(ty: &SqlType, values: Vec<Option<SqlValue>>) -> Result<ArrayRef, String> {
    let mismatch = || format!("decrypted value does not belong to type {ty}");
    macro_rules! build {
        ($array:ty, $pattern:pat => $out:expr) => {
            Arc::new(
                values
                    .into_iter()
                    .map(|v| match v {
                        None => Ok(None),
                        Some($pattern) => Ok(Some($out)),
                        Some(_) => Err(mismatch()),
                    })
                    .collect::<Result<$array, String>>()?,
            ) as ArrayRef
        };
    }
    Ok(match arrow_type(ty) {
        DataType::Boolean => build!(BooleanArray, SqlValue::Bit(b) => b),
        DataType::UInt8 => build!(UInt8Array, SqlValue::TinyInt(v) => v),
        DataType::Int16 => build!(Int16Array, SqlValue::SmallInt(v) => v),
        DataType::Int32 => build!(Int32Array, SqlValue::Int(v) => v),
        DataType::Int64 => build!(Int64Array, SqlValue::BigInt(v) => v),
        DataType::Float32 => build!(Float32Array, SqlValue::Real(v) => v),
        DataType::Float64 => build!(Float64Array, SqlValue::Float(v) => v),
        DataType::Decimal128(p, s) => {
            let target = s as u8;
            let array = values
                .into_iter()
                .map(|v| match v {
                    None => Ok(None),
                    Some(SqlValue::Money(m)) => Ok(Some(i128::from(m))),
                    Some(SqlValue::SmallMoney(m)) => Ok(Some(i128::from(m))),
                    Some(SqlValue::Decimal(d)) => rescale(d.unscaled, d.scale, target)
                        .map(Some)
                        .ok_or_else(mismatch),
                    Some(_) => Err(mismatch()),
                })
                .collect::<Result<Decimal128Array, String>>()?
                .with_precision_and_scale(p, s)
                .map_err(|e| e.to_string())?;
            Arc::new(array)
        }
        DataType::Binary => build!(BinaryArray, SqlValue::Binary(b) => b),
        DataType::Date32 => {
            build!(Date32Array, SqlValue::Date(d) => (i64::from(d.days()) - DAYS_TO_1970) as i32)
        }
        _ => Arc::new(
            values
                .into_iter()
                .map(|v| {
                    v.map(|v| match v {
                        SqlValue::String(s) => s,
                        other => other.to_string(),
                    })
                })
                .collect::<StringArray>(),
        ),
    })
}

/// `unscaled × 10^-from` as an unscaled value at scale `to` (exact, or `None`).
fn rescale(unscaled: i128, from: u8, to: u8) -> Option<i128> {
    if to >= from {
        unscaled.checked_mul(10i128.checked_pow(u32::from(to - from))?)
    } else {
        let factor = 10i128.checked_pow(u32::from(from - to))?;
        (unscaled % factor == 0).then_some(unscaled / factor)
    }
}

/// The SQL Server values of an Arrow array, for encrypting into a column of type `ty`
/// (binary arrays as bytes, everything else through its text form).
pub fn array_to_sql_values(
    ty: &SqlType,
    array: &ArrayRef,
) -> Result<Vec<Option<SqlValue>>, String> {
    if let Some(binary) = array.as_any().downcast_ref::<BinaryArray>() {
        return Ok(binary
            .iter()
            .map(|b| b.map(|b| SqlValue::Binary(b.to_vec())))
            .collect());
    }
    if let (SqlType::Date, Some(dates)) = (ty, array.as_any().downcast_ref::<Date32Array>()) {
        return dates
            .iter()
            .map(|d| {
                d.map(|d| {
                    date_from_date32(d)
                        .map(SqlValue::Date)
                        .ok_or("date out of range")
                })
                .transpose()
                .map_err(str::to_owned)
            })
            .collect();
    }
    let text = cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or("cannot convert the values to text")?;
    text.iter()
        .map(|t| {
            t.map(|t| SqlValue::parse(ty, t))
                .transpose()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Decrypts a column of cells into an Arrow array. Errors name the table and column and never
/// contain values.
pub fn decrypt_column(
    table: &str,
    column: &str,
    ty: &SqlType,
    key: &CellKey,
    cells: &[Value],
) -> Result<ArrayRef, SqlDbError> {
    let fail = |reason: String| SqlDbError::column(table, column, reason);
    let values = cells
        .iter()
        .map(|cell| match cell {
            Value::Null => Ok(None),
            Value::Bytes(bytes) => decrypt_value(key, ty, bytes)
                .map(Some)
                .map_err(|e| fail(e.to_string())),
            other => Err(fail(format!(
                "expected an encrypted cell (bytes), found {other:?}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    sql_values_to_array(ty, values).map_err(fail)
}

/// Encrypts an Arrow array into cells of a column of type `ty`.
pub fn encrypt_column(
    table: &str,
    column: &str,
    ty: &SqlType,
    mode: EncryptionType,
    key: &CellKey,
    array: &ArrayRef,
) -> Result<Vec<Value>, SqlDbError> {
    let fail = |reason: String| SqlDbError::column(table, column, reason);
    array_to_sql_values(ty, array)
        .map_err(fail)?
        .into_iter()
        .map(|v| match v {
            None => Ok(Value::Null),
            Some(v) => encrypt_value(key, ty, &v, mode)
                .map(Value::Bytes)
                .map_err(|e| fail(e.to_string())),
        })
        .collect()
}

/// Builds the Arrow array of a plaintext column from its cells.
pub fn plain_column(
    table: &str,
    column: &str,
    ty: &PlainType,
    cells: &[Value],
) -> Result<ArrayRef, SqlDbError> {
    let fail = |found: &Value| {
        SqlDbError::column(
            table,
            column,
            format!("cannot read a {found:?} cell as {:?}", ty),
        )
    };
    macro_rules! build {
        ($array:ty, $($pattern:pat => $out:expr),+) => {
            Arc::new(
                cells
                    .iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        $($pattern => Ok(Some($out)),)+
                        other => Err(fail(other)),
                    })
                    .collect::<Result<$array, SqlDbError>>()?,
            ) as ArrayRef
        };
    }
    // SQLite keeps booleans as integers and may keep whole numbers of REAL-like columns as
    // integers.
    Ok(match ty {
        PlainType::Bool => build!(BooleanArray, Value::Bool(b) => *b, Value::Int(i) => *i != 0),
        PlainType::Int16 => {
            build!(Int16Array, Value::Int(i) => i16::try_from(*i).map_err(|_| fail(&Value::Int(*i)))?)
        }
        PlainType::Int32 => {
            build!(Int32Array, Value::Int(i) => i32::try_from(*i).map_err(|_| fail(&Value::Int(*i)))?)
        }
        PlainType::Int64 => build!(Int64Array, Value::Int(i) => *i),
        PlainType::Float32 => {
            build!(Float32Array, Value::Float(f) => *f as f32, Value::Int(i) => *i as f32)
        }
        PlainType::Float64 => {
            build!(Float64Array, Value::Float(f) => *f, Value::Int(i) => *i as f64)
        }
        PlainType::Utf8 => build!(StringArray, Value::Text(t) => t.as_str()),
        PlainType::Binary => build!(BinaryArray, Value::Bytes(b) => b.as_slice()),
        PlainType::Text(target) => {
            let text = Arc::new(
                cells
                    .iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Text(t) => Ok(Some(t.clone())),
                        Value::Int(i) => Ok(Some(i.to_string())),
                        Value::Float(f) => Ok(Some(f.to_string())),
                        other => Err(fail(other)),
                    })
                    .collect::<Result<StringArray, SqlDbError>>()?,
            ) as ArrayRef;
            cast(&text, target).map_err(|e| SqlDbError::column(table, column, e))?
        }
    })
}

/// The cells of an Arrow array for a plaintext column of type `ty`.
pub fn plain_cells(
    table: &str,
    column: &str,
    ty: &PlainType,
    array: &ArrayRef,
) -> Result<Vec<Value>, SqlDbError> {
    let fail = |reason: String| SqlDbError::column(table, column, reason);
    let target = match ty {
        PlainType::Bool => DataType::Boolean,
        PlainType::Int16 | PlainType::Int32 | PlainType::Int64 => DataType::Int64,
        PlainType::Float32 | PlainType::Float64 => DataType::Float64,
        PlainType::Binary => DataType::Binary,
        PlainType::Utf8 | PlainType::Text(_) => DataType::Utf8,
    };
    let array = cast(array, &target).map_err(|e| fail(e.to_string()))?;
    let any = array.as_any();
    let cells: Vec<Value> = if let Some(a) = any.downcast_ref::<BooleanArray>() {
        a.iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect()
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        a.iter()
            .map(|v| v.map_or(Value::Null, Value::Int))
            .collect()
    } else if let Some(a) = any.downcast_ref::<Float64Array>() {
        a.iter()
            .map(|v| v.map_or(Value::Null, Value::Float))
            .collect()
    } else if let Some(a) = any.downcast_ref::<BinaryArray>() {
        a.iter()
            .map(|v| v.map_or(Value::Null, |b| Value::Bytes(b.to_vec())))
            .collect()
    } else if let Some(a) = any.downcast_ref::<StringArray>() {
        a.iter()
            .map(|v| v.map_or(Value::Null, |t| Value::Text(t.to_owned())))
            .collect()
    } else {
        return Err(fail(format!(
            "unsupported Arrow type {}",
            array.data_type()
        )));
    };
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_is_exact() {
        assert_eq!(rescale(1250, 2, 4), Some(125_000));
        assert_eq!(rescale(125_000, 4, 2), Some(1250));
        assert_eq!(rescale(125_001, 4, 2), None);
    }

    #[test]
    fn dates_round_trip_through_date32() {
        let d = date_from_date32(0).unwrap();
        assert_eq!(d.to_string(), "1970-01-01");
        assert!(date_from_date32(-800_000).is_none());
    }
}
