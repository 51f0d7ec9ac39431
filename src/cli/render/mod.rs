//! Renders an analysis [`Report`](crate::cli::report::Report) or the catalogue as text.

pub mod sarif;
pub mod table;

use serde::Serialize;

use crate::cli::error::{Error, Result};

/// The terminal width the table output is laid out for.
pub const WIDTH: usize = 100;

pub fn json(value: &impl Serialize) -> Result<String> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| Error::Serialize(Box::new(e)))?;
    text.push('\n');
    Ok(text)
}

pub fn yaml(value: &impl Serialize) -> Result<String> {
    serde_saphyr::to_string(value).map_err(|e| Error::Serialize(Box::new(e)))
}

/// Greedy word wrap: the first line starts with `first`, the others with `indent`, and none is
/// longer than `width` characters (a word longer than a line is cut).
pub fn wrap(text: &str, width: usize, first: &str, indent: &str) -> Vec<String> {
    wrap_words(text.split_whitespace(), " ", width, first, indent)
}

/// [`wrap`] for words given one by one and joined by `separator`.
pub fn wrap_words<'a>(
    words: impl IntoIterator<Item = &'a str>,
    separator: &str,
    width: usize,
    first: &str,
    indent: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    let room = |line: &str| width.saturating_sub(line.chars().count());
    for word in words {
        let needed = word.chars().count() + if empty { 0 } else { separator.len() };
        if !empty && needed > room(&line) {
            lines.push(std::mem::replace(&mut line, indent.to_string()));
            empty = true;
        }
        let mut word = word;
        loop {
            if !empty {
                line.push_str(separator);
            }
            let fits = room(&line).max(1);
            match word.char_indices().nth(fits) {
                None => {
                    line.push_str(word);
                    empty = false;
                    break;
                }
                Some((cut, _)) => {
                    line.push_str(&word[..cut]);
                    lines.push(std::mem::replace(&mut line, indent.to_string()));
                    empty = true;
                    word = &word[cut..];
                }
            }
        }
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_words_and_indents() {
        let lines = wrap("aaa bbb ccc ddd", 10, "> ", "  ");
        assert_eq!(lines, ["> aaa bbb", "  ccc ddd"]);
    }

    #[test]
    fn cuts_long_words() {
        let lines = wrap("abcdefghijkl", 6, "", "  ");
        assert_eq!(lines, ["abcdef", "  ghij", "  kl"]);
        assert!(lines.iter().all(|l| l.chars().count() <= 6));
    }

    #[test]
    fn empty_text_is_the_prefix() {
        assert_eq!(wrap("", 10, "x", " "), ["x"]);
    }
}
