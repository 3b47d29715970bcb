//! Binding the search builders' neutral arguments to PostgreSQL, and their `?` placeholders as `$n`.
