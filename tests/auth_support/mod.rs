//! A scripted auth server for the black-box tests (NSQ.md §1.4): a blocking HTTP/1.1 listener
//! on loopback that answers each `GET /auth?…` with what the test's script says, and keeps
//! every query's parameters.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the scripted server does with a query.
#[derive(Clone)]
pub enum Answer {
    /// Status and body.
    Reply(u16, String),
    /// Holds the connection without answering (for longer than any request timeout).
    Hang,
}

pub type Script = Box<dyn Fn(&HashMap<String, String>, usize) -> Answer + Send>;

/// A scripted auth server on loopback; every query's parameters are kept.
pub struct AuthServer {
    pub addr: SocketAddr,
    queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl AuthServer {
    /// Answers each query with `script(params, query number)`.
    pub fn start(script: Script) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&queries);
        let script = Arc::new(Mutex::new(script));
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                let script = Arc::clone(&script);
                thread::spawn(move || serve_one(stream, &seen, &script));
            }
        });
        AuthServer { addr, queries }
    }

    pub fn flag(&self) -> String {
        format!("--auth-http-address={}", self.addr)
    }

    pub fn queries(&self) -> Vec<HashMap<String, String>> {
        self.queries.lock().unwrap().clone()
    }
}

fn serve_one(
    stream: TcpStream,
    seen: &Mutex<Vec<HashMap<String, String>>>,
    script: &Mutex<Script>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let target = first.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    params.insert("path".to_owned(), path.to_owned());
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(params.clone());
        seen.len()
    };
    let answer = (script.lock().unwrap())(&params, n);
    let mut stream = stream;
    match answer {
        Answer::Reply(status, body) => {
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes());
        }
        Answer::Hang => thread::sleep(Duration::from_secs(30)),
    }
}

/// An answer granting `authorizations` for `ttl` seconds.
pub fn grant(ttl: i64, authorizations: &Value) -> Answer {
    let body = json!({
        "ttl": ttl,
        "identity": "alice",
        "identity_url": "https://id.example/alice",
        "authorizations": authorizations,
    });
    Answer::Reply(200, body.to_string())
}

/// Publish to `allowed` (channel regex `.*` matches ""), subscribe to `allowed` channel `c`.
pub fn standard_grants() -> Value {
    json!([
        {"topic": "^allowed$", "channels": [".*"], "permissions": ["publish"]},
        {"topic": "^allowed$", "channels": ["^c$"], "permissions": ["subscribe"]},
    ])
}
