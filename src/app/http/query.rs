//! Query strings as Go's `url.ParseQuery` reads them (nsqd takes every parameter from the query
//! string, never from a form body): `&`-separated `key=value` pairs, `+` is a space, `%XX` an
//! escaped byte. A `;` in a pair, or a bad `%` escape, makes the whole query invalid (nsqd
//! answers `400 INVALID_REQUEST`). Pure; tested below.

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError;

impl Query {
    pub fn parse(raw: &str) -> Result<Self, QueryError> {
        let mut pairs = Vec::new();
        let mut failed = false;
        for part in raw.split('&') {
            if part.is_empty() {
                continue;
            }
            if part.contains(';') {
                failed = true;
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match (unescape(k), unescape(v)) {
                (Some(k), Some(v)) => pairs.push((k, v)),
                _ => failed = true,
            }
        }
        if failed {
            Err(QueryError)
        } else {
            Ok(Self { pairs })
        }
    }

    /// The first value of `key` (Go's `reqParams.Get`), `None` when the key is absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Go's `QueryUnescape`.
fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parse_query() {
        let q = Query::parse("topic=a+b&topic=x&channel=%41&empty=&flag").unwrap_or_default();
        assert_eq!(q.get("topic"), Some("a b"));
        assert_eq!(q.get("channel"), Some("A"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::parse("a=1;b=2"), Err(QueryError));
        assert_eq!(Query::parse("a=%zz"), Err(QueryError));
        assert_eq!(Query::parse("a=%4"), Err(QueryError));
        assert_eq!(Query::parse(""), Ok(Query::default()));
    }
}
