//! The query string of a health check: `lag`, `replication_state` and
//! `tag_<key>=<value>`. Other parameters are ignored, as Patroni does, and so
//! is a `lag` that is no byte count (`?lag=10mb`): Patroni reads it as no
//! limit, and a check that answered 400 instead would take every replica
//! out of its load balancer over one typo.

use std::borrow::Cow;

/// The parameters a health check understands. Borrows from the query string
/// unless a value had to be percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthQuery<'a> {
    /// `?lag=`: the most bytes a replica may be behind. The first one wins.
    pub max_lag: Option<u64>,
    /// A `?lag=` that is no byte count, ignored (see the module's comment),
    /// and why, for the log.
    pub ignored_lag: Option<String>,
    /// `?mode=write`: `/readiness` judges the lag by the WAL received, not
    /// replayed (Patroni 4).
    pub lag_by_received: bool,
    /// `?replication_state=streaming`: the replica must be streaming.
    pub require_streaming: bool,
    /// `?tag_<key>=<value>`, first value per key, in order of appearance.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// A query parameter whose value cannot be used. Answered with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{param}`: {reason}")]
pub struct QueryError {
    /// The parameter's name as it appeared in the query string.
    pub param: String,
    pub reason: String,
}

impl QueryError {
    fn new(param: &str, reason: String) -> Self {
        QueryError {
            param: param.to_owned(),
            reason,
        }
    }
}

const TAG_PREFIX: &str = "tag_";

/// Parses the query string of a health check (without the `?`). `None` or an
/// empty string gives the default query without allocating.
pub fn parse_query(raw: Option<&str>) -> Result<HealthQuery<'_>, QueryError> {
    let mut query = HealthQuery::default();
    let Some(raw) = raw else {
        return Ok(query);
    };
    for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key).map_err(|reason| QueryError::new(raw_key, reason))?;
        let value = || decode(raw_value).map_err(|reason| QueryError::new(&key, reason));
        if key == "lag" {
            if query.max_lag.is_none() && query.ignored_lag.is_none() {
                match value().and_then(|v| parse_bytes(&v).map_err(|e| QueryError::new(&key, e))) {
                    Ok(lag) => query.max_lag = Some(lag),
                    Err(err) => query.ignored_lag = Some(err.to_string()),
                }
            }
        } else if key == "mode" {
            // As Patroni: `write`, or anything else meaning `apply`.
            query.lag_by_received |= value()? == "write";
        } else if key == "replication_state" {
            let state = value()?;
            if state != "streaming" {
                return Err(QueryError::new(
                    &key,
                    format!("only `streaming` is supported, got `{state}`"),
                ));
            }
            query.require_streaming = true;
        } else if let Some(tag) = strip_tag_prefix(&key)
            && !query.tags.iter().any(|(seen, _)| *seen == tag)
        {
            let value = value()?;
            query.tags.push((tag, value));
        }
    }
    Ok(query)
}

fn strip_tag_prefix<'a>(key: &Cow<'a, str>) -> Option<Cow<'a, str>> {
    match key {
        Cow::Borrowed(key) => key.strip_prefix(TAG_PREFIX).map(Cow::Borrowed),
        Cow::Owned(key) => key
            .strip_prefix(TAG_PREFIX)
            .map(|tag| Cow::Owned(tag.to_owned())),
    }
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a
/// space, `%XX` a byte; the result must be UTF-8.
fn decode(raw: &str) -> Result<Cow<'_, str>, String> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| format!("`{raw}` has a malformed percent-escape"))?;
                out.push(byte);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| format!("`{raw}` does not decode to UTF-8"))
}

/// Units PostgreSQL (and Patroni's `parse_int(.., 'B')`) accept for bytes.
const UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("kB", 1 << 10),
    ("MB", 1 << 20),
    ("GB", 1 << 30),
    ("TB", 1 << 40),
];

/// Parses a byte count: a non-negative integer, optionally followed by a
/// unit (`B`, `kB`, `MB`, `GB`, `TB`; powers of 1024, case as PostgreSQL
/// writes them), e.g. `1048576`, `1024kB`, `16 MB`.
fn parse_bytes(value: &str) -> Result<u64, String> {
    let trimmed = value.trim();
    let digits_end = trimmed
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let unit = unit.trim_start();
    let invalid = || {
        format!(
            "expected a byte count (an integer, optionally followed by B, kB, MB, GB or TB), \
             got `{value}`"
        )
    };
    if digits.is_empty() {
        return Err(invalid());
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, multiplier)| multiplier)
            .ok_or_else(invalid)?
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{value}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(raw: &str) -> Result<Option<u64>, QueryError> {
        parse_query(Some(raw)).map(|q| q.max_lag)
    }

    #[test]
    fn no_query_is_the_default() {
        assert_eq!(parse_query(None), Ok(HealthQuery::default()));
        assert_eq!(parse_query(Some("")), Ok(HealthQuery::default()));
    }

    #[test]
    fn lag_accepts_plain_bytes_and_postgres_units() {
        assert_eq!(lag("lag=0"), Ok(Some(0)));
        assert_eq!(lag("lag=1048576"), Ok(Some(1 << 20)));
        assert_eq!(lag("lag=100B"), Ok(Some(100)));
        assert_eq!(lag("lag=1024kB"), Ok(Some(1 << 20)));
        assert_eq!(lag("lag=1MB"), Ok(Some(1 << 20)));
        assert_eq!(lag("lag=16+MB"), Ok(Some(16 << 20)));
        assert_eq!(lag("lag=16%20MB"), Ok(Some(16 << 20)));
        assert_eq!(lag("lag=1GB"), Ok(Some(1 << 30)));
        assert_eq!(lag("lag=2TB"), Ok(Some(2 << 40)));
        assert_eq!(lag("lag=5&lag=7"), Ok(Some(5)), "the first lag wins");
    }

    #[test]
    fn a_lag_that_is_no_byte_count_is_ignored_and_named() {
        for bad in [
            "lag=abc",
            "lag=",
            "lag",
            "lag=-1",
            "lag=1.5MB",
            "lag=10mb",
            "lag=1XB",
            "lag=99999999999999999999",
            "lag=20000000TB",
            "lag=%zz",
        ] {
            let query = parse_query(Some(bad)).expect(bad);
            assert_eq!(query.max_lag, None, "{bad}");
            let why = query.ignored_lag.expect(bad);
            assert!(why.contains("`lag`"), "{why}");
        }
        // The first lag decides, whether it is used or ignored.
        let query = parse_query(Some("lag=10mb&lag=5")).unwrap();
        assert_eq!((query.max_lag, query.ignored_lag.is_some()), (None, true));
        let query = parse_query(Some("lag=5&lag=10mb")).unwrap();
        assert_eq!((query.max_lag, query.ignored_lag), (Some(5), None));
    }

    #[test]
    fn tags_are_collected_decoded_first_value_wins() {
        let q = parse_query(Some(
            "tag_zone=eu%2Dwest&lag=1&tag_rack=a+b&tag_zone=us&other=x",
        ))
        .unwrap();
        let tags: Vec<(&str, &str)> = q
            .tags
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(tags, [("zone", "eu-west"), ("rack", "a b")]);
        assert_eq!(q.max_lag, Some(1));
    }

    #[test]
    fn replication_state_only_streaming() {
        assert!(
            parse_query(Some("replication_state=streaming"))
                .unwrap()
                .require_streaming
        );
        let err = parse_query(Some("replication_state=catchup")).unwrap_err();
        assert_eq!(err.param, "replication_state");
    }

    #[test]
    fn unknown_parameters_are_ignored() {
        assert_eq!(
            parse_query(Some("mode=apply&&x")),
            Ok(HealthQuery::default())
        );
        assert!(parse_query(Some("mode=write")).unwrap().lag_by_received);
    }
}
