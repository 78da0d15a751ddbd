//! Query-string parsing for the list endpoints: filters, `pageSize`, `pageToken`, with every
//! problem reported at once and unknown parameters refused (a typo must not silently widen a
//! filter).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use pushgate_core::app::ports::PageRequest;
use pushgate_core::app::{AppError, PageTokens};
use pushgate_core::domain::{AccountId, FieldError, Timestamp};

use crate::dto::Pagination;

pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The `tags` filter: 1 to 10 `key:value;` pairs of unreserved URL characters
/// (`^(?:[a-zA-Z0-9._~-]+:[a-zA-Z0-9._~-]+;){1,10}$`).
fn parse_tags(value: &str) -> Option<Vec<(String, String)>> {
    let unreserved =
        |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
    let pairs: Vec<&str> = value.strip_suffix(';')?.split(';').collect();
    if pairs.len() > 10 {
        return None;
    }
    pairs
        .into_iter()
        .map(|pair| {
            let (key, tag) = pair.split_once(':')?;
            (unreserved(key) && unreserved(tag)).then(|| (key.to_owned(), tag.to_owned()))
        })
        .collect()
}

/// A parsed query string.
pub struct ListQuery {
    params: BTreeMap<String, String>,
    errors: Vec<FieldError>,
    scope: String,
}

impl ListQuery {
    /// Parses `pairs` for the listing `route`, allowing only `allowed` filters (plus paging).
    pub fn new(route: &str, pairs: Vec<(String, String)>, allowed: &[&str]) -> Self {
        let mut params = BTreeMap::new();
        let mut errors = Vec::new();
        for (k, v) in pairs {
            if !allowed.contains(&k.as_str()) && k != "pageSize" && k != "pageToken" {
                errors.push(FieldError::new(
                    k,
                    format!("is not a filter of this list (allowed: {})", allowed.join(", ")),
                ));
            } else if params.insert(k.clone(), v).is_some() {
                errors.push(FieldError::new(k, "may be given only once"));
            }
        }
        // The token is bound to the listing and its filters, not to paging parameters.
        let filters: Vec<String> = params
            .iter()
            .filter(|(k, _)| *k != "pageSize" && *k != "pageToken")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let scope = format!("{route}?{}", filters.join("&"));
        Self { params, errors, scope }
    }

    /// A raw parameter.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Records an error unless the parameter `name` is given (a filter the list cannot do without).
    pub fn require(&mut self, name: &str) {
        if !self.params.contains_key(name) {
            self.errors.push(FieldError::new(name, "is required"));
        }
    }

    /// A parameter parsed with `parse`, or an error naming it.
    pub fn parsed<T>(&mut self, name: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let raw = self.params.get(name)?;
        match parse(raw) {
            Some(v) => Some(v),
            None => {
                self.errors.push(FieldError::new(name, expected.to_owned()));
                None
            }
        }
    }

    /// `startDate`/`endDate`-style date-time.
    pub fn date(&mut self, name: &str) -> Option<Timestamp> {
        self.parsed(name, "must be an RFC 3339 date-time", |s| {
            DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
        })
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        self.parsed(name, "must be true or false", |s| match s {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    /// The `tags` filter: `k:v;k:v;`.
    pub fn tags(&mut self) -> Vec<(String, String)> {
        self.parsed("tags", "must match ^(?:[a-zA-Z0-9._~-]+:[a-zA-Z0-9._~-]+;){1,10}$", parse_tags).unwrap_or_default()
    }

    /// Finishes parsing: the page request, or every error found.
    pub fn finish(mut self, pages: &PageTokens, account: &AccountId) -> Result<(PageRequest, Paging), AppError> {
        let size = self
            .parsed("pageSize", "must be an integer from 1 to 1000", |s| {
                s.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            })
            .unwrap_or(DEFAULT_PAGE_SIZE);
        let token = self.params.get("pageToken").cloned();
        let cursor = match &token {
            None => None,
            Some(t) => match pages.open(account, &self.scope, t) {
                Some(cursor) => cursor,
                None => {
                    self.errors.push(FieldError::new(
                        "pageToken",
                        "is not a valid page token for this list and these filters",
                    ));
                    None
                }
            },
        };
        if !self.errors.is_empty() {
            return Err(AppError::Validation(self.errors));
        }
        let self_token = token.unwrap_or_else(|| pages.seal(account, &self.scope, None));
        Ok((PageRequest { size, cursor }, Paging { scope: self.scope, self_token }))
    }
}

/// What is needed to build the `pagination` object of the answer.
pub struct Paging {
    scope: String,
    self_token: String,
}

impl Paging {
    /// The `pagination` of a page whose next cursor is `next`.
    pub fn pagination(self, pages: &PageTokens, account: &AccountId, next: Option<&str>) -> Pagination {
        let next = next.map(|c| pages.seal(account, &self.scope, Some(c)));
        Pagination { next, this: self.self_token }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_tags;

    #[test]
    fn tags_are_one_to_ten_key_value_pairs_of_unreserved_characters_each_ended_by_a_semicolon() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(parse_tags("a:b;"), Some(vec![pair("a", "b")]));
        assert_eq!(
            parse_tags("flight:PG1;gate.x~-_:A-1;"),
            Some(vec![pair("flight", "PG1"), pair("gate.x~-_", "A-1")])
        );
        let ten = "k:v;".repeat(10);
        assert_eq!(parse_tags(&ten).map(|t| t.len()), Some(10));
        for bad in ["", ";", "a:b", "a:;", ":b;", "a:b:c;", "a b:c;", "a:b;;", "a:é;", "a%20:b;", &"k:v;".repeat(11)] {
            assert_eq!(parse_tags(bad), None, "{bad:?}");
        }
    }
}
