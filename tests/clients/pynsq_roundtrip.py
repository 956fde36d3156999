#!/usr/bin/env python3
"""Round trip through a real NSQ client: pynsq (the official Python client) against ringsq.

A pynsq Writer publishes --count messages to --topic, half with PUB and half with MPUB
(batches of 50); a pynsq Reader on one channel consumes them. Exits 0 only if every publish was
acknowledged and every distinct body was received; prints what went wrong otherwise.

With --deflate, both ask IDENTIFY for deflate compression, and the run fails unless every
connection was really switched to it. With --tls-ca PATH, both ask for TLS (tls_v1=True,
verifying the broker's certificate against that CA), and the run fails unless every connection
is a TLS socket. With --auth-secret S, both send AUTH with that secret.

Usage: pynsq_roundtrip.py --tcp HOST:PORT --count N --topic T [--timeout SECONDS] [--deflate]
       [--tls-ca PATH] [--auth-secret S]
Run by tests/clients.rs; deps in tests/clients/requirements.txt (.ci/install-clients.sh).
"""

import argparse
import functools
import logging
import ssl
import sys

import nsq
import tornado.ioloop

MPUB_BATCH = 50


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tcp", required=True, help="ringsq TCP address HOST:PORT")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--channel", default="pynsq")
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--deflate", action="store_true", help="negotiate deflate compression")
    ap.add_argument("--tls-ca", help="negotiate TLS, trusting this CA certificate")
    ap.add_argument("--auth-secret", help="AUTH with this secret")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="pynsq %(levelname)s %(message)s")

    loop = tornado.ioloop.IOLoop.current()
    expected = {("msg-%d" % i).encode() for i in range(args.count)}
    received = set()
    state = {"acks": 0, "errors": [], "published": False, "result": None}
    pub_half = args.count // 2

    def finish(ok, why):
        if state["result"] is None:
            state["result"] = (ok, why)
            loop.stop()

    def check_done():
        if state["errors"]:
            finish(False, "publish errors: %r" % state["errors"][:5])
        elif received >= expected and state["acks"] == n_commands:
            finish(True, "all %d messages received" % len(expected))

    def on_message(message):
        received.add(bytes(message.body))
        if bytes(message.body) not in expected:
            finish(False, "unexpected body %r" % message.body)
        check_done()
        return True  # FIN

    def on_ack(conn, data):
        if isinstance(data, nsq.Error) or data != b"OK":
            state["errors"].append(repr(data))
        else:
            state["acks"] += 1
        check_done()

    bodies = sorted(expected, key=lambda b: int(b.split(b"-")[1]))
    singles = bodies[:pub_half]
    batches = [bodies[i:i + MPUB_BATCH] for i in range(pub_half, len(bodies), MPUB_BATCH)]
    n_commands = len(singles) + len(batches)

    conn_opts = {"deflate": True, "deflate_level": 6} if args.deflate else {}
    if args.tls_ca:
        conn_opts.update(tls_v1=True, tls_options={"ca_certs": args.tls_ca})
    if args.auth_secret:
        conn_opts["auth_secret"] = args.auth_secret
    writer = nsq.Writer([args.tcp], **conn_opts)

    def publish_when_connected():
        if state["published"]:
            return
        if not any(c.connected() for c in writer.conns.values()):
            loop.call_later(0.05, publish_when_connected)
            return
        state["published"] = True
        for body in singles:
            writer.pub(args.topic, body, callback=on_ack)
        for batch in batches:
            writer.mpub(args.topic, batch, callback=on_ack)

    reader = nsq.Reader(
        message_handler=on_message,
        nsqd_tcp_addresses=[args.tcp],
        topic=args.topic,
        channel=args.channel,
        max_in_flight=100,
        **conn_opts,
    )

    loop.call_later(0.05, publish_when_connected)
    loop.call_later(
        args.timeout,
        functools.partial(finish, False, "timed out after %.0fs" % args.timeout),
    )
    loop.start()
    if args.deflate:
        from nsq.deflate_socket import DeflateSocket

        conns = list(writer.conns.values()) + list(reader.conns.values())
        plain = [c for c in conns if not isinstance(c.socket, DeflateSocket)]
        if not conns or plain:
            state["result"] = (False, "%d of %d connections not deflated" % (len(plain), len(conns)))
    if args.tls_ca and state["result"] and state["result"][0]:
        conns = list(writer.conns.values()) + list(reader.conns.values())
        plain = [c for c in conns if not isinstance(c.socket, ssl.SSLSocket)]
        if not conns or plain:
            state["result"] = (False, "%d of %d connections not TLS" % (len(plain), len(conns)))
    reader.close()

    ok, why = state["result"] or (False, "loop stopped without a result")
    missing = len(expected - received)
    print(
        "pynsq: %s (acks %d/%d, received %d/%d distinct, missing %d)"
        % (why, state["acks"], n_commands, len(received & expected), len(expected), missing)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
