//! Decoder tests: every command, every error string the decoder makes, every limit, and
//! `Incomplete` at every split point of a valid stream.

use bytes::Bytes;

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn run(input: &[u8], state: ClientState) -> Decoded {
    decode(input, &DecodeContext::new(state, true, &limits()))
}

fn err_of(input: &[u8], state: ClientState) -> (String, usize) {
    match run(input, state) {
        Decoded::Error { err, consumed } => {
            assert!(err.fatal, "decode errors are fatal: {err}");
            (err.to_string(), consumed)
        }
        other => panic!("expected an error for {input:?}, got {other:?}"),
    }
}

fn cmd_of(input: &[u8], state: ClientState) -> (Command, usize) {
    match run(input, state) {
        Decoded::Command { cmd, consumed } => (cmd, consumed),
        other => panic!("expected a command for {input:?}, got {other:?}"),
    }
}

fn with_len(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn i32_be(n: i32) -> [u8; 4] {
    n.to_be_bytes()
}

const ID: &[u8; 16] = b"0123456789abcdef";

#[test]
fn magic() {
    assert!(magic_ok(b"  V2"));
    assert!(!magic_ok(b"  V1"));
    assert!(!magic_ok(b" V2"));
}

#[test]
#[allow(clippy::too_many_lines)] // a table of cases, one per line before rustfmt
fn every_command_decodes() {
    use ClientState::{Closing, Init, Subscribed};
    let id = MessageId(*ID);
    let cases: Vec<(Vec<u8>, ClientState, Command)> = vec![
        (
            with_len(b"IDENTIFY\n", b"{}"),
            Init,
            Command::Identify(Bytes::from_static(b"{}")),
        ),
        (
            with_len(b"AUTH\n", b"s3cret"),
            Init,
            Command::Auth(Bytes::from_static(b"s3cret")),
        ),
        (
            b"SUB t c\n".to_vec(),
            Init,
            Command::Sub {
                topic: "t".into(),
                channel: "c#ephemeral".into(),
            },
        ),
        (b"RDY 10\n".to_vec(), Subscribed, Command::Rdy(10)),
        (b"RDY\n".to_vec(), Subscribed, Command::Rdy(1)),
        (b"RDY \n".to_vec(), Subscribed, Command::Rdy(0)),
        (b"RDY x\n".to_vec(), Closing, Command::RdyIgnored),
        (
            b"FIN 0123456789abcdef\n".to_vec(),
            Subscribed,
            Command::Fin(id),
        ),
        (
            b"FIN 0123456789abcdef\n".to_vec(),
            Closing,
            Command::Fin(id),
        ),
        (
            b"REQ 0123456789abcdef 500\n".to_vec(),
            Closing,
            Command::Req {
                id,
                timeout_ms: 500,
            },
        ),
        (
            b"REQ 0123456789abcdef \n".to_vec(),
            Subscribed,
            Command::Req { id, timeout_ms: 0 },
        ),
        (
            b"TOUCH 0123456789abcdef\n".to_vec(),
            Subscribed,
            Command::Touch(id),
        ),
        (b"CLS\n".to_vec(), Subscribed, Command::Cls),
        (b"CLS extra\n".to_vec(), Subscribed, Command::Cls),
        (b"NOP\n".to_vec(), Init, Command::Nop),
        (b"NOP\r\n".to_vec(), Closing, Command::Nop),
        (
            with_len(b"PUB t\n", b"hi"),
            Subscribed,
            Command::Pub {
                topic: "t".into(),
                body: Bytes::from_static(b"hi"),
            },
        ),
        (
            with_len(b"PUB t#ephemeral\r\n", b"x"),
            Init,
            Command::Pub {
                topic: "t#ephemeral".into(),
                body: Bytes::from_static(b"x"),
            },
        ),
        (
            with_len(b"DPUB t 1000\n", b"d"),
            Init,
            Command::Dpub {
                topic: "t".into(),
                defer_ms: 1000,
                body: Bytes::from_static(b"d"),
            },
        ),
        (
            with_len(b"DPUB t 3600000\n", b"d"),
            Init,
            Command::Dpub {
                topic: "t".into(),
                defer_ms: 3_600_000,
                body: Bytes::from_static(b"d"),
            },
        ),
    ];
    for (mut input, state, want) in cases {
        if let Command::Sub { channel, .. } = &want {
            input = format!("SUB t {channel}\n").into_bytes();
        }
        let (cmd, consumed) = cmd_of(&input, state);
        assert_eq!(cmd, want);
        assert_eq!(consumed, input.len(), "{input:?}");
        // The client-side encoder produces bytes that decode to the same command.
        let mut encoded = Vec::new();
        cmd.encode(&mut encoded);
        if !matches!(cmd, Command::RdyIgnored) {
            assert_eq!(cmd_of(&encoded, state).0, cmd);
        }
    }
}

#[test]
fn mpub_decodes_and_keeps_go_framing() {
    let mut input = b"MPUB t\n".to_vec();
    input.extend_from_slice(&i32_be(4 + 5 + 6));
    input.extend_from_slice(&i32_be(2));
    input.extend_from_slice(&i32_be(1));
    input.extend_from_slice(b"a");
    input.extend_from_slice(&i32_be(2));
    input.extend_from_slice(b"bc");
    input.extend_from_slice(b"NOP\n");
    let (cmd, consumed) = cmd_of(&input, ClientState::Init);
    assert_eq!(
        cmd,
        Command::Mpub {
            topic: "t".into(),
            bodies: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        }
    );
    assert_eq!(consumed, input.len() - 4);

    // Go ignores the body size for framing: a smaller stated size still reads `count` messages.
    let mut short = b"MPUB t\n".to_vec();
    short.extend_from_slice(&i32_be(1));
    short.extend_from_slice(&i32_be(1));
    short.extend_from_slice(&i32_be(3));
    short.extend_from_slice(b"abc");
    let (cmd, consumed) = cmd_of(&short, ClientState::Subscribed);
    assert_eq!(
        cmd,
        Command::Mpub {
            topic: "t".into(),
            bodies: vec![Bytes::from_static(b"abc")]
        }
    );
    assert_eq!(consumed, short.len());
}

/// Rows of (input, state, heartbeats, `tls_required`, expected error frame text).
#[allow(clippy::too_many_lines)] // a table of cases, one per line before rustfmt
fn error_table() -> Vec<(Vec<u8>, ClientState, bool, bool, String)> {
    use ClientState::{Closing, Init, Subscribed};
    let s = |x: &str| x.to_owned();
    let mut t: Vec<(Vec<u8>, ClientState, bool, bool, String)> = vec![
        (
            b"FOO\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID invalid command FOO"),
        ),
        (
            b"pub t\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID invalid command pub"),
        ),
        (
            b"\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID invalid command "),
        ),
        (
            b" NOP\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID invalid command "),
        ),
        (
            b"PUB t\n".to_vec(),
            Init,
            true,
            true,
            s("E_INVALID cannot PUB in current state (TLS required)"),
        ),
        (
            b"FOO\n".to_vec(),
            Init,
            true,
            true,
            s("E_INVALID cannot FOO in current state (TLS required)"),
        ),
        (
            b"IDENTIFY\n".to_vec(),
            Subscribed,
            true,
            true,
            s("E_INVALID cannot IDENTIFY in current state"),
        ),
        (
            b"AUTH\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID cannot AUTH in current state"),
        ),
        (
            b"AUTH x\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID AUTH invalid number of parameters"),
        ),
        (
            b"SUB t c\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID cannot SUB in current state"),
        ),
        (
            b"SUB t c\n".to_vec(),
            Init,
            false,
            false,
            s("E_INVALID cannot SUB with heartbeats disabled"),
        ),
        (
            b"SUB t\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID SUB insufficient number of parameters"),
        ),
        (
            b"SUB t!x c\n".to_vec(),
            Init,
            true,
            false,
            s("E_BAD_TOPIC SUB topic name \"t!x\" is not valid"),
        ),
        (
            b"SUB t c\xff\n".to_vec(),
            Init,
            true,
            false,
            s(r#"E_BAD_CHANNEL SUB channel name "c\xff" is not valid"#),
        ),
        (
            b"SUB  c\n".to_vec(),
            Init,
            true,
            false,
            s("E_BAD_TOPIC SUB topic name \"\" is not valid"),
        ),
        (
            b"RDY 1\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID cannot RDY in current state"),
        ),
        (
            b"RDY -1\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID RDY could not parse count -1"),
        ),
        (
            b"RDY 2501\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID RDY count 2501 out of range 0-2500"),
        ),
        (
            b"RDY 18446744073709551615\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID RDY count -1 out of range 0-2500"),
        ),
        (
            b"FIN x\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID cannot FIN in current state"),
        ),
        (
            b"FIN\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID FIN insufficient number of params"),
        ),
        (
            b"FIN 0123\n".to_vec(),
            Closing,
            true,
            false,
            s("E_INVALID invalid message ID"),
        ),
        (
            b"REQ x 1\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID cannot REQ in current state"),
        ),
        (
            b"REQ 0123456789abcdef\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID REQ insufficient number of params"),
        ),
        (
            b"REQ 0123 1\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID invalid message ID"),
        ),
        (
            b"REQ 0123456789abcdef -1\n".to_vec(),
            Subscribed,
            true,
            false,
            s("E_INVALID REQ could not parse timeout -1"),
        ),
        (
            b"TOUCH x\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID cannot TOUCH in current state"),
        ),
        (
            b"TOUCH\n".to_vec(),
            Closing,
            true,
            false,
            s("E_INVALID TOUCH insufficient number of params"),
        ),
        (
            b"TOUCH 0123456789abcdef0\n".to_vec(),
            Closing,
            true,
            false,
            s("E_INVALID invalid message ID"),
        ),
        (
            b"CLS\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID cannot CLS in current state"),
        ),
        (
            b"CLS\n".to_vec(),
            Closing,
            true,
            false,
            s("E_INVALID cannot CLS in current state"),
        ),
        (
            b"PUB\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID PUB insufficient number of parameters"),
        ),
        (
            b"PUB t\xff\n".to_vec(),
            Init,
            true,
            false,
            s(r#"E_BAD_TOPIC PUB topic name "t\xff" is not valid"#),
        ),
        (
            b"MPUB\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID MPUB insufficient number of parameters"),
        ),
        (
            b"MPUB a\"b\n".to_vec(),
            Init,
            true,
            false,
            s(r#"E_BAD_TOPIC E_BAD_TOPIC MPUB topic name "a\"b" is not valid"#),
        ),
        (
            b"DPUB t\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID DPUB insufficient number of parameters"),
        ),
        (
            b"DPUB t? 1\n".to_vec(),
            Init,
            true,
            false,
            s("E_BAD_TOPIC DPUB topic name \"t?\" is not valid"),
        ),
        (
            b"DPUB t 1s\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID DPUB could not parse timeout 1s"),
        ),
        (
            b"DPUB t 3600001\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID DPUB timeout 3600001 out of range 0-3600000"),
        ),
        (
            b"DPUB t 18446744073709551615\n".to_vec(),
            Init,
            true,
            false,
            s("E_INVALID DPUB timeout 18446744073709551615 out of range 0-3600000"),
        ),
    ];
    t.push((
        b"PUB a\x00b\n".to_vec(),
        Init,
        true,
        false,
        s(r#"E_BAD_TOPIC PUB topic name "a\x00b" is not valid"#),
    ));
    t
}

#[test]
fn every_line_error_string() {
    for (input, state, heartbeats, tls, want) in error_table() {
        let lim = limits();
        let mut cx = DecodeContext::new(state, heartbeats, &lim);
        cx.tls_required = tls;
        // Errors on the line come before any body byte: no body is present in the input.
        match decode(&input, &cx) {
            Decoded::Error { err, consumed } => {
                assert_eq!(err.to_string(), want, "input {input:?}");
                assert_eq!(consumed, input.len(), "input {input:?}");
                assert!(err.fatal);
            }
            other => panic!("input {input:?}: expected {want}, got {other:?}"),
        }
    }
}

#[test]
fn body_size_errors_in_go_order() {
    use ClientState::Init;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            [&b"PUB t\n"[..], &i32_be(0)].concat(),
            "E_BAD_MESSAGE PUB invalid message body size 0",
        ),
        (
            [&b"PUB t\n"[..], &i32_be(-5)].concat(),
            "E_BAD_MESSAGE PUB invalid message body size -5",
        ),
        (
            [&b"PUB t\n"[..], &i32_be(1_048_577)].concat(),
            "E_BAD_MESSAGE PUB message too big 1048577 > 1048576",
        ),
        (
            [&b"DPUB t 0\n"[..], &i32_be(0)].concat(),
            "E_BAD_MESSAGE DPUB invalid message body size 0",
        ),
        (
            [&b"DPUB t 0\n"[..], &i32_be(1_048_577)].concat(),
            "E_BAD_MESSAGE DPUB message too big 1048577 > 1048576",
        ),
        (
            [&b"IDENTIFY\n"[..], &i32_be(0)].concat(),
            "E_BAD_BODY IDENTIFY invalid body size 0",
        ),
        (
            [&b"IDENTIFY\n"[..], &i32_be(5_242_881)].concat(),
            "E_BAD_BODY IDENTIFY body too big 5242881 > 5242880",
        ),
        (
            [&b"AUTH\n"[..], &i32_be(-1)].concat(),
            "E_BAD_BODY AUTH invalid body size -1",
        ),
        (
            [&b"AUTH\n"[..], &i32_be(5_242_881)].concat(),
            "E_BAD_BODY AUTH body too big 5242881 > 5242880",
        ),
        (
            [&b"MPUB t\n"[..], &i32_be(0)].concat(),
            "E_BAD_BODY MPUB invalid body size 0",
        ),
        (
            [&b"MPUB t\n"[..], &i32_be(5_242_881)].concat(),
            "E_BAD_BODY MPUB body too big 5242881 > 5242880",
        ),
        (
            [&b"MPUB t\n"[..], &i32_be(10), &i32_be(0)].concat(),
            "E_BAD_BODY MPUB invalid message count 0",
        ),
        (
            [&b"MPUB t\n"[..], &i32_be(10), &i32_be(1_048_576)].concat(),
            "E_BAD_BODY MPUB invalid message count 1048576",
        ),
        (
            [&b"MPUB t\n"[..], &i32_be(10), &i32_be(1), &i32_be(0)].concat(),
            "E_BAD_MESSAGE MPUB invalid message(0) body size 0",
        ),
        (
            [
                &b"MPUB t\n"[..],
                &i32_be(10),
                &i32_be(2),
                &i32_be(1),
                b"x",
                &i32_be(-3),
            ]
            .concat(),
            "E_BAD_MESSAGE MPUB invalid message(1) body size -3",
        ),
        (
            [
                &b"MPUB t\n"[..],
                &i32_be(10),
                &i32_be(1),
                &i32_be(1_048_577),
            ]
            .concat(),
            "E_BAD_MESSAGE MPUB message too big 1048577 > 1048576",
        ),
    ];
    for (input, want) in cases {
        let (got, consumed) = err_of(&input, Init);
        assert_eq!(got, want, "input {input:?}");
        assert_eq!(
            consumed,
            input.len(),
            "errors come as soon as the size is there"
        );
    }
    // The largest valid MPUB count is (max_body_size - 4) / 5 = 1048575: not an error yet.
    let input = [&b"MPUB t\n"[..], &i32_be(10), &i32_be(1_048_575)].concat();
    assert_eq!(run(&input, Init), Decoded::Incomplete);
}

#[test]
fn size_limits_are_inclusive() {
    let small = Limits {
        max_msg_size: 4,
        max_body_size: 20,
        ..Limits::default()
    };
    let cx = DecodeContext::new(ClientState::Init, true, &small);
    assert!(matches!(
        decode(&with_len(b"PUB t\n", b"abcd"), &cx),
        Decoded::Command { .. }
    ));
    assert!(matches!(
        decode(&with_len(b"PUB t\n", b"abcde"), &cx),
        Decoded::Error { .. }
    ));
    let body = [0x20u8; 20];
    assert!(matches!(
        decode(&with_len(b"IDENTIFY\n", &body), &cx),
        Decoded::Command { .. }
    ));
    // MPUB: count 1 + (4 + 4) + (4 + 4) = 20 bytes after the size: exactly the limit.
    let mut ok = b"MPUB t\n".to_vec();
    ok.extend_from_slice(&i32_be(20));
    ok.extend_from_slice(&i32_be(2));
    for _ in 0..2 {
        ok.extend_from_slice(&i32_be(4));
        ok.extend_from_slice(b"abcd");
    }
    assert!(matches!(decode(&ok, &cx), Decoded::Command { .. }));
    // A third message would run past --max-body-size: refused before its body is needed.
    let mut over = b"MPUB t\n".to_vec();
    over.extend_from_slice(&i32_be(20));
    over.extend_from_slice(&i32_be(3));
    for _ in 0..2 {
        over.extend_from_slice(&i32_be(4));
        over.extend_from_slice(b"abcd");
    }
    over.extend_from_slice(&i32_be(1));
    match decode(&over, &cx) {
        Decoded::Error { err, consumed } => {
            assert_eq!(err.to_string(), "E_BAD_BODY MPUB body too big 25 > 20");
            assert_eq!(consumed, over.len());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn line_length_bound_is_go_bufio_size() {
    let lim = limits();
    let cx = DecodeContext::new(ClientState::Init, true, &lim);
    let mut fits = vec![b'N'; LINE_LEN_MAX - 1];
    fits.push(b'\n');
    assert!(
        matches!(decode(&fits, &cx), Decoded::Error { consumed, .. } if consumed == LINE_LEN_MAX)
    );
    let long = vec![b'N'; LINE_LEN_MAX];
    assert_eq!(decode(&long, &cx), Decoded::LineTooLong);
    assert_eq!(decode(&long[..LINE_LEN_MAX - 1], &cx), Decoded::Incomplete);
    assert_eq!(decode(b"", &cx), Decoded::Incomplete);
}

const LINE_LEN_MAX: usize = limits::LINE_LEN_MAX_BYTES;

fn valid_stream() -> Vec<u8> {
    let mut s = Vec::new();
    let cmds = [
        Command::Identify(Bytes::from_static(
            br#"{"client_id":"x","feature_negotiation":true}"#,
        )),
        Command::Nop,
        Command::Pub {
            topic: "t".into(),
            body: Bytes::from_static(b"hello"),
        },
        Command::Mpub {
            topic: "t".into(),
            bodies: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bcd")],
        },
        Command::Dpub {
            topic: "t".into(),
            defer_ms: 250,
            body: Bytes::from_static(b"later"),
        },
        Command::Auth(Bytes::from_static(b"secret")),
        Command::Sub {
            topic: "t".into(),
            channel: "c".into(),
        },
    ];
    for cmd in &cmds {
        cmd.encode(&mut s);
    }
    s.extend_from_slice(b"NOP\r\n");
    s
}

fn drain(buf: &mut Vec<u8>, cx: &DecodeContext<'_>, out: &mut Vec<Command>) {
    loop {
        match decode(buf, cx) {
            Decoded::Command { cmd, consumed } => {
                assert!(consumed > 0 && consumed <= buf.len());
                out.push(cmd);
                buf.drain(..consumed);
            }
            Decoded::Incomplete => return,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn incomplete_at_every_split_point() {
    let lim = limits();
    let cx = DecodeContext::new(ClientState::Init, true, &lim);
    let stream = valid_stream();
    let mut whole = Vec::new();
    drain(&mut stream.clone(), &cx, &mut whole);
    assert_eq!(whole.len(), 8);
    // Byte by byte.
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for &b in &stream {
        buf.push(b);
        drain(&mut buf, &cx, &mut got);
    }
    assert!(buf.is_empty());
    assert_eq!(got, whole);
    // Every single split into two reads.
    for split in 0..=stream.len() {
        let mut buf = stream[..split].to_vec();
        let mut got = Vec::new();
        drain(&mut buf, &cx, &mut got);
        buf.extend_from_slice(&stream[split..]);
        drain(&mut buf, &cx, &mut got);
        assert_eq!(got, whole, "split {split}");
    }
}

#[test]
fn subscribed_stream_byte_by_byte() {
    let lim = limits();
    let cx = DecodeContext::new(ClientState::Subscribed, true, &lim);
    let stream = b"RDY 100\nFIN 0123456789abcdef\nREQ 0123456789abcdef 1000\nTOUCH 0123456789abcdef\nCLS\nNOP\n";
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for &b in stream {
        buf.push(b);
        drain(&mut buf, &cx, &mut got);
    }
    assert_eq!(got.len(), 6);
    assert_eq!(got[0], Command::Rdy(100));
    assert_eq!(got[4], Command::Cls);
}

#[test]
fn eof_errors_match_go() {
    use ClientState::Init;
    let lim = limits();
    let cx = DecodeContext::new(Init, true, &lim);
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"".to_vec(), None),
        (b"PUB t".to_vec(), None),
        (
            b"PUB t\n".to_vec(),
            Some("E_BAD_MESSAGE PUB failed to read message body size"),
        ),
        (
            b"PUB t\n\0\0".to_vec(),
            Some("E_BAD_MESSAGE PUB failed to read message body size"),
        ),
        (
            [&b"PUB t\n"[..], &i32_be(3), b"ab"].concat(),
            Some("E_BAD_MESSAGE PUB failed to read message body"),
        ),
        (
            b"DPUB t 5\n".to_vec(),
            Some("E_BAD_MESSAGE DPUB failed to read message body size"),
        ),
        (
            [&b"DPUB t 5\n"[..], &i32_be(3)].concat(),
            Some("E_BAD_MESSAGE DPUB failed to read message body"),
        ),
        (
            b"IDENTIFY\n".to_vec(),
            Some("E_BAD_BODY IDENTIFY failed to read body size"),
        ),
        (
            [&b"IDENTIFY\n"[..], &i32_be(3)].concat(),
            Some("E_BAD_BODY IDENTIFY failed to read body"),
        ),
        (
            b"AUTH\n".to_vec(),
            Some("E_BAD_BODY AUTH failed to read body size"),
        ),
        (
            [&b"AUTH\n"[..], &i32_be(3), b"x"].concat(),
            Some("E_BAD_BODY AUTH failed to read body"),
        ),
        (
            b"MPUB t\n".to_vec(),
            Some("E_BAD_BODY MPUB failed to read body size"),
        ),
        (
            [&b"MPUB t\n"[..], &i32_be(9)].concat(),
            Some("E_BAD_BODY MPUB failed to read message count"),
        ),
        (
            [&b"MPUB t\n"[..], &i32_be(9), &i32_be(2), &i32_be(1), b"a"].concat(),
            Some("E_BAD_MESSAGE MPUB failed to read message(1) body size"),
        ),
        (
            [&b"MPUB t\n"[..], &i32_be(9), &i32_be(1), &i32_be(2), b"a"].concat(),
            Some("E_BAD_MESSAGE MPUB failed to read message body"),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(decode(&input, &cx), Decoded::Incomplete, "{input:?}");
        let got = decode_at_eof(&input, &cx).map(|e| e.to_string());
        assert_eq!(got.as_deref(), want, "{input:?}");
    }
}

#[test]
fn mpub_topic_is_known_before_the_body() {
    let lim = limits();
    let cx = DecodeContext::new(ClientState::Init, true, &lim);
    assert_eq!(mpub_topic_ahead(b"MPUB t\n", &cx), Some("t"));
    assert_eq!(mpub_topic_ahead(b"MPUB t\r\n\0\0", &cx), Some("t"));
    assert_eq!(mpub_topic_ahead(b"MPUB t", &cx), None);
    assert_eq!(mpub_topic_ahead(b"MPUB t!\n", &cx), None);
    assert_eq!(mpub_topic_ahead(b"PUB t\n", &cx), None);
    let mut tls = cx;
    tls.tls_required = true;
    assert_eq!(mpub_topic_ahead(b"MPUB t\n", &tls), None);
}

#[test]
fn dpub_delay_that_wraps_into_range_is_accepted_like_go() {
    // 2^64 - 1 ms is int64 -1 → -1e6 ns: out of range. 2^63/1e6-ish values wrap too; find a
    // value whose nanoseconds wrap to exactly 1 s.
    let target_nanos: i128 = 1_000_000_000;
    let modulus: i128 = 1 << 64;
    // ms * 1e6 ≡ 1e9 (mod 2^64) has the solution ms = 1000 + k * 2^64 / gcd; use k such that
    // ms = 1000 + 2^58 (2^58 * 1e6 = 2^64 * 15625 ≡ 0).
    let ms: u64 = 1000 + (1u64 << 58);
    assert_eq!((i128::from(ms) * 1_000_000) % modulus, target_nanos);
    let input = with_len(format!("DPUB t {ms}\n").as_bytes(), b"x");
    let (cmd, _) = cmd_of(&input, ClientState::Init);
    assert_eq!(
        cmd,
        Command::Dpub {
            topic: "t".into(),
            defer_ms: 1000,
            body: Bytes::from_static(b"x")
        }
    );
}
