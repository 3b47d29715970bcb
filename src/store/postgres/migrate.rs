//! The PostgreSQL schema and its migrations (`navet migrate`, and at every start-up).
//!
//! Each migration is a numbered step applied once, recorded in `navet_migrations`; start-ups of several
//! nodes at once are serialised by an advisory lock, so two nodes never apply the same step.

use postgres::Client;

use crate::store::StoreError;

/// The advisory lock key serialising migrations across nodes ("navet" in ASCII).
const MIGRATION_LOCK: i64 = 0x006e_6176_6574;

/// The steps, in order: (version, what it does, SQL). A step is never changed once released; a change is
/// a new step.
fn steps() -> Vec<(i64, &'static str, String)> {
    vec![(
        1,
        "resources, search index, sharing facts, timeline, outbox, SVPL messages, access log",
        [
            super::resources::SCHEMA,
            super::outbox::SCHEMA,
            super::inbound::SCHEMA,
            super::audit::SCHEMA,
        ]
        .concat(),
    )]
}

/// Connects to `url` and applies every step not yet applied (`navet migrate`); answers the versions applied.
pub fn migrate_url(url: &str) -> Result<Vec<i64>, StoreError> {
    let mut client = super::connect(url)?;
    migrate(&mut client)
}

/// Creates the schema `name` in the database at `url` and answers a URL whose connections use it (tests
/// give each test its own schema in one database; a region could run two navet instances side by side).
/// `name` must be a plain identifier (letters, digits, `_`).
pub fn create_schema(url: &str, name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Open(format!(
            "'{name}' is not a plain schema name"
        )));
    }
    let mut client = super::connect(url)?;
    client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {name}"))?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}options=-csearch_path%3D{name}"))
}

/// Applies every step not yet applied; answers the versions it applied.
pub fn migrate(client: &mut Client) -> Result<Vec<i64>, StoreError> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS navet_migrations (
             version    BIGINT PRIMARY KEY,
             what       TEXT   NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = apply(client);
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
    result
}

fn apply(client: &mut Client) -> Result<Vec<i64>, StoreError> {
    let mut applied = Vec::new();
    for (version, what, sql) in steps() {
        let done = client
            .query_opt(
                "SELECT 1 FROM navet_migrations WHERE version = $1",
                &[&version],
            )?
            .is_some();
        if done {
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(&sql)?;
        tx.execute(
            "INSERT INTO navet_migrations (version, what) VALUES ($1, $2)",
            &[&version, &what],
        )?;
        tx.commit()?;
        applied.push(version);
    }
    Ok(applied)
}
