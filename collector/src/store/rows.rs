//! Backend-neutral parameter and row values.

use super::StoreError;

/// A SQL parameter or column value.
#[derive(Clone, Debug, PartialEq)]
pub enum V {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Vec<u8>),
}

impl From<i64> for V {
    fn from(v: i64) -> V {
        V::Int(Some(v))
    }
}
impl From<Option<i64>> for V {
    fn from(v: Option<i64>) -> V {
        V::Int(v)
    }
}
impl From<&str> for V {
    fn from(v: &str) -> V {
        V::Text(Some(v.to_owned()))
    }
}
impl From<String> for V {
    fn from(v: String) -> V {
        V::Text(Some(v))
    }
}
impl From<&String> for V {
    fn from(v: &String) -> V {
        V::Text(Some(v.clone()))
    }
}
impl From<Option<&str>> for V {
    fn from(v: Option<&str>) -> V {
        V::Text(v.map(str::to_owned))
    }
}
impl From<Option<String>> for V {
    fn from(v: Option<String>) -> V {
        V::Text(v)
    }
}
impl From<&[u8]> for V {
    fn from(v: &[u8]) -> V {
        V::Bytes(v.to_vec())
    }
}

/// One result row with typed, checked accessors.
#[derive(Clone, Debug)]
pub struct Row {
    pub table: &'static str,
    pub cols: Vec<V>,
}

impl Row {
    fn col(&self, i: usize) -> Result<&V, StoreError> {
        self.cols.get(i).ok_or_else(|| StoreError::Corrupt {
            table: self.table,
            reason: format!("column {i} missing"),
        })
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.col(i)? {
            V::Int(v) => Ok(*v),
            V::Text(None) => Ok(None),
            other => Err(self.bad(i, "integer", other)),
        }
    }

    pub fn i64(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_i64(i)?.ok_or_else(|| StoreError::Corrupt {
            table: self.table,
            reason: format!("column {i} is NULL, expected an integer"),
        })
    }

    pub fn u64(&self, i: usize) -> Result<u64, StoreError> {
        let v = self.i64(i)?;
        u64::try_from(v).map_err(|_| StoreError::Corrupt {
            table: self.table,
            reason: format!("column {i} is {v}, expected a non-negative integer"),
        })
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.col(i)? {
            V::Text(v) => Ok(v.clone()),
            V::Int(None) => Ok(None),
            other => Err(self.bad(i, "text", other)),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| StoreError::Corrupt {
            table: self.table,
            reason: format!("column {i} is NULL, expected text"),
        })
    }

    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.col(i)? {
            V::Bytes(b) => Ok(b.clone()),
            other => Err(self.bad(i, "bytes", other)),
        }
    }

    fn bad(&self, i: usize, want: &str, got: &V) -> StoreError {
        let kind = match got {
            V::Int(_) => "integer",
            V::Text(_) => "text",
            V::Bytes(_) => "bytes",
        };
        StoreError::Corrupt {
            table: self.table,
            reason: format!("column {i} is {kind}, expected {want}"),
        }
    }

    /// Parses a text column with `parse`, naming the column on failure.
    pub fn parsed<T>(
        &self,
        i: usize,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let s = self.text(i)?;
        parse(&s).ok_or_else(|| StoreError::Corrupt {
            table: self.table,
            reason: format!("column {i}: {s:?} is not a valid {what}"),
        })
    }
}

/// A transaction: run statements, read rows.
pub trait Tx {
    /// Runs a statement; returns the number of rows changed.
    fn exec(&mut self, sql: &str, params: &[V]) -> Result<u64, StoreError>;
    /// Runs a query; every column is read as [`V`].
    fn query(
        &mut self,
        table: &'static str,
        sql: &str,
        params: &[V],
    ) -> Result<Vec<Row>, StoreError>;
}

/// A database the SQL store can run on.
pub trait Backend: Send + Sync + 'static {
    /// Runs `f` in one transaction; commits when it returns Ok, rolls back otherwise.
    /// Write transactions that call [`Backend::lock_sql`] are serialised across replicas.
    fn transaction(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs a read-only `f` where it does not hold up writers (SQLite: a separate reader
    /// connection on the WAL snapshot). The default is an ordinary transaction.
    fn read(
        &self,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.transaction(f)
    }
    /// A statement taking the global write lock (audit chain, rollouts) inside a transaction.
    fn lock_sql(&self) -> Option<&'static str>;
    /// SQL fragment for the current backend where dialects differ.
    fn dialect(&self) -> Dialect;

    /// Run first in a report's read transaction (PostgreSQL: no JIT — compiling a report's
    /// plan cost 0.45 s of each 90-day query in the fleet bench, more than it saved).
    fn report_setup_sql(&self) -> Option<&'static str> {
        None
    }

    /// Ingests share transactions (group commit, `group_commit.rs`): a store with one
    /// writer (SQLite) writes every batch queued behind the running transaction in the next
    /// one, so they share one fsync. The default: one transaction per batch.
    fn group_commit(&self) -> bool {
        false
    }

    /// Copies committed write-ahead log frames into the database file on a connection other
    /// than the writer's (SQLite, `wal.rs`); `None`: the backend keeps no such log itself.
    fn checkpoint_wal(&self) -> Result<Option<super::wal::WalCheckpoint>, StoreError> {
        Ok(None)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}
