//! Query-string parsing for the list endpoints: filters, `pageSize`, `pageToken`, with every
//! problem reported at once and unknown parameters refused (a typo must not silently widen a
//! filter).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::Regex;

use pushgate_core::app::ports::PageRequest;
use pushgate_core::app::{AppError, PageTokens};
use pushgate_core::domain::{AccountId, FieldError, Timestamp};

pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size.
pub const MAX_PAGE_SIZE: usize = 1000;

static TAGS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:[a-zA-Z0-9._~-]+:[a-zA-Z0-9._~-]+;){1,10}$").expect("tags regex"));

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
        self.parsed("tags", "must match ^(?:[a-zA-Z0-9._~-]+:[a-zA-Z0-9._~-]+;){1,10}$", |s| {
            TAGS.is_match(s).then(|| {
                s.split(';')
                    .filter(|p| !p.is_empty())
                    .filter_map(|p| p.split_once(':').map(|(k, v)| (k.to_owned(), v.to_owned())))
                    .collect()
            })
        })
        .unwrap_or_default()
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
    /// `{"next": …, "self": …}` for a page whose next cursor is `next`.
    pub fn json(&self, pages: &PageTokens, account: &AccountId, next: Option<&str>) -> serde_json::Value {
        let next = next.map(|c| pages.seal(account, &self.scope, Some(c)));
        serde_json::json!({ "next": next, "self": self.self_token })
    }
}
