//! `navet export` / `navet import` for the embedded SQLite store (the format: `dump.rs`). The plain tables and
//! the change chain are in `navet.db`, the access chain in `audit.db`.

use std::io::{BufRead, Write};
use std::path::Path;

use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{Connection, OpenFlags, params_from_iter};

use super::StoreError;
use super::audit_sql::{ACCESS_DB, ACCESS_SCHEMA};
use super::dump::{self, Cell, Row};

/// The SQLite schema a logical table lives in: `main` for the plain tables and the change chain, the attached
/// access database for the access chain.
fn place(table: &str) -> (&'static str, &str) {
    match table.split_once('.') {
        Some(("access", t)) => (ACCESS_SCHEMA, t),
        Some((_, t)) => ("main", t),
        None => ("main", table),
    }
}

fn open(data_dir: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let path = data_dir.join("navet.db");
    if !path.exists() {
        return Err(StoreError::Open(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(&path, flags)?;
    conn.execute(
        &format!("ATTACH DATABASE ?1 AS {ACCESS_SCHEMA}"),
        [data_dir.join(ACCESS_DB).to_string_lossy()],
    )?;
    Ok(conn)
}

/// Every logical table: the plain ones, then each chain's log tables.
fn all_tables() -> Vec<String> {
    let mut tables: Vec<String> = dump::TABLES.iter().map(|t| (*t).to_owned()).collect();
    for chain in dump::CHAINS {
        for t in dump::LOG_TABLES {
            tables.push(format!("{chain}.{t}"));
        }
    }
    tables
}

/// Writes every row of the store in `data_dir` to `out`; answers the number of rows. Read in one read
/// transaction, so the dump is one consistent state even while navet runs.
pub fn export(data_dir: &Path, out: &mut dyn Write) -> Result<u64, StoreError> {
    let conn = open(data_dir, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.execute_batch("BEGIN")?;
    dump::write_header(out)?;
    let mut rows = 0u64;
    for table in all_tables() {
        let (schema, name) = place(&table);
        let mut stmt = conn.prepare(&format!("SELECT * FROM {schema}.{name}"))?;
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut query = stmt.query([])?;
        while let Some(r) = query.next()? {
            let mut cells = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                let cell = match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Integer(v),
                    ValueRef::Real(v) => Cell::Text(v.to_string()),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
                };
                cells.push((column.clone(), cell));
            }
            dump::write_row(
                out,
                &Row {
                    table: table.clone(),
                    cells,
                },
            )?;
            rows = rows.saturating_add(1);
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(rows)
}

/// Reads a dump into the store in `data_dir`, which must be empty (no resource and no log record): creates
/// both databases' schema (without the start-up check of the log against the checkpoint file: the file may
/// already name the checkpoints the dump brings), then inserts every row in one transaction. Keep the source's
/// data directory keys (`auth/`, the checkpoint key) with the store, or its signed checkpoints will not verify.
pub fn import(data_dir: &Path, input: &mut dyn BufRead) -> Result<u64, StoreError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::Open(format!("{}: {e}", data_dir.display())))?;
    {
        let main = Connection::open(data_dir.join("navet.db"))?;
        main.execute_batch("PRAGMA journal_mode = WAL;")?;
        main.execute_batch(super::schema::SQLITE_SCHEMA)?;
        main.execute_batch(super::audit_sql::AUDIT_SCHEMA)?;
        let access = Connection::open(data_dir.join(ACCESS_DB))?;
        access.execute_batch("PRAGMA journal_mode = WAL;")?;
        access.execute_batch(super::audit_sql::AUDIT_SCHEMA)?;
    }
    let conn = open(data_dir, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let occupied: i64 = conn.query_row(
        &format!(
            "SELECT (SELECT count(*) FROM resources_current) + (SELECT count(*) FROM main.audit_log) \
               + (SELECT count(*) FROM {ACCESS_SCHEMA}.audit_log)"
        ),
        [],
        |r| r.get(0),
    )?;
    if occupied > 0 {
        return Err(StoreError::Open(format!(
            "{} already holds data; import into an empty data directory",
            data_dir.display()
        )));
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut columns: std::collections::HashMap<String, Vec<String>> = Default::default();
    let result = dump::read(input, &mut |row| {
        let (schema, name) = place(&row.table);
        if !columns.contains_key(&row.table) {
            let stmt = conn.prepare(&format!("SELECT * FROM {schema}.{name} LIMIT 0"))?;
            let names = stmt.column_names().map(str::to_owned).collect();
            columns.insert(row.table.clone(), names);
        }
        dump::check_columns(
            &row,
            columns.get(&row.table).map(Vec::as_slice).unwrap_or(&[]),
        )?;
        let marks = vec!["?"; row.cells.len()].join(", ");
        let sql = format!(
            "INSERT INTO {schema}.{name} ({}) VALUES ({marks})",
            row.column_list()
        );
        let values = row.cells.into_iter().map(|(_, c)| match c {
            Cell::Null => Sql::Null,
            Cell::Integer(i) => Sql::Integer(i),
            Cell::Text(t) => Sql::Text(t),
            Cell::Bytes(b) => Sql::Blob(b),
        });
        conn.prepare_cached(&sql)?
            .execute(params_from_iter(values))?;
        Ok(())
    });
    match result {
        Ok(rows) => {
            conn.execute_batch("COMMIT")?;
            Ok(rows)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
