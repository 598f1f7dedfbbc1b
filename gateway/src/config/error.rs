//! Config errors with file positions, and the collector that gathers all of them.

use std::fmt;

use super::model::Position;

/// Most errors kept for one file; the rest are counted in a final summary line.
const MAX_ERRORS: usize = 200;

/// One problem in a config file, at the position of the offending node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to the loader.
    pub file: String,
    /// Line, 1-based (0 when the error is about the file as a whole).
    pub line: usize,
    /// Column, 1-based (0 when the error is about the file as a whole).
    pub column: usize,
    /// What was found and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors while a file is read, so reading can go on after the first one.
#[derive(Debug)]
pub(crate) struct Errors {
    file: String,
    list: Vec<ConfigError>,
    dropped: usize,
}

impl Errors {
    /// An empty collector for `file`.
    pub(crate) fn new(file: &str) -> Errors {
        Errors {
            file: file.to_owned(),
            list: Vec::new(),
            dropped: 0,
        }
    }

    /// Records an error at `at`.
    pub(crate) fn add(&mut self, at: Position, message: impl Into<String>) {
        if self.list.len() >= MAX_ERRORS {
            self.dropped += 1;
            return;
        }
        self.list.push(ConfigError {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            message: message.into(),
        });
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The errors sorted by position, with a summary of any that were dropped.
    pub(crate) fn finish(mut self) -> ConfigErrors {
        self.list.sort_by_key(|e| (e.line, e.column));
        if self.dropped > 0 {
            let message = format!("{} more errors not shown", self.dropped);
            self.list.push(ConfigError {
                file: self.file,
                line: 0,
                column: 0,
                message,
            });
        }
        ConfigErrors(self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_one_error_per_line_sorted_by_position() {
        let mut errs = Errors::new("g.yaml");
        errs.add(Position { line: 3, column: 1 }, "second");
        errs.add(Position { line: 1, column: 5 }, "first");
        let all = errs.finish();
        assert_eq!(all.to_string(), "g.yaml:1:5: first\ng.yaml:3:1: second");
    }

    #[test]
    fn bounds_the_number_of_errors() {
        let mut errs = Errors::new("g.yaml");
        for line in 1..=MAX_ERRORS + 5 {
            errs.add(Position { line, column: 1 }, "bad");
        }
        let all = errs.finish();
        assert_eq!(all.0.len(), MAX_ERRORS + 1);
        assert!(all.0[MAX_ERRORS].message.contains("5 more errors"));
    }
}
