//! Binding the shared query builders' neutral arguments to PostgreSQL, and their `?` placeholders as `$n`.
//!
//! The search, read and audit builders (`store/search_sql`, `read_sql.rs`, `audit_sql.rs`) produce SQL text
//! with `?` placeholders and a list of [`Arg`]s, which SQLite binds as they are. Here the placeholders are
//! renumbered ([`numbered`]) and each argument is encoded as the type PostgreSQL inferred for its parameter
//! (the [`ToSql`] impl below), so one builder serves both backends.

use std::error::Error;

use bytes::BytesMut;
use std::sync::Arc;

use postgres::GenericClient;
use postgres::Row;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::store::arg::Arg;
use crate::store::search_sql::Reader;
use crate::store::{StoreError, StoredVersion};

/// `sql` with SQLite's placeholders in PostgreSQL's form: `?NNN` becomes `$NNN`, and a bare `?` becomes one
/// more than the largest number given so far (SQLite's rule, https://sqlite.org/lang_expr.html#varparam), so
/// a run of bare `?`s is `$1, $2, …`.
///
/// Every `?` is a placeholder: navet's SQL has none inside string literals, comments or operators.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len().saturating_add(16));
    let mut last: u64 = 0;
    let mut rest = sql;
    while let Some(at) = rest.find('?') {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        // `from` starts with the one-byte '?'.
        let after = from.get(1..).unwrap_or("");
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let (number, tail) = after.split_at(digits);
        out.push('$');
        if number.is_empty() {
            last = last.saturating_add(1);
            out.push_str(&last.to_string());
        } else {
            // A number too large to parse is passed on as written: PostgreSQL refuses the statement.
            if let Ok(n) = number.parse::<u64>() {
                last = last.max(n);
            }
            out.push_str(number);
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// An argument is bound as whatever type PostgreSQL inferred for its parameter (`accepts` is always true),
/// as SQLite binds any value anywhere: an integer as INT2/INT4/INT8 (refused when it does not fit, never
/// truncated), FLOAT8 (when exact) or as decimal text; text as any text type; NULL as any type. What cannot
/// be bound this way is an error of the statement, never a panic.
impl ToSql for Arg {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Integer(v) => integer_to_sql(*v, ty, out),
            Arg::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            Arg::Text(_) => Err(format!("a text argument cannot be bound as {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The largest magnitude every integer up to which an f64 holds exactly (2^53).
const F64_EXACT: i64 = 1 << 53;

fn integer_to_sql(
    v: i64,
    ty: &Type,
    out: &mut BytesMut,
) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
    let out_of_range = || format!("the integer {v} is out of range for {ty}");
    match *ty {
        Type::INT8 => v.to_sql(ty, out),
        Type::INT4 => i32::try_from(v)
            .map_err(|_| out_of_range())?
            .to_sql(ty, out),
        Type::INT2 => i16::try_from(v)
            .map_err(|_| out_of_range())?
            .to_sql(ty, out),
        // Within ±2^53 the conversion is exact.
        Type::FLOAT8 if (-F64_EXACT..=F64_EXACT).contains(&v) => (v as f64).to_sql(ty, out),
        Type::FLOAT8 => Err(out_of_range().into()),
        // SQLite compares an integer with a TEXT column as its decimal text (column affinity).
        _ if <&str as ToSql>::accepts(ty) => v.to_string().as_str().to_sql(ty, out),
        _ => Err(format!("an integer argument cannot be bound as {ty}").into()),
    }
}

/// At most this many statements' parameter types are remembered (the builders make a statement per shape of
/// query, e.g. per length of an `IN` list; past this, a statement is prepared each time it runs).
const TYPES_CACHED: usize = 4096;

/// The parameter types PostgreSQL inferred for each statement text (`$n` form), learnt once per process by
/// preparing the statement. Every connection sees the same tables (one schema version after `migrate`), so
/// the types hold for all of them.
static TYPES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, Arc<[Type]>>>,
> = std::sync::LazyLock::new(Default::default);

fn param_types(c: &mut impl GenericClient, sql: &str) -> Result<Arc<[Type]>, StoreError> {
    if let Some(types) = TYPES.lock().ok().and_then(|m| m.get(sql).cloned()) {
        return Ok(types);
    }
    let types: Arc<[Type]> = c.prepare(sql)?.params().into();
    if let Ok(mut cache) = TYPES.lock()
        && cache.len() < TYPES_CACHED
    {
        cache.insert(sql.to_owned(), types.clone());
    }
    Ok(types)
}

/// `args` with the statement's parameter types, for `query_typed`: one round trip per statement instead of
/// three (prepare, execute, close), which is most of a read's time on a network database.
fn typed<'a>(
    types: &[Type],
    args: &'a [Arg],
) -> Result<Vec<(&'a (dyn ToSql + Sync), Type)>, StoreError> {
    if types.len() != args.len() {
        return Err(StoreError::Corrupt(format!(
            "a statement with {} parameters was given {} arguments",
            types.len(),
            args.len()
        )));
    }
    Ok(args
        .iter()
        .zip(types)
        .map(|(a, t)| (a as &(dyn ToSql + Sync), t.clone()))
        .collect())
}

/// Runs `sql` (`?` placeholders) with `args`; answers every row.
pub fn query(c: &mut impl GenericClient, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
    let sql = numbered(sql);
    let types = param_types(c, &sql)?;
    Ok(c.query_typed(&sql, &typed(&types, args)?)?)
}

/// Runs `sql` (`?` placeholders) with `args`; answers the first row, if any (as SQLite's `query_row`: more
/// rows are no error).
pub fn query_first(
    c: &mut impl GenericClient,
    sql: &str,
    args: &[Arg],
) -> Result<Option<Row>, StoreError> {
    Ok(query(c, sql, args)?.into_iter().next())
}

/// Runs a statement (`?` placeholders) with `args`; answers how many rows it changed.
pub fn execute(c: &mut impl GenericClient, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
    let sql = numbered(sql);
    let types = param_types(c, &sql)?;
    Ok(c.execute_typed(&sql, &typed(&types, args)?)?)
}

/// A version from `SELECT v.type, v.id, v.version, v.last_updated, v.owner, v.deleted, v.json, c.protected`
/// (`v` resource_versions, `c` resources_current; the flags are BIGINT 0/1).
pub fn row_to_version(r: &Row) -> Result<StoredVersion, StoreError> {
    Ok(StoredVersion {
        resource_type: r.try_get(0)?,
        id: r.try_get(1)?,
        version: r.try_get(2)?,
        last_updated: r.try_get(3)?,
        owner: r.try_get(4)?,
        deleted: r.try_get::<_, i64>(5)? != 0,
        json: r.try_get(6)?,
        protected: r.try_get::<_, i64>(7)? != 0,
    })
}

/// The shared read statements (`search_sql`, `read_sql`) on a PostgreSQL client or transaction.
pub(crate) struct Pg<'a, C: GenericClient>(pub &'a mut C);

impl<C: GenericClient> Reader for Pg<'_, C> {
    fn versions(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<StoredVersion>, StoreError> {
        query(self.0, sql, &args)?
            .iter()
            .map(row_to_version)
            .collect()
    }

    fn versions_with_text(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<(StoredVersion, Option<String>)>, StoreError> {
        query(self.0, sql, &args)?
            .iter()
            .map(|r| Ok((row_to_version(r)?, r.try_get(8)?)))
            .collect()
    }

    fn versions_with_integer(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<(StoredVersion, i64)>, StoreError> {
        query(self.0, sql, &args)?
            .iter()
            .map(|r| Ok((row_to_version(r)?, r.try_get(8)?)))
            .collect()
    }

    fn texts(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<String>, StoreError> {
        query(self.0, sql, &args)?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    fn integer(&mut self, sql: &str, args: Vec<Arg>) -> Result<i64, StoreError> {
        match query_first(self.0, sql, &args)? {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(StoreError::Corrupt(format!("no row from {sql}"))),
        }
    }

    fn exists(&mut self, sql: &str, args: Vec<Arg>) -> Result<bool, StoreError> {
        Ok(query_first(self.0, sql, &args)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bare_placeholders_are_numbered_in_order() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4"
        );
        assert_eq!(numbered(""), "");
        assert_eq!(numbered("?"), "$1");
        assert_eq!(numbered("??"), "$1$2");
    }

    #[test]
    fn numbered_placeholders_keep_their_number_and_bare_ones_follow_the_largest() {
        assert_eq!(
            numbered("WHERE c.type = ?1 AND c.id = ?2 AND x = ? AND y = ?1"),
            "WHERE c.type = $1 AND c.id = $2 AND x = $3 AND y = $1"
        );
        assert_eq!(numbered("?3 ? ?1 ?"), "$3 $4 $1 $5");
        // Too large to be a parameter: passed on for PostgreSQL to refuse, not a panic.
        assert_eq!(
            numbered("?99999999999999999999999 ?"),
            "$99999999999999999999999 $1"
        );
    }

    #[test]
    fn multibyte_text_around_placeholders_is_kept() {
        assert_eq!(numbered("å = ?ä ö?1ü"), "å = $1ä ö$1ü");
    }

    fn encode(arg: &Arg, ty: &Type) -> Result<(IsNull, Vec<u8>), String> {
        let mut out = BytesMut::new();
        arg.to_sql_checked(ty, &mut out)
            .map(|n| (n, out.to_vec()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_bind_as_the_inferred_integer_type_and_refuse_what_does_not_fit() {
        let big = Arg::Integer(i64::from(i32::MAX) + 1);
        assert_eq!(
            encode(&Arg::Integer(7), &Type::INT8).map(|e| e.1),
            Ok(7i64.to_be_bytes().to_vec())
        );
        assert_eq!(
            encode(&Arg::Integer(7), &Type::INT4).map(|e| e.1),
            Ok(7i32.to_be_bytes().to_vec())
        );
        assert_eq!(
            encode(&Arg::Integer(-7), &Type::INT2).map(|e| e.1),
            Ok((-7i16).to_be_bytes().to_vec())
        );
        assert!(encode(&big, &Type::INT4).is_err());
        assert!(encode(&Arg::Integer(40_000), &Type::INT2).is_err());
        assert_eq!(
            encode(&Arg::Integer(3), &Type::FLOAT8).map(|e| e.1),
            Ok(3f64.to_be_bytes().to_vec())
        );
        assert!(encode(&Arg::Integer(i64::MAX), &Type::FLOAT8).is_err());
        assert_eq!(
            encode(&Arg::Integer(-12), &Type::TEXT).map(|e| e.1),
            Ok(b"-12".to_vec())
        );
        assert!(encode(&Arg::Integer(1), &Type::BOOL).is_err());
    }

    #[test]
    fn text_binds_as_any_text_type_and_null_as_anything() {
        for ty in [
            Type::TEXT,
            Type::VARCHAR,
            Type::NAME,
            Type::BPCHAR,
            Type::UNKNOWN,
        ] {
            assert_eq!(
                encode(&Arg::Text("Patient/1".into()), &ty).map(|e| e.1),
                Ok(b"Patient/1".to_vec())
            );
        }
        assert!(encode(&Arg::Text("1".into()), &Type::INT8).is_err());
        for ty in [Type::INT8, Type::TEXT, Type::BOOL, Type::JSONB] {
            assert!(matches!(encode(&Arg::Null, &ty), Ok((IsNull::Yes, _))));
        }
    }

    proptest! {
        #[test]
        fn numbering_never_panics_and_replaces_exactly_the_placeholders(sql in any::<String>()) {
            let out = numbered(&sql);
            prop_assert_eq!(out.matches('$').count(), sql.matches('?').count() + sql.matches('$').count());
            prop_assert!(!out.contains('?'));
            // Apart from the placeholders and their numbers, the text is unchanged.
            let rest = |t: &str| t.replace(|c: char| c == '?' || c == '$' || c.is_ascii_digit(), "");
            prop_assert_eq!(rest(&out), rest(&sql));
        }

        #[test]
        fn text_without_placeholders_is_unchanged(sql in "[^?]*") {
            prop_assert_eq!(numbered(&sql), sql);
        }

        #[test]
        fn bare_placeholders_between_arbitrary_text_count_up(parts in proptest::collection::vec("[^?0-9]*", 1..8)) {
            let sql = parts.join("?");
            let mut want = parts.first().cloned().unwrap_or_default();
            for (i, p) in parts.iter().enumerate().skip(1) {
                want.push_str(&format!("${i}{p}"));
            }
            prop_assert_eq!(numbered(&sql), want);
        }

        #[test]
        fn any_integer_binds_or_is_refused_as_any_type(v in any::<i64>()) {
            for ty in [Type::INT2, Type::INT4, Type::INT8, Type::FLOAT8, Type::TEXT, Type::NUMERIC, Type::BOOL] {
                let _ = encode(&Arg::Integer(v), &ty);
            }
            prop_assert_eq!(encode(&Arg::Integer(v), &Type::INT8).map(|e| e.1), Ok(v.to_be_bytes().to_vec()));
        }
    }
}
