//! FHIR search (FHIR R4 4.0.1, `search.html` §3.1.1): the parameter table, the
//! indexer and the query parser.
//!
//! How a search works in navet:
//! 1. **Parameter table** ([`params`]): which search parameters each served
//!    resource type has, their type and the element paths they read. It is
//!    generated from the official R4 definitions by
//!    `conformance/tools/extract_search_params.py` into
//!    `conformance/search-parameters.json`, embedded in the binary and parsed
//!    once at start-up ([`SearchParams::embedded`]); the result lives in the
//!    shared application state (no global statics). The CapabilityStatement
//!    lists exactly the parameters in this table.
//! 2. **Indexer** ([`index`]): when a resource version is written, the store
//!    calls [`index_resource`] and writes the rows into
//!    `search_index(type, id, param, system, value, lo, hi)`. The module docs of
//!    [`index`] define the row encoding per parameter type; they are the
//!    contract between the indexer and the SQL that reads the rows.
//! 3. **Query parser** ([`query`]): [`parse_query`] turns the decoded query
//!    pairs of a search request into a typed [`SearchQuery`] (filters, sort,
//!    includes, paging and summary options) or a list of [`QueryError`]s, all
//!    reported at once. The store turns a `SearchQuery` into SQL over the
//!    index; `_id` and `_lastUpdated` are answered from the resource columns.
//!
//! Supported parameter types: token, string, reference, date, uri, number,
//! quantity and two-part composites (token$value), on every R4 resource type.
//! Special parameters (`near`) are not in the table, so a query using them
//! fails as an unknown parameter instead of being ignored.
//! 4. **Paging** ([`cursor`]): `_cursor` tokens are signed, bound to the query
//!    and the caller, and name a position (keyset), not an offset.
//! 5. **Subsets** ([`summary`]): `_summary` and `_elements`.

pub mod cursor;
pub mod index;
pub mod params;
pub mod query;
pub mod reindex;
pub mod summary;

pub use index::{IndexRow, index_resource, patient_references};
pub use params::{ParamType, SearchParam, SearchParams};
pub use query::{
    DateCondition, Filter, FilterValue, Include, Modifier, Prefix, QueryError, ReferenceValue,
    SearchQuery, SortKey, TotalMode, date_condition, date_condition_at, parse_query,
};
