//! Moving a store between backends (`navet export` / `navet import`, issue 16): every table's rows as JSON
//! lines, in terms neither backend owns. Each backend reads and writes its own tables (`dump_sqlite.rs`,
//! `postgres/dump.rs`); this file is the format.
//!
//! The file: a header line `{"navet_dump":1}`, then one line per row, `{"t":"<table>","r":{"<column>":<cell>}}`.
//! A cell is a JSON integer, a string, `null`, or `{"base64":"…"}` for bytes. Rows are copied as they are
//! stored (sequence numbers, hashes, JSON text byte for byte), so the access log's hash chains and signed
//! checkpoints verify after the move, and resource versions keep their ids, versions and times.

use std::io::{BufRead, Write};

use base64::Engine;
use serde_json::{Map, Value};

use super::StoreError;

/// The dump format's version (the header line).
pub const FORMAT: i64 = 1;

/// The tables both backends have under the same names and columns, in an order that inserts cleanly.
pub const TABLES: [&str; 14] = [
    "settings",
    "resource_versions",
    "resources_current",
    "search_index",
    "participants",
    "patient_links",
    "care_relations",
    "consents",
    "timeline",
    "unique_keys",
    "seen_once",
    "outbox",
    "inbound_messages",
    "inbound_receipts",
];

/// The access log's tables, per chain: `change.audit_log`, `access.audit_key`, … Their storage differs per
/// backend (two SQLite files; one PostgreSQL table set with a chain column), their rows do not.
pub const LOG_TABLES: [&str; 3] = ["audit_log", "audit_key", "audit_checkpoint"];
pub const CHAINS: [&str; 2] = ["change", "access"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Integer(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// One row: its table and its (column, cell) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub table: String,
    pub cells: Vec<(String, Cell)>,
}

impl Row {
    /// The columns as a comma-separated list (names come from navet's own tables, never from the file:
    /// [`check_columns`] refused any other).
    pub fn column_list(&self) -> String {
        let names: Vec<&str> = self.cells.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
    }
}

/// Writes the header line.
pub fn write_header(out: &mut dyn Write) -> Result<(), StoreError> {
    writeln!(out, "{}", serde_json::json!({ "navet_dump": FORMAT })).map_err(io)
}

/// Writes one row as a line.
pub fn write_row(out: &mut dyn Write, row: &Row) -> Result<(), StoreError> {
    let mut cells = Map::new();
    for (name, cell) in &row.cells {
        let value = match cell {
            Cell::Null => Value::Null,
            Cell::Integer(i) => Value::from(*i),
            Cell::Text(t) => Value::String(t.clone()),
            Cell::Bytes(b) => serde_json::json!({
                "base64": base64::engine::general_purpose::STANDARD.encode(b)
            }),
        };
        cells.insert(name.clone(), value);
    }
    let line = serde_json::json!({ "t": row.table, "r": cells });
    writeln!(out, "{line}").map_err(io)
}

/// Reads a dump: checks the header, then hands each row to `each`. A line that is not a row of a known table
/// with known-shaped cells stops the import with its line number.
pub fn read(
    input: &mut dyn BufRead,
    each: &mut dyn FnMut(Row) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut lines = input.lines();
    let header = lines
        .next()
        .ok_or_else(|| bad(1, "the file is empty"))?
        .map_err(io)?;
    let header: Value = serde_json::from_str(&header).map_err(|_| bad(1, "not a navet dump"))?;
    if header.get("navet_dump").and_then(Value::as_i64) != Some(FORMAT) {
        return Err(bad(1, "not a navet dump of format 1"));
    }
    let mut rows = 0u64;
    for (n, line) in lines.enumerate() {
        let number = n.saturating_add(2);
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let row = parse_row(&line).map_err(|why| bad(number, &why))?;
        each(row)?;
        rows = rows.saturating_add(1);
    }
    Ok(rows)
}

fn parse_row(line: &str) -> Result<Row, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let table = value
        .get("t")
        .and_then(Value::as_str)
        .ok_or("no table name")?
        .to_owned();
    if !known_table(&table) {
        return Err(format!("unknown table '{table}'"));
    }
    let cells = value.get("r").and_then(Value::as_object).ok_or("no row")?;
    let mut out = Vec::with_capacity(cells.len());
    for (name, cell) in cells {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(format!("column name '{name}' is not one of navet's"));
        }
        let cell = match cell {
            Value::Null => Cell::Null,
            Value::Number(n) => Cell::Integer(n.as_i64().ok_or("a number that is not an integer")?),
            Value::String(s) => Cell::Text(s.clone()),
            Value::Object(o) => {
                let text = o
                    .get("base64")
                    .and_then(Value::as_str)
                    .ok_or("an object cell that is not {\"base64\": …}")?;
                Cell::Bytes(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|_| "bad base64")?,
                )
            }
            _ => {
                return Err(format!(
                    "cell '{name}' is neither integer, text, bytes nor null"
                ));
            }
        };
        out.push((name.clone(), cell));
    }
    Ok(Row { table, cells: out })
}

/// A plain table, or `chain.log_table`.
pub fn known_table(table: &str) -> bool {
    TABLES.contains(&table)
        || table
            .split_once('.')
            .is_some_and(|(chain, t)| CHAINS.contains(&chain) && LOG_TABLES.contains(&t))
}

/// The columns a table may be given (its schema's); refuses a row naming another, so a crafted file cannot
/// reach anything but navet's own columns.
pub fn check_columns(row: &Row, allowed: &[String]) -> Result<(), StoreError> {
    match row.cells.iter().find(|(n, _)| !allowed.contains(n)) {
        Some((name, _)) => Err(StoreError::Corrupt(format!(
            "the dump's table {} has a column '{name}' this store does not",
            row.table
        ))),
        None => Ok(()),
    }
}

fn bad(line: usize, why: &str) -> StoreError {
    StoreError::Corrupt(format!("dump line {line}: {why}"))
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Open(format!("reading or writing the dump: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rows_round_trip_through_a_line() {
        let row = Row {
            table: "change.audit_log".into(),
            cells: vec![
                ("seq".into(), Cell::Integer(i64::MAX)),
                ("purpose".into(), Cell::Null),
                ("record".into(), Cell::Bytes(vec![0, 255, 10])),
                ("json".into(), Cell::Text("{\"a\":\"å\\n\"}".into())),
            ],
        };
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        write_row(&mut out, &row).unwrap();
        let mut got = Vec::new();
        let n = read(&mut out.as_slice(), &mut |r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(got, vec![row]);
    }

    #[test]
    fn a_file_that_is_not_a_dump_or_names_other_tables_is_refused() {
        for text in [
            "",
            "{}\n",
            "{\"navet_dump\":2}\n",
            "{\"navet_dump\":1}\n{\"t\":\"pg_authid\",\"r\":{}}\n",
            "{\"navet_dump\":1}\n{\"t\":\"settings\",\"r\":{\"key; DROP\":1}}\n",
            "{\"navet_dump\":1}\n{\"t\":\"settings\",\"r\":{\"key\":1.5}}\n",
        ] {
            let result = read(&mut text.as_bytes(), &mut |_| Ok(()));
            assert!(result.is_err(), "{text:?} was read");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(text in ".{0,400}") {
            let input = format!("{{\"navet_dump\":1}}\n{text}");
            let _ = read(&mut input.as_bytes(), &mut |_| Ok(()));
        }
    }
}
