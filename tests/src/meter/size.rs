//! DynamoDB's published sizing and capacity rules, applied to items in DynamoDB JSON (what the
//! wire carries: `{"S": "…"}`, `{"N": "…"}`, `{"M": {…}}`, …). moto reports a constant
//! `ConsumedCapacity` and enforces no limit, so the meter computes every unit itself.
//!
//! - Item size: the sum over attributes of the UTF-8 length of the name plus the value's size.
//! - Values: strings their UTF-8 bytes; numbers (significant digits / 2, rounded up) + 1;
//!   binary its bytes; booleans and null 1; lists and maps 3 + 1 per element + the elements
//!   (a map element counts its name too); sets the sum of their members.
//! - Writes: 1 WRU per started KB of the item (at least 1), twice inside a transaction; the
//!   size is the larger of the item before and after the write.
//! - Reads: 1 RRU per started 4 KB, half when eventually consistent; a Query or Scan rounds the
//!   sum of the items it returns, a GetItem or a BatchGetItem key each item (a missing item
//!   still costs the minimum).

use serde_json::Value;

/// One write request unit covers this many bytes.
pub const WRITE_UNIT_BYTES: u64 = 1024;
/// One read request unit covers this many bytes (strongly consistent).
pub const READ_UNIT_BYTES: u64 = 4096;

/// The size in bytes of an item (a DynamoDB JSON map of attribute name → value).
pub fn item_size(item: &serde_json::Map<String, Value>) -> u64 {
    item.iter().map(|(name, value)| name.len() as u64 + value_size(value)).sum()
}

/// The size of an item given as a JSON value (0 unless it is a map).
pub fn item_value_size(item: &Value) -> u64 {
    item.as_object().map(item_size).unwrap_or(0)
}

/// The size in bytes of one attribute value (without its name).
pub fn value_size(value: &Value) -> u64 {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else { return 0 };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len() as u64,
        ("N", Value::String(n)) => number_size(n),
        ("B", Value::String(b)) => base64_len(b),
        ("BOOL" | "NULL", _) => 1,
        ("SS", Value::Array(members)) => members.iter().filter_map(Value::as_str).map(|s| s.len() as u64).sum(),
        ("NS", Value::Array(members)) => members.iter().filter_map(Value::as_str).map(number_size).sum(),
        ("BS", Value::Array(members)) => members.iter().filter_map(Value::as_str).map(base64_len).sum(),
        ("L", Value::Array(elements)) => 3 + elements.iter().map(|e| 1 + value_size(e)).sum::<u64>(),
        ("M", Value::Object(entries)) => {
            3 + entries.iter().map(|(name, e)| 1 + name.len() as u64 + value_size(e)).sum::<u64>()
        }
        _ => 0,
    }
}

/// A number's size: 1 byte per two significant digits (leading and trailing zeros trimmed),
/// plus 1.
pub fn number_size(number: &str) -> u64 {
    let mantissa = number.split(['e', 'E']).next().unwrap_or(number);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.div_ceil(2) + 1
}

/// The decoded length of a base64 string (binary values travel base64-encoded).
fn base64_len(encoded: &str) -> u64 {
    let trimmed = encoded.trim_end_matches('=');
    (trimmed.len() as u64 * 3) / 4
}

/// Write request units for writing an item of `size` bytes (the larger of before and after),
/// doubled inside a transaction.
pub fn write_units(size: u64, transactional: bool) -> f64 {
    let units = size.div_ceil(WRITE_UNIT_BYTES).max(1) as f64;
    if transactional { units * 2.0 } else { units }
}

/// Read request units for reading `size` bytes in one unit of rounding (one item of a GetItem
/// or BatchGetItem, or the sum of a Query page), halved when eventually consistent, doubled in
/// a transaction.
pub fn read_units(size: u64, consistent: bool, transactional: bool) -> f64 {
    let units = size.div_ceil(READ_UNIT_BYTES).max(1) as f64;
    let units = if consistent { units } else { units / 2.0 };
    if transactional { units * 2.0 } else { units }
}
