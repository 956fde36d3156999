//! AUTH, connection side (nsqd 1.3.0's `internal/auth`, NSQ.md §1.4): what a connection asks
//! ([`Query`]), the answer it keeps ([`AuthState`]) and where it asks ([`AuthServer`], the
//! `--auth-http-address` servers, reached over HTTP by `app::auth`).
//!
//! - [`AuthState`]: the answer `{"ttl":…,"identity":…,"identity_url":…,"authorizations":
//!   [{"topic":<regex>,"channels":[<regex>…],"permissions":["subscribe","publish"]}]}`, with
//!   nsqd's rule ([`AuthState::is_allowed`]): a channel needs `subscribe`, a publish (channel
//!   `""`) `publish`; the topic regex must match and some channel regex must match the channel
//!   (so a publish needs a channel regex that matches `""`). Regexes match anywhere in the name
//!   (Go's `MatchString`). Each (topic, channel) is decided once per state and then cached, so
//!   the publish path pays a hash lookup.
//!
//! A slow or broken auth server holds up only the connection that is asking.

use regex::Regex;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// Most (topic, channel) decisions cached per state.
const DECISIONS_CACHED_MAX: usize = 4096;

/// Where a connection's AUTH secret is checked (nsqd's `QueryAnyAuthd`). Any status but 200,
/// an answer that is not valid ([`AuthState::from_answer`]) or no answer in time is an error;
/// its text goes to the log only (the client sees `E_AUTH_FAILED AUTH failed`).
pub trait AuthServer: std::fmt::Debug {
    fn query<'a>(
        &'a self,
        q: &'a Query<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<AuthState, String>> + 'a>>;
}

/// What the auth server is told about the connection.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The client's IP ("" on a unix socket).
    pub remote_ip: &'a str,
    pub tls: bool,
    /// The client certificate's common name ("" without one).
    pub common_name: &'a str,
    pub secret: &'a str,
}

/// The auth server's answer, as Go's `encoding/json` reads it (absent and `null` are empty).
#[derive(Debug, Default, serde::Deserialize)]
struct Answer {
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    authorizations: Option<Vec<AnswerAuthorization>>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    identity_url: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AnswerAuthorization {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

/// Who the auth server says a client is (`/stats` `auth_identity`, `auth_identity_url`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthIdentity {
    pub identity: String,
    pub url: String,
}

/// One grant: a topic regex, channel regexes, and what it allows.
#[derive(Debug)]
struct Authorization {
    topic: Regex,
    channels: Vec<Regex>,
    subscribe: bool,
    publish: bool,
}

impl Authorization {
    fn is_allowed(&self, topic: &str, channel: &str) -> bool {
        let permitted = if channel.is_empty() {
            self.publish
        } else {
            self.subscribe
        };
        permitted && self.topic.is_match(topic) && self.channels.iter().any(|c| c.is_match(channel))
    }
}

/// A connection's authorisations, valid until their TTL runs out.
#[derive(Debug)]
pub struct AuthState {
    pub identity: String,
    pub identity_url: String,
    authorizations: Vec<Authorization>,
    expires: Instant,
    decisions: RefCell<HashMap<(String, String), bool>>,
}

fn compile(what: &str, re: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|e| format!("unable to compile {what} {re:?} {e}"))
}

impl AuthState {
    /// Validates an answer as nsqd does (module docs).
    pub fn from_answer(body: &[u8]) -> Result<Self, String> {
        let answer: Answer =
            serde_json::from_slice(body).map_err(|e| format!("bad answer: {e}"))?;
        let mut authorizations = Vec::new();
        for a in answer.authorizations.unwrap_or_default() {
            let (mut subscribe, mut publish) = (false, false);
            for p in a.permissions.unwrap_or_default() {
                match p.as_str() {
                    "subscribe" => subscribe = true,
                    "publish" => publish = true,
                    other => return Err(format!("unknown permission {other}")),
                }
            }
            let topic = compile("topic", a.topic.as_deref().unwrap_or_default())?;
            let channels = a
                .channels
                .unwrap_or_default()
                .iter()
                .map(|c| compile("channel", c))
                .collect::<Result<_, _>>()?;
            authorizations.push(Authorization {
                topic,
                channels,
                subscribe,
                publish,
            });
        }
        let ttl = answer.ttl.unwrap_or(0);
        let ttl_s = u64::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .ok_or_else(|| format!("invalid TTL {ttl} (must be >0)"))?;
        Ok(Self {
            identity: answer.identity.unwrap_or_default(),
            identity_url: answer.identity_url.unwrap_or_default(),
            authorizations,
            expires: Instant::now() + Duration::from_secs(ttl_s),
            decisions: RefCell::new(HashMap::new()),
        })
    }

    pub fn identity(&self) -> AuthIdentity {
        AuthIdentity {
            identity: self.identity.clone(),
            url: self.identity_url.clone(),
        }
    }

    /// nsqd's `HasAuthorizations`.
    pub fn has_authorizations(&self) -> bool {
        !self.authorizations.is_empty()
    }

    pub fn permission_count(&self) -> usize {
        self.authorizations.len()
    }

    pub fn is_expired(&self) -> bool {
        self.expires <= Instant::now()
    }

    /// Whether some authorisation allows `channel` of `topic` (`""` = publish).
    pub fn is_allowed(&self, topic: &str, channel: &str) -> bool {
        let key = (topic.to_owned(), channel.to_owned());
        if let Some(&allowed) = self.decisions.borrow().get(&key) {
            return allowed;
        }
        let allowed = self
            .authorizations
            .iter()
            .any(|a| a.is_allowed(topic, channel));
        let mut decisions = self.decisions.borrow_mut();
        if decisions.len() >= DECISIONS_CACHED_MAX {
            decisions.clear();
        }
        decisions.insert(key, allowed);
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> Result<AuthState, String> {
        AuthState::from_answer(json.as_bytes())
    }

    #[test]
    fn nsqd_rules() {
        let s = state(
            r#"{"ttl":60,"identity":"u","identity_url":"http://u","authorizations":[
                {"topic":"^t.*","channels":["^c$"],"permissions":["subscribe"]},
                {"topic":"pub","channels":[".*"],"permissions":["publish"]}]}"#,
        )
        .unwrap();
        assert_eq!((s.identity.as_str(), s.permission_count()), ("u", 2));
        assert!(s.is_allowed("topic", "c"));
        assert!(!s.is_allowed("topic", "d"), "channel regex");
        assert!(!s.is_allowed("topic", ""), "no publish grant");
        assert!(s.is_allowed("pub", ""));
        assert!(s.is_allowed("xpubx", ""), "regexes match anywhere");
        assert!(!s.is_allowed("pub", "c"), "no subscribe grant");
        assert!(!s.is_expired());
        // A publish-only grant whose channels cannot match "" allows nothing.
        let s = state(r#"{"ttl":1,"authorizations":[{"topic":".*","channels":["x"],"permissions":["publish"]}]}"#)
            .unwrap();
        assert!(!s.is_allowed("t", ""));
    }

    #[test]
    fn bad_answers() {
        for (json, want) in [
            (r#"{"ttl":0}"#, "invalid TTL 0 (must be >0)"),
            (r#"{"authorizations":null}"#, "invalid TTL 0 (must be >0)"),
            (
                r#"{"ttl":1,"authorizations":[{"topic":"t","permissions":["admin"]}]}"#,
                "unknown permission admin",
            ),
            (
                r#"{"ttl":1,"authorizations":[{"topic":"(","permissions":[]}]}"#,
                "unable to compile topic \"(\"",
            ),
        ] {
            let err = state(json).unwrap_err();
            assert!(err.starts_with(want), "{json}: {err}");
        }
        assert!(state("not json").is_err());
        assert!(!state(r#"{"ttl":5}"#).unwrap().has_authorizations());
    }
}
