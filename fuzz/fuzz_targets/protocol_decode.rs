//! Fuzz target for the V2 command decoder (`ringsq::protocol::decode`).
//!
//! Arbitrary bytes are decoded repeatedly, as a connection would, under small limits and every
//! client state. Checked invariants: no panic; `consumed` is in `1..=len`; no command carries
//! more than the limits allow; `decode_at_eof` and `mpub_topic_ahead` never panic; splitting the
//! input at an arbitrary point yields the same commands (no state hides in the decoder).
//!
//! The same bytes also go through the connection's snappy and deflate input decoders
//! (`ringsq::connection::compress`, what IDENTIFY negotiates) whole and split, in bounded steps (the
//! inflater the connection runs on a compression bomb): no panic, no step beyond its output
//! bound, the same result either way; and encoding them then decoding gives them back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsq::connection::client::Codec;
use ringsq::protocol::{
    decode, decode_at_eof, mpub_topic_ahead, ClientState, Command, DecodeContext, Decoded, Limits,
};
use ringsq::connection::compress::{Decoder, Encoder, SNAPPY_BLOCK_MAX_BYTES};

fn small_limits() -> Limits {
    Limits {
        max_msg_size: 64,
        max_body_size: 256,
        max_rdy_count: 100,
        max_req_timeout_ms: 10_000,
        line_len_max: 128,
        ..Limits::default()
    }
}

fn check_command(cmd: &Command, limits: &Limits) {
    let msg = usize::try_from(limits.max_msg_size).unwrap();
    let body = usize::try_from(limits.max_body_size).unwrap();
    match cmd {
        Command::Identify(b) | Command::Auth(b) => assert!(!b.is_empty() && b.len() <= body),
        Command::Pub { body: b, .. } => assert!(!b.is_empty() && b.len() <= msg),
        Command::Dpub {
            body: b, defer_ms, ..
        } => {
            assert!(!b.is_empty() && b.len() <= msg);
            assert!(*defer_ms <= limits.max_req_timeout_ms);
        }
        Command::Mpub { bodies, .. } => {
            assert!(!bodies.is_empty());
            assert!(bodies.iter().all(|b| !b.is_empty() && b.len() <= msg));
            assert!(bodies.iter().map(|b| 4 + b.len()).sum::<usize>() + 4 <= body);
        }
        Command::Rdy(n) => assert!(*n <= limits.max_rdy_count),
        _ => {}
    }
}

/// Decodes everything decodable; returns the commands and where decoding stopped.
fn run(data: &[u8], cx: &DecodeContext<'_>) -> (Vec<Command>, usize) {
    let mut pos = 0;
    let mut cmds = Vec::new();
    loop {
        let rest = &data[pos..];
        let _ = mpub_topic_ahead(rest, cx);
        match decode(rest, cx) {
            Decoded::Command { cmd, consumed } => {
                assert!(consumed > 0 && consumed <= rest.len());
                check_command(&cmd, cx.limits);
                cmds.push(cmd);
                pos += consumed;
            }
            Decoded::Error { err, consumed } => {
                assert!(consumed > 0 && consumed <= rest.len());
                assert!(err.fatal);
                return (cmds, pos);
            }
            Decoded::Incomplete => {
                assert!(rest.len() < cx.limits.command_len_max_bytes());
                let _ = decode_at_eof(rest, cx);
                return (cmds, pos);
            }
            Decoded::LineTooLong => return (cmds, pos),
        }
    }
}

/// Decodes `parts` in turn as one compressed input stream, as the connection does: bytes
/// wait in a pending buffer, each step makes at most `step_max` bytes (checked) and takes
/// bytes only from the front. None once it fails.
fn decompress(codec: Codec, parts: &[&[u8]], step_max: usize) -> Option<Vec<u8>> {
    let mut dec = Decoder::new(codec);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for part in parts {
        pending.extend_from_slice(part);
        loop {
            let before = out.len();
            let step = dec.step(&pending, &mut out, step_max).ok()?;
            assert_eq!(out.len() - before, step.produced);
            assert!(step.produced <= step_max.max(SNAPPY_BLOCK_MAX_BYTES));
            assert!(step.consumed <= pending.len());
            pending.drain(..step.consumed);
            if step.is_stalled() {
                break;
            }
        }
    }
    Some(out)
}

fn check_codecs(data: &[u8], split: usize, step_max: usize) {
    for codec in [Codec::Snappy, Codec::Deflate { level: 6 }] {
        let whole = decompress(codec, &[data], 1 << 20);
        let halves = decompress(codec, &[&data[..split], &data[split..]], step_max);
        if let (Some(whole), Some(halves)) = (&whole, &halves) {
            assert_eq!(whole, halves);
        }
        let mut wire = Vec::new();
        Encoder::new(codec).encode(data, &mut wire).unwrap();
        assert_eq!(decompress(codec, &[&wire], step_max).as_deref(), Some(data));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let limits = small_limits();
    let state = match selector % 3 {
        0 => ClientState::Init,
        1 => ClientState::Subscribed,
        _ => ClientState::Closing,
    };
    let mut cx = DecodeContext::new(state, selector & 4 == 0, &limits);
    cx.tls_required = selector & 8 != 0;
    let (whole, _) = run(data, &cx);

    // Feeding the same bytes in two reads gives the same commands.
    let split = usize::from(selector) * data.len() / 256;
    check_codecs(data, split, 1 + usize::from(selector) * 17);
    let (first, stop) = run(&data[..split], &cx);
    let mut buffered = data[stop..split].to_vec();
    buffered.extend_from_slice(&data[split..]);
    let (second, _) = run(&buffered, &cx);
    let mut joined = first;
    joined.extend(second);
    assert_eq!(whole, joined);
});
