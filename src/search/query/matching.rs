//! How a parsed filter matches index rows: [`Filter::matches_rows`], the reference semantics the store's
//! SQL reproduces, and the date prefixes as conditions on a row's `lo`/`hi` ([`date_condition`]). Separate
//! from parsing: the store reads this side only.

use super::{Filter, FilterValue, Modifier, Prefix, RowMatch, ValueMatch};
use crate::search::index::{EXACT_SUFFIX, IDENTIFIER_SUFFIX, IndexRow, TEXT_SUFFIX};
use crate::search::params::ParamType;
impl RowMatch {
    pub(super) fn value(system: Option<Option<String>>, value: ValueMatch) -> Self {
        RowMatch {
            system,
            value: Some(value),
            range: None,
        }
    }

    /// Whether an index row satisfies the condition (the reference semantics the SQL reproduces).
    pub fn matches(&self, row: &IndexRow) -> bool {
        let system_ok = match &self.system {
            None => true,
            Some(wanted) => row.system == *wanted,
        };
        let value_ok = match &self.value {
            None => true,
            Some(ValueMatch::Equals(v)) => row.value == *v,
            Some(ValueMatch::StartsWith(v)) => row.value.starts_with(v.as_str()),
        };
        let range_ok = match (&self.range, row.lo, row.hi) {
            (None, _, _) => true,
            (Some((prefix, lo, hi)), Some(row_lo), Some(row_hi)) => {
                date_condition(*prefix, *lo, *hi).matches(row_lo, row_hi)
            }
            _ => false,
        };
        system_ok && value_ok && range_ok
    }
}
impl Filter {
    /// The `param` of the index rows this filter reads (see
    /// [`crate::search::index`]): `P:text` for token `:text`, `P:exact` for
    /// string `:exact`, `P:identifier` for reference `:identifier`, else `P`.
    pub fn index_param(&self) -> String {
        match (self.kind, &self.modifier) {
            (ParamType::Token, Some(Modifier::Text)) => format!("{}{TEXT_SUFFIX}", self.param),
            (ParamType::String, Some(Modifier::Exact)) => format!("{}{EXACT_SUFFIX}", self.param),
            (ParamType::Reference, Some(Modifier::Identifier)) => {
                format!("{}{IDENTIFIER_SUFFIX}", self.param)
            }
            _ => self.param.clone(),
        }
    }

    /// The row `param`s whose presence means the resource has a value for
    /// this parameter (for `:missing`).
    pub fn presence_params(&self) -> Vec<String> {
        match self.kind {
            ParamType::Token => vec![self.param.clone(), format!("{}{TEXT_SUFFIX}", self.param)],
            ParamType::Reference => vec![
                self.param.clone(),
                format!("{}{IDENTIFIER_SUFFIX}", self.param),
            ],
            _ => vec![self.param.clone()],
        }
    }

    /// Whether a resource with these index rows matches this filter: the
    /// reference semantics of the index encoding, which the store's SQL must
    /// reproduce. Not meaningful for `_id` and `_lastUpdated`, which have no
    /// rows (the store matches them on its columns).
    pub fn matches_rows(&self, rows: &[IndexRow]) -> bool {
        if self.modifier == Some(Modifier::Missing) {
            let present_params = self.presence_params();
            let present = rows.iter().any(|row| present_params.contains(&row.param));
            return self.values.iter().any(
                |value| matches!(value, FilterValue::Missing(missing) if *missing != present),
            );
        }
        let index_param = self.index_param();
        let any = self.values.iter().any(|value| {
            rows.iter()
                .filter(|row| row.param == index_param)
                .any(|row| self.value_matches(value, row))
        });
        if self.modifier == Some(Modifier::Not) {
            !any
        } else {
            any
        }
    }

    fn value_matches(&self, value: &FilterValue, row: &IndexRow) -> bool {
        match value {
            FilterValue::Token { system, code } => {
                let system_ok = match system {
                    None => true,
                    Some(wanted) => row.system == *wanted,
                };
                system_ok && code.as_ref().is_none_or(|code| row.value == *code)
            }
            FilterValue::String(text) => match self.modifier {
                Some(Modifier::Exact) => row.value == *text,
                Some(Modifier::Contains) => row.value.contains(text.as_str()),
                _ => row.value.starts_with(text.as_str()),
            },
            FilterValue::Reference(reference) => reference.matches(&row.value),
            FilterValue::Date { prefix, lo, hi } => match (row.lo, row.hi) {
                (Some(row_lo), Some(row_hi)) => {
                    date_condition(*prefix, *lo, *hi).matches(row_lo, row_hi)
                }
                _ => false,
            },
            FilterValue::Uri(uri) => match self.modifier {
                Some(Modifier::Below) => row.value.starts_with(uri.as_str()),
                Some(Modifier::Above) => uri.starts_with(row.value.as_str()),
                _ => row.value == *uri,
            },
            FilterValue::Missing(_) => false,
            FilterValue::Row(m) => m.matches(row),
        }
    }
}

/// The `lo` or `hi` column of a date index row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateColumn {
    Lo,
    Hi,
}

/// A comparison of a column with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Lt,
    Le,
    Gt,
    Ge,
}

/// `column op value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateBound {
    pub column: DateColumn,
    pub op: Comparison,
    pub value: i64,
}

/// A condition on a date row's `lo`/`hi`, in disjunctive normal form: the
/// row matches when all bounds of at least one group hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateCondition {
    pub any_of: Vec<Vec<DateBound>>,
}

impl DateCondition {
    /// Whether a row covering `lo..=hi` satisfies the condition.
    pub fn matches(&self, lo: i64, hi: i64) -> bool {
        self.any_of.iter().any(|group| {
            group.iter().all(|bound| {
                let column = match bound.column {
                    DateColumn::Lo => lo,
                    DateColumn::Hi => hi,
                };
                match bound.op {
                    Comparison::Lt => column < bound.value,
                    Comparison::Le => column <= bound.value,
                    Comparison::Gt => column > bound.value,
                    Comparison::Ge => column >= bound.value,
                }
            })
        })
    }

    /// SQL for the condition, with `?` placeholders and the values to bind
    /// in order, e.g. `((lo >= ? AND hi <= ?) OR (hi > ?))`. Column names are
    /// the caller's (trusted) identifiers.
    pub fn to_sql(&self, lo_column: &str, hi_column: &str) -> (String, Vec<i64>) {
        let mut binds = Vec::new();
        let groups: Vec<String> = self
            .any_of
            .iter()
            .map(|group| {
                let bounds: Vec<String> = group
                    .iter()
                    .map(|bound| {
                        binds.push(bound.value);
                        let column = match bound.column {
                            DateColumn::Lo => lo_column,
                            DateColumn::Hi => hi_column,
                        };
                        let op = match bound.op {
                            Comparison::Lt => "<",
                            Comparison::Le => "<=",
                            Comparison::Gt => ">",
                            Comparison::Ge => ">=",
                        };
                        format!("{column} {op} ?")
                    })
                    .collect();
                format!("({})", bounds.join(" AND "))
            })
            .collect();
        (format!("({})", groups.join(" OR ")), binds)
    }
}

/// The condition on an index row's range `[lo_r, hi_r]` for a search value
/// `prefix` + range `[lo, hi]` (FHIR R4 4.0.1 search.html#prefix; all
/// bounds inclusive, milliseconds):
///
/// | prefix | row matches when |
/// |---|---|
/// | `eq` | `lo_r >= lo AND hi_r <= hi` (the search range contains the row's) |
/// | `ne` | `lo_r < lo OR hi_r > hi` (not `eq`) |
/// | `gt` | `hi_r > hi` (the row reaches past the search range) |
/// | `lt` | `lo_r < lo` (the row starts before it) |
/// | `ge` | `hi_r > hi OR (lo_r >= lo AND hi_r <= hi)` (`gt` or `eq`) |
/// | `le` | `lo_r < lo OR (lo_r >= lo AND hi_r <= hi)` (`lt` or `eq`) |
/// | `sa` | `lo_r > hi` (starts after) |
/// | `eb` | `hi_r < lo` (ends before) |
/// | `ap` | `lo_r <= hi + d AND hi_r >= lo - d` (overlaps the widened range) |
///
/// For `ap`, `d` is 10 % of the gap between now and the search range, as
/// FHIR recommends; [`date_condition_at`] takes "now" explicitly.
pub fn date_condition(prefix: Prefix, lo: i64, hi: i64) -> DateCondition {
    date_condition_at(prefix, lo, hi, jiff::Timestamp::now().as_millisecond())
}

/// [`date_condition`] with an explicit "now" (ms since the epoch) for `ap`.
pub fn date_condition_at(prefix: Prefix, lo: i64, hi: i64, now_ms: i64) -> DateCondition {
    use Comparison::{Ge, Gt, Le, Lt};
    use DateColumn::{Hi, Lo};
    let bound = |column, op, value| DateBound { column, op, value };
    let within = vec![bound(Lo, Ge, lo), bound(Hi, Le, hi)];
    let any_of = match prefix {
        Prefix::Eq => vec![within],
        Prefix::Ne => vec![vec![bound(Lo, Lt, lo)], vec![bound(Hi, Gt, hi)]],
        Prefix::Gt => vec![vec![bound(Hi, Gt, hi)]],
        Prefix::Lt => vec![vec![bound(Lo, Lt, lo)]],
        Prefix::Ge => vec![vec![bound(Hi, Gt, hi)], within],
        Prefix::Le => vec![vec![bound(Lo, Lt, lo)], within],
        Prefix::Sa => vec![vec![bound(Lo, Gt, hi)]],
        Prefix::Eb => vec![vec![bound(Hi, Lt, lo)]],
        Prefix::Ap => {
            let gap = if now_ms < lo {
                lo.saturating_sub(now_ms)
            } else if now_ms > hi {
                now_ms.saturating_sub(hi)
            } else {
                0
            };
            let margin = gap / 10;
            vec![vec![
                bound(Lo, Le, hi.saturating_add(margin)),
                bound(Hi, Ge, lo.saturating_sub(margin)),
            ]]
        }
    };
    DateCondition { any_of }
}
