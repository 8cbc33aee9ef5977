//! [`LineIndex`]: the line and column of a byte offset in a text, found by
//! binary search over line starts computed once, so that locating every
//! value of a large file stays linear.

use std::cell::Cell;

/// The start of every line of one text.
#[derive(Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset where each line starts; `starts[0]` is 0.
    starts: Vec<usize>,
    /// The last position located, `(byte offset, column)`: offsets are
    /// mostly asked in document order, so a column is counted from there
    /// instead of from its line's start (one long line stays linear too).
    last: Cell<(usize, usize)>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex {
            text,
            starts,
            last: Cell::new((0, 1)),
        }
    }

    /// The 1-based line and column (in characters) of byte offset `at`;
    /// past the end counts as the end.
    pub fn line_column(&self, at: usize) -> (usize, usize) {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let line = self.starts.partition_point(|s| *s <= at);
        let start = self.starts[line - 1];
        let (last_at, last_col) = self.last.get();
        let column = if last_at >= start && last_at <= at {
            last_col + self.text[last_at..at].chars().count()
        } else {
            self.text[start..at].chars().count() + 1
        };
        self.last.set((at, column));
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        let text = "ab\nçd\n\nx";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_column(0), (1, 1));
        assert_eq!(idx.line_column(2), (1, 3));
        assert_eq!(idx.line_column(3), (2, 1));
        // `ç` is two bytes, one column.
        assert_eq!(idx.line_column(5), (2, 2));
        assert_eq!(idx.line_column(7), (3, 1));
        // Out of order, and past the end.
        assert_eq!(idx.line_column(1), (1, 2));
        assert_eq!(idx.line_column(99), (4, 2));
        // Inside a multi-byte character: its start.
        assert_eq!(idx.line_column(4), (2, 1));
    }

    #[test]
    fn a_large_file_is_located_in_linear_time() {
        // 200k values on one line and on 200k lines: quadratic would not finish.
        let one_line = "x = 1, ".repeat(200_000);
        let idx = LineIndex::new(&one_line);
        for i in 0..200_000 {
            assert_eq!(idx.line_column(i * 7), (1, i * 7 + 1));
        }
        let many = "x = 1\n".repeat(200_000);
        let idx = LineIndex::new(&many);
        for i in 0..200_000 {
            assert_eq!(idx.line_column(i * 6 + 4), (i + 1, 5));
        }
    }
}
