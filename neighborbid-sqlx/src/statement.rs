//! A write statement built from named pieces: SQL text and the values it
//! binds side by side, the values numbered `$1, $2, ...` as they come
//! (sqlx binds `$n` by number on SQLite too). Unlike sqlx's
//! `QueryBuilder`, it formats nothing: a batch statement of fifty values
//! is rebuilt for every batch, on the hot path.

use neighborbid_core::{StoreError, StoreErrorKind};
use sqlx::{Arguments, Database, Encode, Type};

/// SQL text and its arguments, being built.
pub(crate) struct Statement<'q, DB: Database> {
    sql: String,
    arguments: <DB as Database>::Arguments<'q>,
    count: u32,
    error: Option<String>,
}

impl<'q, DB: Database> Statement<'q, DB> {
    /// A statement starting with `sql`.
    pub(crate) fn new(sql: &str) -> Self {
        let mut text = String::with_capacity(2_048);
        text.push_str(sql);
        Statement {
            sql: text,
            arguments: Default::default(),
            count: 0,
            error: None,
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends the placeholder of `value`, bound to it.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, DB> + Type<DB>,
    {
        if let Err(error) = self.arguments.add(value) {
            self.error.get_or_insert(error.to_string());
        }
        self.count += 1;
        self.sql.push('$');
        push_number(&mut self.sql, self.count);
        self
    }

    /// A comma-separated list of values to bind, continuing the text.
    pub(crate) fn list(&mut self) -> List<'_, 'q, DB> {
        List {
            statement: self,
            first: true,
        }
    }

    /// The SQL text and arguments, or why a value could not be encoded.
    pub(crate) fn finish(self) -> Result<(String, <DB as Database>::Arguments<'q>), StoreError> {
        match self.error {
            Some(error) => Err(StoreError::new(
                StoreErrorKind::Other,
                format!("a value does not encode: {error}"),
            )),
            None => Ok((self.sql, self.arguments)),
        }
    }
}

/// Values being bound as a comma-separated list (see
/// [`Statement::list`]).
pub(crate) struct List<'s, 'q, DB: Database> {
    statement: &'s mut Statement<'q, DB>,
    first: bool,
}

impl<'q, DB: Database> List<'_, 'q, DB> {
    /// Binds the next value of the list.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, DB> + Type<DB>,
    {
        if !self.first {
            self.statement.push(", ");
        }
        self.first = false;
        self.statement.bind(value);
        self
    }

    /// Appends SQL text after the last value (a cast, say).
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.statement.push(sql);
        self
    }
}

/// Appends `n` in decimal.
fn push_number(text: &mut String, n: u32) {
    if n >= 10 {
        push_number(text, n / 10);
    }
    text.push(char::from(b'0' + (n % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Sqlite;

    #[test]
    fn values_are_numbered_as_they_come() {
        let mut statement = Statement::<Sqlite>::new("UPDATE t SET (a, b) = (");
        statement.list().bind(1_i64).bind("x");
        statement.push(") WHERE id = ").bind(7_i64);
        for _ in 0..8 {
            statement.push(", ").bind(0_i64);
        }
        let (sql, arguments) = statement.finish().expect("encodes");
        assert!(sql.starts_with("UPDATE t SET (a, b) = ($1, $2) WHERE id = $3, $4"));
        assert!(sql.ends_with("$10, $11"), "{sql}");
        assert_eq!(arguments.len(), 11);
    }
}
