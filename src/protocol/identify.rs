//! IDENTIFY's JSON: parsing the request, applying it to a client's settings with nsqd's
//! validations, negotiating features, and the response JSON.
//!
//! Request decoding follows Go's `encoding/json` into `identifyDataV2`: keys match field names
//! case-insensitively (Unicode simple folding: `ſ` matches `s`, `K` (Kelvin) matches `k`);
//! unknown keys (`short_id`, `long_id`, `topology_zone`, ...) are ignored; a `null` value
//! leaves the field as it was; for a repeated key the last one wins; a top-level `null` is an
//! empty request; any type mismatch (a float or a string for an int, an int out of `int64` /
//! `int32` range, a number for a string) or a syntax error is `E_BAD_BODY IDENTIFY failed to
//! decode JSON body`. Invalid UTF-8 inside strings becomes U+FFFD as in Go. Known differences:
//! `serde_json` refuses nesting deeper than 128 (Go allows 10000) and lone UTF-16 surrogate
//! escapes (`"\ud800"`, Go substitutes U+FFFD), and it reads `-0` as a float, so an int field
//! given `-0` is refused (Go: 0). No real client sends any of these.
//!
//! Then, in Go's order (`clientV2.Identify`): heartbeat interval, output buffer timeout,
//! output buffer size, sample rate, msg timeout — each `E_BAD_BODY IDENTIFY <what> (%d) is
//! invalid`. Then only if `feature_negotiation`: the features (TLS, snappy, deflate) are on
//! where the client asked and the server supports them; snappy and deflate both on →
//! `E_IDENTIFY_FAILED cannot enable both deflate and snappy compression`. Go only checks that
//! for features it would actually enable, so a server started with `--snappy=false
//! --deflate=false` answers `false` for both and carries on (TLS is always `false` here: not
//! built yet).

use crate::protocol::error::ErrorCode;
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::error::ProtocolError;
use super::limits::Limits;

/// The version nsqd reports (`version.Binary`); clients parse it as semver.
pub const NSQD_VERSION: &str = "1.3.0";

/// An IDENTIFY body as sent, Go field semantics: 0 / false / `None` where the key was absent
/// or `null` (0 means "keep the current value" for the numeric settings).
#[allow(clippy::struct_excessive_bools)] // mirrors Go's identifyDataV2 field for field
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentifyRequest {
    pub client_id: Option<String>,
    pub hostname: Option<String>,
    pub user_agent: Option<String>,
    pub feature_negotiation: bool,
    pub heartbeat_interval_ms: i64,
    pub output_buffer_size: i64,
    pub output_buffer_timeout_ms: i64,
    pub tls_v1: bool,
    pub snappy: bool,
    pub deflate: bool,
    pub deflate_level: i64,
    pub sample_rate: i32,
    pub msg_timeout_ms: i64,
}

/// Parses an IDENTIFY body (see the module docs for the exact JSON semantics).
pub fn parse_identify(body: &[u8]) -> Result<IdentifyRequest, ProtocolError> {
    let text = String::from_utf8_lossy(body);
    let mut de = serde_json::Deserializer::from_str(&text);
    let parsed = IdentifyRequest::deserialize(&mut de).and_then(|req| de.end().map(|()| req));
    parsed.map_err(|_| {
        ProtocolError::fatal(ErrorCode::BadBody, "IDENTIFY failed to decode JSON body")
    })
}

#[derive(Clone, Copy)]
enum Field {
    ClientId,
    Hostname,
    UserAgent,
    FeatureNegotiation,
    HeartbeatInterval,
    OutputBufferSize,
    OutputBufferTimeout,
    TlsV1,
    Snappy,
    Deflate,
    DeflateLevel,
    SampleRate,
    MsgTimeout,
}

const FIELDS: &[(&str, Field)] = &[
    ("client_id", Field::ClientId),
    ("hostname", Field::Hostname),
    ("user_agent", Field::UserAgent),
    ("feature_negotiation", Field::FeatureNegotiation),
    ("heartbeat_interval", Field::HeartbeatInterval),
    ("output_buffer_size", Field::OutputBufferSize),
    ("output_buffer_timeout", Field::OutputBufferTimeout),
    ("tls_v1", Field::TlsV1),
    ("snappy", Field::Snappy),
    ("deflate", Field::Deflate),
    ("deflate_level", Field::DeflateLevel),
    ("sample_rate", Field::SampleRate),
    ("msg_timeout", Field::MsgTimeout),
];

/// Go's case-insensitive field match for an all-ASCII lowercase field name.
fn fold_eq(key: &str, field: &str) -> bool {
    let mut key_chars = key.chars();
    for f in field.chars() {
        let Some(k) = key_chars.next() else {
            return false;
        };
        let same = k.to_ascii_lowercase() == f
            || (f == 's' && k == '\u{17f}')
            || (f == 'k' && k == '\u{212a}');
        if !same {
            return false;
        }
    }
    key_chars.next().is_none()
}

fn field_of(key: &str) -> Option<Field> {
    FIELDS
        .iter()
        .find(|(name, _)| fold_eq(key, name))
        .map(|&(_, f)| f)
}

impl<'de> Deserialize<'de> for IdentifyRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = IdentifyRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an IDENTIFY JSON object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(IdentifyRequest::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut req = IdentifyRequest::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let Some(field) = field_of(&key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            set_field(&mut req, field, &mut map)?;
        }
        Ok(req)
    }
}

fn set_field<'de, A: MapAccess<'de>>(
    req: &mut IdentifyRequest,
    field: Field,
    map: &mut A,
) -> Result<(), A::Error> {
    fn keep<T>(slot: &mut T, value: Option<T>) {
        if let Some(v) = value {
            *slot = v;
        }
    }
    match field {
        Field::ClientId => keep(
            &mut req.client_id,
            map.next_value::<Option<String>>()?.map(Some),
        ),
        Field::Hostname => keep(
            &mut req.hostname,
            map.next_value::<Option<String>>()?.map(Some),
        ),
        Field::UserAgent => keep(
            &mut req.user_agent,
            map.next_value::<Option<String>>()?.map(Some),
        ),
        Field::FeatureNegotiation => keep(&mut req.feature_negotiation, map.next_value()?),
        Field::HeartbeatInterval => keep(&mut req.heartbeat_interval_ms, map.next_value()?),
        Field::OutputBufferSize => keep(&mut req.output_buffer_size, map.next_value()?),
        Field::OutputBufferTimeout => keep(&mut req.output_buffer_timeout_ms, map.next_value()?),
        Field::TlsV1 => keep(&mut req.tls_v1, map.next_value()?),
        Field::Snappy => keep(&mut req.snappy, map.next_value()?),
        Field::Deflate => keep(&mut req.deflate, map.next_value()?),
        Field::DeflateLevel => keep(&mut req.deflate_level, map.next_value()?),
        Field::SampleRate => keep(&mut req.sample_rate, map.next_value()?),
        Field::MsgTimeout => keep(&mut req.msg_timeout_ms, map.next_value()?),
    }
    Ok(())
}

/// A client's IDENTIFY-controlled settings (Go `clientV2` fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySettings {
    /// Defaults to the remote IP; an IDENTIFY sets it to `client_id`, or "" when absent (as Go).
    pub client_id: String,
    /// Defaults to the remote IP; an IDENTIFY sets it to `hostname`, or "" when absent.
    pub hostname: String,
    /// "" until IDENTIFY.
    pub user_agent: String,
    /// `None` = heartbeats disabled (and no read deadline).
    pub heartbeat_interval: Option<Duration>,
    /// Bytes of output buffering; 1 = effectively unbuffered.
    pub output_buffer_size: usize,
    /// `None` = no timed flush (flush on every write).
    pub output_buffer_timeout: Option<Duration>,
    /// 0 = deliver every message, else deliver when `rand(0..100) <= sample_rate`.
    pub sample_rate: u8,
    /// In-flight timeout of messages sent to this client.
    pub msg_timeout: Duration,
}

/// Default output buffer size of a client (Go `defaultBufferSize`).
pub const OUTPUT_BUFFER_SIZE_DEFAULT_BYTES: usize = 16 * 1024;

impl IdentifySettings {
    /// A new connection's settings, before any IDENTIFY (Go `newClientV2`).
    pub fn defaults(limits: &Limits, remote_ip: &str) -> Self {
        Self {
            client_id: remote_ip.to_owned(),
            hostname: remote_ip.to_owned(),
            user_agent: String::new(),
            heartbeat_interval: Some(default_heartbeat_interval(limits)),
            output_buffer_size: OUTPUT_BUFFER_SIZE_DEFAULT_BYTES,
            output_buffer_timeout: nonzero(Duration::from_millis(limits.output_buffer_timeout_ms)),
            sample_rate: 0,
            msg_timeout: Duration::from_millis(limits.msg_timeout_ms),
        }
    }
}

/// IDENTIFY's smallest `heartbeat_interval`.
const HEARTBEAT_INTERVAL_MIN_MS: u64 = 1000;

/// A new connection's heartbeat interval: nsqd's `ClientTimeout / 2` (30 s), but no longer
/// than `--max-heartbeat-interval` (nsqd keeps 30 s even then; ringsq holds every connection
/// to the operator's bound, which also bounds its read deadline), and at least 1 s.
pub fn default_heartbeat_interval(limits: &Limits) -> Duration {
    let max = limits
        .max_heartbeat_interval_ms
        .max(HEARTBEAT_INTERVAL_MIN_MS);
    Duration::from_millis((limits.client_timeout_ms / 2).min(max))
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn invalid(what: &str, value: impl fmt::Display) -> ProtocolError {
    ProtocolError::fatal(
        ErrorCode::BadBody,
        format!("IDENTIFY {what} ({value}) is invalid"),
    )
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Applies an IDENTIFY to `current` with nsqd's validations, in Go's order (module docs).
pub fn resolve_identify(
    req: &IdentifyRequest,
    current: &IdentifySettings,
    limits: &Limits,
) -> Result<IdentifySettings, ProtocolError> {
    let max = Limits::as_i64;
    let mut s = current.clone();
    s.client_id = req.client_id.clone().unwrap_or_default();
    s.hostname = req.hostname.clone().unwrap_or_default();
    s.user_agent = req.user_agent.clone().unwrap_or_default();
    s.heartbeat_interval = match req.heartbeat_interval_ms {
        -1 => None,
        0 => s.heartbeat_interval,
        ms if (1000..=max(limits.max_heartbeat_interval_ms)).contains(&ms) => Some(millis(ms)),
        ms => return Err(invalid("heartbeat interval", ms)),
    };
    let min_timeout = max(limits.min_output_buffer_timeout_ms);
    s.output_buffer_timeout = match req.output_buffer_timeout_ms {
        -1 => None,
        0 => s.output_buffer_timeout,
        ms if (min_timeout..=max(limits.max_output_buffer_timeout_ms)).contains(&ms) => {
            nonzero(millis(ms))
        }
        ms => return Err(invalid("output buffer timeout", ms)),
    };
    match req.output_buffer_size {
        -1 => {
            s.output_buffer_size = 1;
            s.output_buffer_timeout = None;
        }
        0 => {}
        size if (64..=max(limits.max_output_buffer_size)).contains(&size) => {
            s.output_buffer_size =
                usize::try_from(size).map_err(|_| invalid("output buffer size", size))?;
        }
        size => return Err(invalid("output buffer size", size)),
    }
    s.sample_rate = u8::try_from(req.sample_rate)
        .ok()
        .filter(|rate| *rate <= 99)
        .ok_or_else(|| invalid("sample rate", req.sample_rate))?;
    s.msg_timeout = match req.msg_timeout_ms {
        0 => s.msg_timeout,
        ms if (1000..=max(limits.max_msg_timeout_ms)).contains(&ms) => millis(ms),
        ms => return Err(invalid("msg timeout", ms)),
    };
    Ok(s)
}

/// What the server can do, for feature negotiation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerFeatures {
    /// A TLS certificate and key are configured.
    pub tls: bool,
    /// `--snappy` and an implementation.
    pub snappy: bool,
    /// `--deflate` and an implementation.
    pub deflate: bool,
}

/// The features agreed for a connection that asked for `feature_negotiation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub tls_v1: bool,
    pub snappy: bool,
    pub deflate: bool,
    /// Reported even when deflate is off: 6, or the client's level, capped at `--max-deflate-level`.
    pub deflate_level: u8,
}

/// Negotiates features (Go `IDENTIFY` after `client.Identify`); only call it when
/// `req.feature_negotiation` is true (otherwise nsqd answers a plain `OK`).
pub fn negotiate(
    req: &IdentifyRequest,
    server: ServerFeatures,
    limits: &Limits,
) -> Result<Negotiated, ProtocolError> {
    let tls_v1 = server.tls && req.tls_v1;
    let deflate = server.deflate && req.deflate;
    let snappy = server.snappy && req.snappy;
    let mut level: i64 = 6;
    if deflate && req.deflate_level > 0 {
        level = req.deflate_level;
    }
    let level = level.min(i64::from(limits.max_deflate_level));
    let deflate_level = u8::try_from(level).unwrap_or(limits.max_deflate_level);
    if deflate && snappy {
        return Err(ProtocolError::fatal(
            ErrorCode::IdentifyFailed,
            "cannot enable both deflate and snappy compression",
        ));
    }
    Ok(Negotiated {
        tls_v1,
        snappy,
        deflate,
        deflate_level,
    })
}

/// The negotiation response, byte for byte as Go's `json.Marshal` writes it (13 fields, this
/// order, no spaces).
pub fn identify_response_json(
    settings: &IdentifySettings,
    negotiated: &Negotiated,
    limits: &Limits,
    auth_required: bool,
) -> Vec<u8> {
    let timeout_ms = settings.output_buffer_timeout.map_or(0, |d| d.as_millis());
    format!(
        concat!(
            "{{\"max_rdy_count\":{},\"version\":\"{}\",\"max_msg_timeout\":{},\"msg_timeout\":{},",
            "\"tls_v1\":{},\"deflate\":{},\"deflate_level\":{},\"max_deflate_level\":{},",
            "\"snappy\":{},\"sample_rate\":{},\"auth_required\":{},\"output_buffer_size\":{},",
            "\"output_buffer_timeout\":{}}}"
        ),
        limits.max_rdy_count,
        NSQD_VERSION,
        limits.max_msg_timeout_ms,
        settings.msg_timeout.as_millis(),
        negotiated.tls_v1,
        negotiated.deflate,
        negotiated.deflate_level,
        limits.max_deflate_level,
        negotiated.snappy,
        settings.sample_rate,
        auth_required,
        settings.output_buffer_size,
        timeout_ms,
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD_JSON: &str = "E_BAD_BODY IDENTIFY failed to decode JSON body";

    fn parse(json: &str) -> Result<IdentifyRequest, String> {
        parse_identify(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_like_go_encoding_json() {
        let req = parse(
            r#"{"client_id":"c","hostname":"h","user_agent":"ua","feature_negotiation":true,
               "heartbeat_interval":30000,"output_buffer_size":16384,"output_buffer_timeout":250,
               "tls_v1":false,"snappy":true,"deflate":false,"deflate_level":6,"sample_rate":10,
               "msg_timeout":60000,"short_id":"s","long_id":"l","topology_zone":null,"x":[{"y":1}]}"#,
        )
        .unwrap();
        assert_eq!(req.client_id.as_deref(), Some("c"));
        assert_eq!(req.user_agent.as_deref(), Some("ua"));
        assert!(req.feature_negotiation && req.snappy && !req.tls_v1);
        assert_eq!(
            (
                req.heartbeat_interval_ms,
                req.output_buffer_size,
                req.output_buffer_timeout_ms
            ),
            (30000, 16384, 250)
        );
        assert_eq!(
            (req.deflate_level, req.sample_rate, req.msg_timeout_ms),
            (6, 10, 60000)
        );
    }

    #[test]
    fn go_json_corner_cases() {
        assert_eq!(parse("null").unwrap(), IdentifyRequest::default());
        assert_eq!(parse(" {} ").unwrap(), IdentifyRequest::default());
        let folded =
            parse(r#"{"CLIENT_ID":"a","Feature_Negotiation":true,"ſample_rate":5}"#).unwrap();
        assert_eq!(folded.client_id.as_deref(), Some("a"));
        assert!(folded.feature_negotiation);
        assert_eq!(folded.sample_rate, 5);
        let nulls = parse(r#"{"client_id":null,"sample_rate":null,"tls_v1":null}"#).unwrap();
        assert_eq!(nulls, IdentifyRequest::default());
        let last_wins =
            parse(r#"{"client_id":"a","Client_Id":"b","msg_timeout":1,"msg_timeout":2}"#).unwrap();
        assert_eq!(last_wins.client_id.as_deref(), Some("b"));
        assert_eq!(last_wins.msg_timeout_ms, 2);
        // Documented difference: serde_json reads `-0` as a float, Go as the int 0.
        assert_eq!(parse(r#"{"heartbeat_interval":-0}"#).unwrap_err(), BAD_JSON);
        let lossy = parse_identify(b"{\"client_id\":\"a\xffb\"}").unwrap();
        assert_eq!(lossy.client_id.as_deref(), Some("a\u{fffd}b"));
        for bad in [
            "",
            "[]",
            "1",
            "\"s\"",
            "{",
            "{} {}",
            r#"{"heartbeat_interval":1.5}"#,
            r#"{"heartbeat_interval":1e3}"#,
            r#"{"heartbeat_interval":"1000"}"#,
            r#"{"heartbeat_interval":9223372036854775808}"#,
            r#"{"sample_rate":2147483648}"#,
            r#"{"client_id":5}"#,
            r#"{"tls_v1":1}"#,
            r#"{"tls_v1":"true"}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err(), BAD_JSON, "{bad}");
        }
    }

    fn resolve(json: &str) -> Result<IdentifySettings, String> {
        let limits = Limits::default();
        let current = IdentifySettings::defaults(&limits, "127.0.0.1");
        resolve_identify(&parse(json).unwrap(), &current, &limits).map_err(|e| e.to_string())
    }

    #[test]
    fn validation_table() {
        let invalid = |what: &str, v: &str| format!("E_BAD_BODY IDENTIFY {what} ({v}) is invalid");
        let cases: &[(&str, Option<String>)] = &[
            (r#"{"heartbeat_interval":-1}"#, None),
            (r#"{"heartbeat_interval":1000}"#, None),
            (r#"{"heartbeat_interval":60000}"#, None),
            (
                r#"{"heartbeat_interval":500}"#,
                Some(invalid("heartbeat interval", "500")),
            ),
            (
                r#"{"heartbeat_interval":60001}"#,
                Some(invalid("heartbeat interval", "60001")),
            ),
            (
                r#"{"heartbeat_interval":-2}"#,
                Some(invalid("heartbeat interval", "-2")),
            ),
            (r#"{"output_buffer_timeout":25}"#, None),
            (
                r#"{"output_buffer_timeout":24}"#,
                Some(invalid("output buffer timeout", "24")),
            ),
            (
                r#"{"output_buffer_timeout":30001}"#,
                Some(invalid("output buffer timeout", "30001")),
            ),
            (r#"{"output_buffer_size":64}"#, None),
            (
                r#"{"output_buffer_size":63}"#,
                Some(invalid("output buffer size", "63")),
            ),
            (
                r#"{"output_buffer_size":65537}"#,
                Some(invalid("output buffer size", "65537")),
            ),
            (
                r#"{"output_buffer_size":1,"output_buffer_timeout":1}"#,
                Some(invalid("output buffer timeout", "1")),
            ),
            (r#"{"sample_rate":99}"#, None),
            (
                r#"{"sample_rate":100}"#,
                Some(invalid("sample rate", "100")),
            ),
            (r#"{"sample_rate":-1}"#, Some(invalid("sample rate", "-1"))),
            (r#"{"msg_timeout":1000}"#, None),
            (
                r#"{"msg_timeout":999}"#,
                Some(invalid("msg timeout", "999")),
            ),
            (
                r#"{"msg_timeout":900001}"#,
                Some(invalid("msg timeout", "900001")),
            ),
            (r#"{"msg_timeout":-1}"#, Some(invalid("msg timeout", "-1"))),
            (
                r#"{"heartbeat_interval":1,"sample_rate":100}"#,
                Some(invalid("heartbeat interval", "1")),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(resolve(json).err(), *want, "{json}");
        }
    }

    #[test]
    fn default_heartbeat_follows_max_heartbeat_interval() {
        let with_max = |ms| {
            default_heartbeat_interval(&Limits {
                max_heartbeat_interval_ms: ms,
                ..Limits::default()
            })
        };
        assert_eq!(with_max(60_000), Duration::from_secs(30));
        assert_eq!(with_max(2_000), Duration::from_secs(2));
        assert_eq!(with_max(0), Duration::from_secs(1));
    }

    #[test]
    fn resolved_values() {
        let limits = Limits::default();
        let defaults = IdentifySettings::defaults(&limits, "10.0.0.1");
        assert_eq!(defaults.heartbeat_interval, Some(Duration::from_secs(30)));
        assert_eq!(
            defaults.output_buffer_timeout,
            Some(Duration::from_millis(250))
        );
        let s = resolve(
            r#"{"heartbeat_interval":-1,"output_buffer_size":-1,"output_buffer_timeout":100}"#,
        )
        .unwrap();
        assert_eq!(
            (
                s.heartbeat_interval,
                s.output_buffer_size,
                s.output_buffer_timeout
            ),
            (None, 1, None)
        );
        assert_eq!(
            (s.client_id.as_str(), s.hostname.as_str()),
            ("", ""),
            "Go overwrites with empty"
        );
        let s = resolve(r#"{"msg_timeout":5000,"sample_rate":7,"client_id":"me"}"#).unwrap();
        assert_eq!(
            (s.msg_timeout, s.sample_rate, s.client_id.as_str()),
            (Duration::from_secs(5), 7, "me")
        );
        let s = resolve(r#"{"output_buffer_timeout":-1}"#).unwrap();
        assert_eq!(
            (s.output_buffer_size, s.output_buffer_timeout),
            (OUTPUT_BUFFER_SIZE_DEFAULT_BYTES, None)
        );
        // 0 keeps the current value, not the server default.
        let first = resolve(r#"{"heartbeat_interval":-1}"#).unwrap();
        let again = resolve_identify(&parse("{}").unwrap(), &first, &limits).unwrap();
        assert_eq!(again.heartbeat_interval, None);
    }

    #[test]
    fn negotiation() {
        let limits = Limits::default();
        let both =
            parse(r#"{"snappy":true,"deflate":true,"deflate_level":9,"tls_v1":true}"#).unwrap();
        let none = ServerFeatures::default();
        assert_eq!(
            negotiate(&both, none, &limits).unwrap(),
            Negotiated {
                tls_v1: false,
                snappy: false,
                deflate: false,
                deflate_level: 6
            }
        );
        let all = ServerFeatures {
            tls: true,
            snappy: true,
            deflate: true,
        };
        assert_eq!(
            negotiate(&both, all, &limits).unwrap_err().to_string(),
            "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression"
        );
        let deflate = parse(r#"{"deflate":true,"deflate_level":9}"#).unwrap();
        assert_eq!(
            negotiate(&deflate, all, &limits).unwrap().deflate_level,
            6,
            "capped"
        );
        let low = parse(r#"{"deflate":true,"deflate_level":2}"#).unwrap();
        assert_eq!(negotiate(&low, all, &limits).unwrap().deflate_level, 2);
        let capped = Limits {
            max_deflate_level: 3,
            ..Limits::default()
        };
        assert_eq!(
            negotiate(&IdentifyRequest::default(), none, &capped)
                .unwrap()
                .deflate_level,
            3
        );
    }

    #[test]
    fn response_json_exact_bytes() {
        let limits = Limits::default();
        let settings = IdentifySettings::defaults(&limits, "127.0.0.1");
        let negotiated = negotiate(
            &IdentifyRequest::default(),
            ServerFeatures::default(),
            &limits,
        )
        .unwrap();
        let json = identify_response_json(&settings, &negotiated, &limits, false);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            concat!(
                r#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"#,
                r#""tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"#,
                r#""sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250}"#
            )
        );
        let unbuffered = resolve(r#"{"output_buffer_size":-1,"sample_rate":3}"#).unwrap();
        let json = String::from_utf8(identify_response_json(
            &unbuffered,
            &negotiated,
            &limits,
            true,
        ))
        .unwrap();
        assert!(json.ends_with(r#""sample_rate":3,"auth_required":true,"output_buffer_size":1,"output_buffer_timeout":0}"#));
    }
}
