//! Free text that users type and other people read: one set of rules for every field.

/// A request that breaks a rule; shown to the client as 422 `validation_failed`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl InvalidInput {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// How one text field is checked.
#[derive(Clone, Copy, Debug)]
pub struct TextRule {
    pub field: &'static str,
    pub max_chars: usize,
    pub required: bool,
    /// Line breaks are allowed (addresses and notes); other control characters never are.
    pub multiline: bool,
}

impl TextRule {
    pub const fn line(field: &'static str, max_chars: usize) -> Self {
        Self {
            field,
            max_chars,
            required: false,
            multiline: false,
        }
    }

    pub const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    pub const fn multiline(self) -> Self {
        Self {
            multiline: true,
            ..self
        }
    }

    /// The trimmed text, or why it is refused.
    pub fn clean(&self, v: &str) -> Result<String, InvalidInput> {
        let field = self.field;
        let v = v.trim();
        if self.required && v.is_empty() {
            return Err(InvalidInput(format!("{field} is required")));
        }
        if v.chars().count() > self.max_chars {
            return Err(InvalidInput(format!(
                "{field} must be at most {} characters",
                self.max_chars
            )));
        }
        if v.chars()
            .any(|c| c.is_control() && !(self.multiline && c == '\n'))
        {
            return Err(InvalidInput(format!(
                "{field} must not contain control characters"
            )));
        }
        Ok(v.to_string())
    }
}

/// `?limit=`: 1 to 100, default 20 (the contract's list convention).
pub fn page_limit(l: Option<i64>) -> Result<i64, InvalidInput> {
    match l {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(InvalidInput::new("limit must be 1 to 100")),
    }
}

/// `?limit=` as the query string gave it: a value that is not a number is a 422 too.
pub fn page_limit_text(l: Option<&str>) -> Result<i64, InvalidInput> {
    match l {
        None | Some("") => page_limit(None),
        Some(s) => page_limit(Some(
            s.trim()
                .parse::<i64>()
                .map_err(|_| InvalidInput::new("limit must be 1 to 100"))?,
        )),
    }
}

/// The search text of an admin list: trimmed, at most 64 characters; empty means none.
pub fn search_text(q: Option<&str>) -> Result<Option<String>, InvalidInput> {
    let t = SEARCH.clean(q.unwrap_or_default())?;
    Ok(Some(t).filter(|t| !t.is_empty()))
}

const SEARCH: TextRule = TextRule::line("q", 64);

/// `?cursor=` of the admin lists: the id where the previous page stopped.
pub fn id_cursor(c: Option<&str>) -> Result<Option<i64>, InvalidInput> {
    match c {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| InvalidInput::new("invalid cursor")),
    }
}

/// Keeps `limit` rows of `limit + 1` and names the cursor of the next page.
pub fn into_page<R, T>(
    mut rows: Vec<R>,
    limit: i64,
    id: impl Fn(&R) -> i64,
    view: impl Fn(&R) -> T,
) -> crate::orders::Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more {
        rows.last().map(|r| id(r).to_string())
    } else {
        None
    };
    crate::orders::Page {
        items: rows.iter().map(view).collect(),
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let r = TextRule::line("name", 3).required();
        assert_eq!(r.clean("  ab ").ok().as_deref(), Some("ab"));
        assert!(r.clean("   ").is_err());
        assert!(r.clean("abcd").is_err());
        assert!(r.clean("a\nb").is_err());
        assert_eq!(r.multiline().clean("a\nb").ok().as_deref(), Some("a\nb"));
        assert!(r.multiline().clean("a\u{7}").is_err());
        assert_eq!(TextRule::line("x", 10).clean("").ok().as_deref(), Some(""));
    }
}
