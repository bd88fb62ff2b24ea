//! The part of BuildKit's shell lexer a FROM line needs: one word, its quotes removed,
//! its escapes applied and its variables substituted (`$V`, `${V}`, `${V:-x}`,
//! `${V-x}`, `${V:+x}`, `${V+x}`, `${V:?msg}`, `${V?msg}`, `${V#p}`, `${V##p}`,
//! `${V%p}`, `${V%%p}`, `${V/p/r}`, `${V//p/r}`).

use std::collections::BTreeMap;

/// Variables in scope: a name present with an empty value is set, an absent one unset.
pub type Variables = BTreeMap<String, String>;

/// Expands one word as BuildKit's `ProcessWord` does.
pub fn expand_word(word: &str, escape: char, variables: &Variables) -> Result<String, String> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        variables,
    };
    lexer.process_until(None, false)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    variables: &'a Variables,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    /// Reads up to `stop` (consumed) or the end; `raw_escapes` keeps escape characters,
    /// as patterns need them to tell a literal `*` from a wildcard.
    fn process_until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<String, String> {
        let mut result = String::new();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok(result);
            }
            match ch {
                '\'' => result.push_str(&self.single_quoted()?),
                '"' => result.push_str(&self.double_quoted()?),
                '$' => result.push_str(&self.dollar()?),
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        // An escape at the very end is dropped.
                        match self.next() {
                            Some(escaped) => result.push(escaped),
                            None => break,
                        }
                    } else {
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok(result),
        }
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut result = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    );
                }
                Some('\'') => return Ok(result),
                Some(ch) => result.push(ch),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut result = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.dollar()?),
                Some(ch) => {
                    self.pos += 1;
                    if ch == self.escape {
                        match self.peek() {
                            None => continue,
                            // Only these can be escaped inside double quotes.
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.pos += 1;
                                result.push(next);
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.value(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut modifier) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        let mut written = modifier.to_string();
        let mut null_is_unset = false;
        if modifier == ':' {
            null_is_unset = true;
            let Some(next) = self.next() else {
                return Err("syntax error: missing '}'".to_string());
            };
            modifier = next;
            written.push(next);
        }
        let value = self.value(&name);
        let is_unset = |value: &Option<String>| match value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match modifier {
            '}' if !null_is_unset => Ok(value.unwrap_or_default()),
            '-' => {
                let word = self.process_until(Some('}'), false)?;
                Ok(if is_unset(&value) {
                    word
                } else {
                    value.unwrap_or_default()
                })
            }
            '+' => {
                let word = self.process_until(Some('}'), false)?;
                Ok(if is_unset(&value) {
                    String::new()
                } else {
                    word
                })
            }
            '?' => {
                let word = self.process_until(Some('}'), false)?;
                match value {
                    None => Err(format!(
                        "{name}: {}",
                        or(word, "is not allowed to be unset")
                    )),
                    Some(v) if null_is_unset && v.is_empty() => Err(format!(
                        "{name}: {}",
                        or(word, "is not allowed to be empty")
                    )),
                    Some(v) => Ok(v),
                }
            }
            '#' | '%' if !null_is_unset => {
                let mut pattern = self.process_until(Some('}'), true)?;
                let longest = pattern.starts_with(modifier);
                if longest {
                    pattern.remove(0);
                }
                let pattern = Pattern::new(&pattern, self.escape);
                let value = value.unwrap_or_default();
                Ok(if modifier == '#' {
                    pattern.trim_prefix(&value, longest)
                } else {
                    pattern.trim_suffix(&value, longest)
                })
            }
            '/' if !null_is_unset => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = self.process_until(Some('/'), true)?;
                let replacement = self.process_until(Some('}'), true)?;
                let pattern = Pattern::new(&pattern, self.escape);
                Ok(pattern.replace(&value.unwrap_or_default(), &replacement, all))
            }
            _ => Err(format!("unsupported modifier ({written}) in substitution")),
        }
    }

    /// A variable name, a run of digits, or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(digit) = self.peek().filter(char::is_ascii_digit) {
                    name.push(digit);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    fn value(&self, name: &str) -> Option<String> {
        self.variables.get(name).cloned()
    }
}

fn or(word: String, fallback: &str) -> String {
    if word.is_empty() {
        fallback.to_string()
    } else {
        word
    }
}

/// A shell pattern (`*`, `?`, escaped literals) for the `#`, `%` and `/` operators.
struct Pattern {
    tokens: Vec<PatternToken>,
}

#[derive(Clone, Copy, PartialEq)]
enum PatternToken {
    Literal(char),
    AnyOne,
    AnyRun,
}

impl Pattern {
    fn new(text: &str, escape: char) -> Pattern {
        let mut tokens = Vec::new();
        let mut chars = text.chars();
        while let Some(ch) = chars.next() {
            tokens.push(match ch {
                '*' => PatternToken::AnyRun,
                '?' => PatternToken::AnyOne,
                _ if ch == escape => match chars.next() {
                    Some(escaped) => PatternToken::Literal(escaped),
                    None => PatternToken::Literal(ch),
                },
                _ => PatternToken::Literal(ch),
            });
        }
        Pattern { tokens }
    }

    fn matches(&self, text: &[char]) -> bool {
        matches_tokens(&self.tokens, text)
    }

    fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut ends: Vec<usize> = (0..=chars.len()).collect();
        if longest {
            ends.reverse();
        }
        match ends.into_iter().find(|&end| self.matches(&chars[..end])) {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut starts: Vec<usize> = (0..=chars.len()).rev().collect();
        if longest {
            starts.reverse();
        }
        match starts
            .into_iter()
            .find(|&start| self.matches(&chars[start..]))
        {
            Some(start) => chars[..start].iter().collect(),
            None => value.to_string(),
        }
    }

    /// Replaces the leftmost-longest match (every non-overlapping one with `all`).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut result = String::new();
        let mut start = 0;
        while start <= chars.len() {
            let found = (start..=chars.len()).find_map(|from| {
                (from..=chars.len())
                    .rev()
                    .find(|&to| to > from && self.matches(&chars[from..to]))
                    .map(|to| (from, to))
            });
            let Some((from, to)) = found else {
                break;
            };
            result.extend(&chars[start..from]);
            result.push_str(replacement);
            start = to;
            if !all {
                break;
            }
        }
        result.extend(chars.get(start..).unwrap_or_default());
        result
    }
}

fn matches_tokens(tokens: &[PatternToken], text: &[char]) -> bool {
    match tokens.split_first() {
        None => text.is_empty(),
        Some((PatternToken::AnyRun, rest)) => {
            (0..=text.len()).any(|skip| matches_tokens(rest, &text[skip..]))
        }
        Some((PatternToken::AnyOne, rest)) => !text.is_empty() && matches_tokens(rest, &text[1..]),
        Some((PatternToken::Literal(ch), rest)) => {
            text.first() == Some(ch) && matches_tokens(rest, &text[1..])
        }
    }
}

/// Splits on unquoted whitespace, keeping quotes and escapes in the words, as BuildKit's
/// lexer does (with raw quotes and raw escapes) when it looks for heredoc markers.
pub fn split_raw_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            word.push(ch);
            if ch == q {
                quote = None;
            } else if ch == '\\' && q == '"' {
                word.extend(chars.next());
            }
            continue;
        }
        if ch.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            continue;
        }
        in_word = true;
        word.push(ch);
        match ch {
            '\'' | '"' => quote = Some(ch),
            '\\' => word.extend(chars.next()),
            _ => {}
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expand(word: &str, pairs: &[(&str, &str)]) -> String {
        expand_word(word, '\\', &vars(pairs)).unwrap()
    }

    #[test]
    fn plain_and_braced_variables() {
        let v = [("IMAGE", "golang"), ("TAG", "1.22")];
        assert_eq!(expand("$IMAGE:$TAG", &v), "golang:1.22");
        assert_eq!(expand("${IMAGE}:${TAG}-alpine", &v), "golang:1.22-alpine");
        assert_eq!(expand("$UNSET:1", &v), ":1");
        assert_eq!(expand("a$", &v), "a$");
        assert_eq!(expand("$IMAGE_x", &v), "");
    }

    #[test]
    fn defaults_and_alternatives_distinguish_unset_from_empty() {
        let v = [("EMPTY", ""), ("SET", "x")];
        assert_eq!(expand("${UNSET:-d}", &v), "d");
        assert_eq!(expand("${EMPTY:-d}", &v), "d");
        assert_eq!(expand("${SET:-d}", &v), "x");
        assert_eq!(expand("${UNSET-d}", &v), "d");
        assert_eq!(expand("${EMPTY-d}", &v), "");
        assert_eq!(expand("${SET-d}", &v), "x");
        assert_eq!(expand("${UNSET:+a}", &v), "");
        assert_eq!(expand("${EMPTY:+a}", &v), "");
        assert_eq!(expand("${SET:+a}", &v), "a");
        assert_eq!(expand("${UNSET+a}", &v), "");
        assert_eq!(expand("${EMPTY+a}", &v), "a");
        assert_eq!(expand("${SET+a}", &v), "a");
    }

    #[test]
    fn defaults_may_hold_variables_and_quotes() {
        let v = [("REG", "localhost:5000")];
        assert_eq!(expand("${BASE:-$REG/base}:2", &v), "localhost:5000/base:2");
        assert_eq!(expand("${BASE:-\"a b\"}", &v), "a b");
    }

    #[test]
    fn required_variables_fail_when_unset() {
        let err = expand_word("${V:?set V}", '\\', &vars(&[])).unwrap_err();
        assert_eq!(err, "V: set V");
        let err = expand_word("${V?}", '\\', &vars(&[])).unwrap_err();
        assert_eq!(err, "V: is not allowed to be unset");
        assert_eq!(expand("${V:?}", &[("V", "ok")]), "ok");
    }

    #[test]
    fn prefix_suffix_and_replacement_operators() {
        let v = [("V", "1.22.3-alpine")];
        assert_eq!(expand("${V%-*}", &v), "1.22.3");
        assert_eq!(expand("${V%.*}", &v), "1.22");
        assert_eq!(expand("${V%%.*}", &v), "1");
        assert_eq!(expand("${V#*.}", &v), "22.3-alpine");
        assert_eq!(expand("${V##*.}", &v), "3-alpine");
        assert_eq!(expand("${V/alpine/slim}", &v), "1.22.3-slim");
        assert_eq!(expand("${V//./_}", &v), "1_22_3-alpine");
    }

    #[test]
    fn quotes_and_escapes_are_removed() {
        assert_eq!(expand("'$V'", &[("V", "x")]), "$V");
        assert_eq!(expand("\"$V\"", &[("V", "x")]), "x");
        assert_eq!(expand("\\$V", &[("V", "x")]), "$V");
        assert_eq!(expand_word("`$V", '`', &vars(&[("V", "x")])).unwrap(), "$V");
    }

    #[test]
    fn malformed_substitutions_are_errors() {
        for bad in [
            "${", "${}", "${:-x}", "${V", "${V:-x", "${V x}", "'open", "\"open",
        ] {
            assert!(expand_word(bad, '\\', &vars(&[])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn raw_words_keep_quotes_together() {
        assert_eq!(
            split_raw_words("RUN echo \"a <<b\" <<EOF 'x y'"),
            vec!["RUN", "echo", "\"a <<b\"", "<<EOF", "'x y'"]
        );
    }
}
