//! The column types recpipe accepts beside its canonical ones, and their lossless conversion on
//! read: what pandas, Spark, DuckDB and Polars write by default (32-bit or unsigned integer
//! ids, `Float64` watch times, `Timestamp` times, 0/1 integers for booleans). A reader asks for
//! the canonical type; [`convertible`] says whether a file's type can stand for it and
//! [`convert`] turns a batch's column into the canonical type, or names the first row whose
//! value does not fit.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, BooleanArray, Float32Array, Int64Array};
use arrow_schema::{DataType, TimeUnit};

use crate::ids::IdKeys;

/// How a column's values are read when its type is not the canonical one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    /// Any value: ids, counts, scores.
    Value,
    /// A time as Unix seconds: also a `Timestamp` (any unit, any time zone) or a `Date32`.
    UnixSeconds,
    /// A user or item id: also strings (`Utf8`, `LargeUtf8`, `Utf8View` or a dictionary of
    /// them), read as surrogate ids by [`strings_to_ids`].
    Id,
}

/// Whether `t` is a string type, or a dictionary of strings.
pub fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

/// The string ids of `a` as surrogate `Int64` ids ([`crate::ids::surrogate`]), their strings
/// added to `keys`; an error names the first row (0-based within the batch) that is null or
/// collides.
pub fn strings_to_ids(
    a: &dyn Array,
    keys: &mut IdKeys,
) -> std::result::Result<ArrayRef, (usize, String)> {
    let mut out = Vec::with_capacity(a.len());
    let mut push = |r: usize, s: Option<&str>| -> std::result::Result<(), (usize, String)> {
        out.push(match s {
            Some(s) => Some(keys.insert(s).map_err(|e| (r, e))?),
            None => None,
        });
        Ok(())
    };
    match a.data_type() {
        DataType::Utf8 => {
            for (r, s) in a.as_string::<i32>().iter().enumerate() {
                push(r, s)?;
            }
        }
        DataType::LargeUtf8 => {
            for (r, s) in a.as_string::<i64>().iter().enumerate() {
                push(r, s)?;
            }
        }
        DataType::Utf8View => {
            for (r, s) in a.as_string_view().iter().enumerate() {
                push(r, s)?;
            }
        }
        DataType::Dictionary(_, _) => {
            let dict = a
                .as_any_dictionary_opt()
                .ok_or((0, format!("cannot read {} as strings", a.data_type())))?;
            let values = dict.values();
            let codes = dict.normalized_keys();
            let mut value_ids = Vec::with_capacity(values.len());
            {
                let mut one = |s: Option<&str>| -> std::result::Result<(), (usize, String)> {
                    value_ids.push(match s {
                        Some(s) => Some(keys.insert(s).map_err(|e| (0, e))?),
                        None => None,
                    });
                    Ok(())
                };
                match values.data_type() {
                    DataType::Utf8 => values.as_string::<i32>().iter().try_for_each(&mut one)?,
                    DataType::LargeUtf8 => {
                        values.as_string::<i64>().iter().try_for_each(&mut one)?
                    }
                    DataType::Utf8View => values.as_string_view().iter().try_for_each(&mut one)?,
                    other => return Err((0, format!("cannot read dictionary of {other} as ids"))),
                }
            }
            for (r, &c) in codes.iter().enumerate() {
                out.push(if a.is_null(r) {
                    None
                } else {
                    value_ids.get(c).copied().flatten()
                });
            }
        }
        other => return Err((0, format!("cannot read {other} as string ids"))),
    }
    Ok(Arc::new(Int64Array::from(out)))
}

fn is_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

/// Whether a column of type `actual` can be read as `expected` by [`convert`].
pub fn convertible(actual: &DataType, expected: &DataType, meaning: Meaning) -> bool {
    match expected {
        DataType::Int64 => {
            is_integer(actual)
                || (meaning == Meaning::Id && is_string(actual))
                || (meaning == Meaning::UnixSeconds
                    && matches!(actual, DataType::Timestamp(_, _) | DataType::Date32))
        }
        DataType::Float32 => {
            is_integer(actual)
                || matches!(
                    actual,
                    DataType::Float16 | DataType::Float32 | DataType::Float64
                )
        }
        DataType::Boolean => is_integer(actual),
        _ => false,
    }
}

/// Values as i128 (every integer type fits), `None` for nulls.
fn integers(a: &dyn Array) -> Option<Vec<Option<i128>>> {
    macro_rules! collect {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|v| v.map(i128::from))
                .collect()
        };
    }
    Some(match a.data_type() {
        DataType::Int8 => collect!(Int8Type),
        DataType::Int16 => collect!(Int16Type),
        DataType::Int32 => collect!(Int32Type),
        DataType::Int64 => collect!(Int64Type),
        DataType::UInt8 => collect!(UInt8Type),
        DataType::UInt16 => collect!(UInt16Type),
        DataType::UInt32 => collect!(UInt32Type),
        DataType::UInt64 => collect!(UInt64Type),
        DataType::Date32 => a
            .as_primitive::<Date32Type>()
            .iter()
            .map(|v| v.map(|days| i128::from(days) * 86_400))
            .collect(),
        DataType::Timestamp(unit, _) => {
            // Floor to whole seconds (a time before 1970 stays before its second).
            let per_second: i128 = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            let raw: Vec<Option<i128>> = match unit {
                TimeUnit::Second => collect!(TimestampSecondType),
                TimeUnit::Millisecond => collect!(TimestampMillisecondType),
                TimeUnit::Microsecond => collect!(TimestampMicrosecondType),
                TimeUnit::Nanosecond => collect!(TimestampNanosecondType),
            };
            raw.into_iter()
                .map(|v| v.map(|x| x.div_euclid(per_second)))
                .collect()
        }
        _ => return None,
    })
}

/// `a` as `expected` (see [`convertible`]); an error names the first row (0-based within the
/// batch) whose value does not fit, and why.
pub fn convert(
    a: &dyn Array,
    expected: &DataType,
) -> std::result::Result<ArrayRef, (usize, String)> {
    match expected {
        DataType::Int64 => {
            let values =
                integers(a).ok_or((0, format!("cannot read {} as Int64", a.data_type())))?;
            let mut out = Vec::with_capacity(values.len());
            for (r, v) in values.into_iter().enumerate() {
                out.push(match v {
                    Some(x) => Some(i64::try_from(x).map_err(|_| {
                        (r, format!("{x} does not fit in a signed 64-bit integer"))
                    })?),
                    None => None,
                });
            }
            Ok(Arc::new(Int64Array::from(out)))
        }
        DataType::Float32 => {
            let out: Float32Array = match a.data_type() {
                DataType::Float16 => a
                    .as_primitive::<Float16Type>()
                    .iter()
                    .map(|v| v.map(f32::from))
                    .collect(),
                DataType::Float32 => a.as_primitive::<Float32Type>().iter().collect(),
                DataType::Float64 => a
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.map(|x| x as f32))
                    .collect(),
                _ => integers(a)
                    .ok_or((0, format!("cannot read {} as Float32", a.data_type())))?
                    .into_iter()
                    .map(|v| v.map(|x| x as f32))
                    .collect(),
            };
            Ok(Arc::new(out))
        }
        DataType::Boolean => {
            let values =
                integers(a).ok_or((0, format!("cannot read {} as Boolean", a.data_type())))?;
            let mut out = Vec::with_capacity(values.len());
            for (r, v) in values.into_iter().enumerate() {
                out.push(match v {
                    Some(0) => Some(false),
                    Some(1) => Some(true),
                    Some(x) => return Err((r, format!("{x} is not 0 or 1"))),
                    None => None,
                });
            }
            Ok(Arc::new(BooleanArray::from(out)))
        }
        other => Err((0, format!("no conversion to {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        Date32Array, Float64Array, Int32Array, TimestampMicrosecondArray, UInt64Array,
    };

    #[test]
    fn lossless_conversions_and_the_rows_that_do_not_fit() {
        let ids = Int32Array::from(vec![Some(3), None, Some(-7)]);
        let got = convert(&ids, &DataType::Int64).unwrap();
        assert_eq!(
            got.as_primitive::<Int64Type>(),
            &Int64Array::from(vec![Some(3), None, Some(-7)])
        );
        let big = UInt64Array::from(vec![1, u64::MAX]);
        let err = convert(&big, &DataType::Int64).unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("18446744073709551615"), "{}", err.1);
        // 2024-01-01T00:00:01.5Z in microseconds, with a time zone, and a date.
        let ts = TimestampMicrosecondArray::from(vec![1_704_067_201_500_000]).with_timezone("UTC");
        assert!(convertible(
            ts.data_type(),
            &DataType::Int64,
            Meaning::UnixSeconds
        ));
        assert!(!convertible(
            ts.data_type(),
            &DataType::Int64,
            Meaning::Value
        ));
        let got = convert(&ts, &DataType::Int64).unwrap();
        assert_eq!(got.as_primitive::<Int64Type>().value(0), 1_704_067_201);
        let day = Date32Array::from(vec![19_723]);
        assert_eq!(
            convert(&day, &DataType::Int64)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            19_723 * 86_400
        );
        let secs = Float64Array::from(vec![Some(12.5), None]);
        let got = convert(&secs, &DataType::Float32).unwrap();
        assert_eq!(
            got.as_primitive::<Float32Type>(),
            &Float32Array::from(vec![Some(12.5), None])
        );
        let flags = Int64Array::from(vec![0, 1, 1]);
        let got = convert(&flags, &DataType::Boolean).unwrap();
        assert_eq!(
            got.as_boolean(),
            &BooleanArray::from(vec![false, true, true])
        );
        let err = convert(&Int64Array::from(vec![1, 2]), &DataType::Boolean).unwrap_err();
        assert_eq!(err, (1, "2 is not 0 or 1".to_string()));
    }

    #[test]
    fn string_ids_of_every_string_layout_read_as_the_same_surrogates() {
        use arrow_array::{DictionaryArray, LargeStringArray, StringArray, StringViewArray};
        let want: Vec<Option<i64>> = vec![
            Some(crate::ids::surrogate("alice")),
            Some(42),
            None,
            Some(crate::ids::surrogate("alice")),
        ];
        let values = vec![Some("alice"), Some("42"), None, Some("alice")];
        let dict: DictionaryArray<Int32Type> = values.iter().copied().collect();
        let layouts: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(values.clone())),
            Arc::new(LargeStringArray::from(values.clone())),
            Arc::new(StringViewArray::from(values.clone())),
            Arc::new(dict),
        ];
        for a in layouts {
            assert!(is_string(a.data_type()));
            assert!(convertible(a.data_type(), &DataType::Int64, Meaning::Id));
            assert!(!convertible(
                a.data_type(),
                &DataType::Int64,
                Meaning::Value
            ));
            let mut keys = IdKeys::default();
            let got = strings_to_ids(a.as_ref(), &mut keys).unwrap();
            let got: Vec<Option<i64>> = got.as_primitive::<Int64Type>().iter().collect();
            assert_eq!(got, want, "{}", a.data_type());
            assert_eq!(keys.key(42), Some("42"));
            assert_eq!(keys.len(), 2);
        }
    }
}
