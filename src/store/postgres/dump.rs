//! `navet export` / `navet import` for PostgreSQL (the format: `store/dump.rs`). The plain tables have the
//! same names and columns as on SQLite; the access log's tables are mapped per chain by `audit.rs`.

use std::io::{BufRead, Write};

use postgres::GenericClient;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::store::StoreError;
use crate::store::dump::{self, Cell, Row};

/// Columns that name something of one database's live connections, not of the store: not moved.
const NODE_LOCAL: [(&str, &str); 1] = [("outbox", "claimed_by")];

/// Tables whose `seq` is a BIGSERIAL: after an import its sequence continues after the imported rows.
const SERIAL_TABLES: [&str; 3] = ["resource_versions", "outbox", "inbound_messages"];

/// A row's cells as PostgreSQL values of the table's column types.
fn cells_of(row: &postgres::Row) -> Result<Vec<(String, Cell)>, StoreError> {
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Cell::Integer)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|v| Cell::Integer(i64::from(v)))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Bytes)
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::BPCHAR {
            row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
        } else {
            return Err(StoreError::Corrupt(format!(
                "column {} has type {ty}, which the dump format does not carry",
                column.name()
            )));
        };
        cells.push((column.name().to_owned(), cell.unwrap_or(Cell::Null)));
    }
    Ok(cells)
}

/// Writes every row of the database at `url` to `out`, read in one repeatable-read transaction (one
/// consistent state while nodes keep writing); answers the number of rows.
pub fn export(url: &str, out: &mut dyn Write) -> Result<u64, StoreError> {
    let mut client = super::connect(url)?;
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    dump::write_header(out)?;
    let mut rows = 0u64;
    for table in dump::TABLES {
        for row in tx.query(&format!("SELECT * FROM {table}"), &[])? {
            let mut cells = cells_of(&row)?;
            cells.retain(|(name, _)| !NODE_LOCAL.contains(&(table, name.as_str())));
            dump::write_row(
                out,
                &Row {
                    table: table.to_owned(),
                    cells,
                },
            )?;
            rows = rows.saturating_add(1);
        }
    }
    for chain in dump::CHAINS {
        for table in dump::LOG_TABLES {
            let (sql, name) = log::select(chain, table);
            for row in tx.query(&sql, &[])? {
                dump::write_row(
                    out,
                    &Row {
                        table: name.clone(),
                        cells: cells_of(&row)?,
                    },
                )?;
                rows = rows.saturating_add(1);
            }
        }
    }
    tx.commit()?;
    Ok(rows)
}

/// A cell bound to whatever type the column has (the dump carries integers, text, bytes and nulls).
#[derive(Debug)]
struct Bound<'a>(&'a Cell);

impl ToSql for Bound<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Integer(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Cell::Integer(v) => v.to_sql(ty, out),
            Cell::Text(t) => t.to_sql(ty, out),
            Cell::Bytes(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Reads a dump into the database at `url`, migrated first, which must be empty (no resource and no log
/// record); every row in one transaction, so a bad line leaves the database as it was.
pub fn import(url: &str, input: &mut dyn BufRead) -> Result<u64, StoreError> {
    let mut client = super::connect(url)?;
    super::migrate::migrate(&mut client)?;
    let mut tx = client.transaction()?;
    let occupied: i64 = tx
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM resources_current) + ({})",
                log::count()
            ),
            &[],
        )?
        .get(0);
    if occupied > 0 {
        return Err(StoreError::Open(
            "the database already holds data; import into an empty one".into(),
        ));
    }
    let mut columns: std::collections::HashMap<String, Vec<String>> = Default::default();
    let rows = dump::read(input, &mut |row| {
        let (table, extra) = match row.table.split_once('.') {
            Some((chain, t)) => log::target(chain, t),
            None => (row.table.clone(), Vec::new()),
        };
        if !columns.contains_key(&row.table) {
            let names = column_names(&mut tx, &table)?;
            columns.insert(row.table.clone(), names);
        }
        dump::check_columns(
            &row,
            columns.get(&row.table).map(Vec::as_slice).unwrap_or(&[]),
        )?;
        let mut names: Vec<String> = row.cells.iter().map(|(n, _)| n.clone()).collect();
        let mut values: Vec<Cell> = row.cells.into_iter().map(|(_, c)| c).collect();
        for (n, c) in extra {
            names.push(n);
            values.push(c);
        }
        let marks: Vec<String> = (1..=values.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            marks.join(", ")
        );
        let bound: Vec<Bound<'_>> = values.iter().map(Bound).collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        tx.execute(&sql, &params)?;
        Ok(())
    })?;
    for table in SERIAL_TABLES {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'seq'), \
                 COALESCE((SELECT max(seq) FROM {table}), 0) + 1, false)"
            ),
            &[],
        )?;
    }
    log::after_import(&mut tx)?;
    tx.commit()?;
    Ok(rows)
}

/// The columns of a table in the current schema.
fn column_names(c: &mut impl GenericClient, table: &str) -> Result<Vec<String>, StoreError> {
    Ok(c.query(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
        &[&table],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// The access log's tables in the dump (`change.audit_log`, …) and in this database (`audit.rs`'s layout).
use super::audit::dump as log;
