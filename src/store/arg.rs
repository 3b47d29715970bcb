//! A bound SQL value in neither backend's types: the search and audit query builders produce SQL text with
//! `?` placeholders and a list of these, which each backend binds with its own driver (`sqlite.rs`,
//! `postgres/sql.rs`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Null,
    Integer(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Integer(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
