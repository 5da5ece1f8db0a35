//! The recordings library: its database (SQLite by default, PostgreSQL when one machine is not
//! enough). Indexing and the HTTP API over it build on this.

pub mod db;

pub use db::{Backend, Database, DbError};
