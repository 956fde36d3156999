#!/usr/bin/env python3
"""nsqd's HTTP API through a real client library: gnsq's NsqdHTTPClient against ringsq.

gnsq 1.0.2 (gevent-based) replaced its deprecated `Nsqd` class with `NsqdHTTPClient`, the
same HTTP client `Nsqd` wraps. Every call below is a gnsq method; nothing talks HTTP by hand.

Steps (each checked, the first failure ends the run with exit 1):
  ping, info; create topic + channel; PUB (/pub), text MPUB and binary MPUB (/mpub, bodies
  with newlines and NUL bytes); /stats JSON shows the published count on the topic and the
  channel; pause/unpause topic and channel show in /stats; empty_channel drops the channel's
  backlog; while the topic is paused new messages stay queued, and empty_topic drops them; an unknown channel is a gnsq NSQHttpError; delete channel, delete topic.
Exits 0 only if all of it checks out.

Usage: gnsq_http.py --http HOST:PORT --topic T [--timeout SECONDS]
Run by tests/clients.rs; deps in tests/clients/requirements.txt (.ci/install-clients.sh).
"""

import argparse
import sys
import time

import gnsq
from gnsq.errors import NSQHttpError

CHANNEL = "gnsq_ch"
PUB_COUNT = 10
MPUB_TEXT = [("text-%d" % i).encode() for i in range(20)]
# Binary mode exists so bodies may hold newlines and NULs; use both.
MPUB_BINARY = [b"bin\n%d\x00\xff" % i for i in range(15)]
# Per-request bound; a broker that stops answering fails the run instead of hanging it.
REQUEST_TIMEOUT_SECS = 10.0
POLL_INTERVAL_SECS = 0.02


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)
    print("ok: %s" % what)


def wait_until(deadline, what, probe):
    """Poll probe() until it returns a truthy value or the deadline passes."""
    last = None
    while True:
        last = probe()
        if last:
            print("ok: %s" % what)
            return last
        if time.monotonic() >= deadline:
            raise Failed("timed out waiting for %s (last probe: %r)" % (what, last))
        time.sleep(POLL_INTERVAL_SECS)


def topic_stats(client, topic):
    stats = client.stats(topic=topic)
    if not isinstance(stats, dict):
        raise Failed("/stats did not return a JSON object: %r" % (stats,))
    for t in stats.get("topics") or []:
        if t.get("topic_name") == topic:
            return t
    return None


def channel_stats(client, topic, channel):
    t = topic_stats(client, topic)
    for c in (t or {}).get("channels") or []:
        if c.get("channel_name") == channel:
            return c
    return None


def published_bodies():
    return [("pub-%d" % i).encode() for i in range(PUB_COUNT)] + MPUB_TEXT + MPUB_BINARY


def publish_all(client, topic):
    for i, body in enumerate(published_bodies()[:PUB_COUNT]):
        resp = client.publish(topic, body)
        check(resp == b"OK", "publish #%d answered OK (got %r)" % (i, resp))
    resp = client.multipublish(topic, MPUB_TEXT)
    check(resp == b"OK", "text multipublish of %d answered OK (got %r)" % (len(MPUB_TEXT), resp))
    resp = client.multipublish(topic, MPUB_BINARY, binary=True)
    check(
        resp == b"OK",
        "binary multipublish of %d answered OK (got %r)" % (len(MPUB_BINARY), resp),
    )
    return PUB_COUNT + len(MPUB_TEXT) + len(MPUB_BINARY)


def check_published(client, topic, total, deadline):
    t = topic_stats(client, topic)
    check(t is not None, "/stats lists topic %s" % topic)
    check(
        t.get("message_count") == total,
        "topic message_count == %d (got %r)" % (total, t.get("message_count")),
    )
    body_bytes = sum(len(b) for b in published_bodies())
    check(
        t.get("message_bytes") == body_bytes,
        "topic message_bytes == %d, binary bodies kept whole (got %r)"
        % (body_bytes, t.get("message_bytes")),
    )
    # The topic hands messages to its channel asynchronously (nsqd's messagePump).
    wait_until(
        deadline,
        "channel %s holds all %d messages" % (CHANNEL, total),
        lambda: (channel_stats(client, topic, CHANNEL) or {}).get("depth") == total,
    )


def check_pause(client, topic):
    client.pause_topic(topic)
    check(topic_stats(client, topic).get("paused") is True, "pause_topic shows paused")
    client.unpause_topic(topic)
    check(topic_stats(client, topic).get("paused") is False, "unpause_topic shows unpaused")
    client.pause_channel(topic, CHANNEL)
    check(
        channel_stats(client, topic, CHANNEL).get("paused") is True,
        "pause_channel shows paused",
    )
    client.unpause_channel(topic, CHANNEL)
    check(
        channel_stats(client, topic, CHANNEL).get("paused") is False,
        "unpause_channel shows unpaused",
    )


def check_empty(client, topic, total):
    client.empty_channel(topic, CHANNEL)
    c = channel_stats(client, topic, CHANNEL)
    check(c is not None and c.get("depth") == 0, "empty_channel leaves depth 0 (got %r)" % c)

    # A paused topic delivers nothing; the new messages wait (in the topic for nsqd, which
    # stops its messagePump; counted at the channel by ringsq's shared topic log). Either way
    # topic depth + channel depth counts them, and empty_topic drops them.
    client.pause_topic(topic)
    resp = client.multipublish(topic, [b"held-1", b"held-2", b"held-3"])
    check(resp == b"OK", "multipublish to the paused topic answered OK")
    t = topic_stats(client, topic)
    check(
        t.get("message_count") == total + 3,
        "topic message_count == %d after 3 more (got %r)" % (total + 3, t.get("message_count")),
    )
    check(queued(client, topic) == 3, "paused topic keeps the 3 new messages queued")
    client.empty_topic(topic)
    check(queued(client, topic) == 0, "empty_topic drops them (topic + channel depth 0)")
    client.unpause_topic(topic)
    check(topic_stats(client, topic).get("paused") is False, "unpause_topic after empty")
    check(queued(client, topic) == 0, "nothing comes back after unpausing")


def queued(client, topic):
    """Messages waiting anywhere under the topic: its own depth plus its channel's."""
    t = topic_stats(client, topic)
    c = channel_stats(client, topic, CHANNEL)
    return (t or {}).get("depth", 0) + (c or {}).get("depth", 0)


def check_errors_and_delete(client, topic):
    # nsqd's V1 error body is {"message": ...}; gnsq 1.0.2 looks for "status_txt", so all it
    # reports is the status: "http error <404>".
    try:
        client.empty_channel(topic, "no_such_channel")
    except NSQHttpError as e:
        check("<404>" in str(e), "unknown channel is NSQHttpError %r" % str(e))
    else:
        raise Failed("empty_channel on an unknown channel did not raise NSQHttpError")

    client.delete_channel(topic, CHANNEL)
    t = topic_stats(client, topic)
    names = [c.get("channel_name") for c in (t or {}).get("channels") or []]
    check(CHANNEL not in names, "delete_channel removes it from /stats (channels %r)" % names)
    client.delete_topic(topic)
    check(topic_stats(client, topic) is None, "delete_topic removes it from /stats")
    try:
        client.delete_topic(topic)
    except NSQHttpError as e:
        check("<404>" in str(e), "deleting it again is NSQHttpError %r" % str(e))
    else:
        raise Failed("delete_topic on a deleted topic did not raise NSQHttpError")


def run(client, topic, deadline):
    check(client.ping() == b"OK", "ping answers OK")
    info = client.info()
    check(isinstance(info, dict) and "version" in info, "info has a version (%r)" % (info,))

    client.create_topic(topic)
    client.create_channel(topic, CHANNEL)
    c = channel_stats(client, topic, CHANNEL)
    check(c is not None and c.get("depth") == 0, "created topic and channel show in /stats")

    total = publish_all(client, topic)
    check_published(client, topic, total, deadline)
    text = client.stats(text=True)
    check(
        isinstance(text, bytes) and topic.encode() in text,
        "text /stats names the topic",
    )
    check_pause(client, topic)
    check_empty(client, topic, total)
    check_errors_and_delete(client, topic)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--http", required=True, help="ringsq HTTP address HOST:PORT")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    host, _, port = args.http.rpartition(":")
    deadline = time.monotonic() + args.timeout

    client = gnsq.NsqdHTTPClient(host, int(port), timeout=REQUEST_TIMEOUT_SECS, retries=False)
    print("gnsq %s against %s" % (gnsq.__version__, client.address))
    try:
        run(client, args.topic, deadline)
    except (Failed, NSQHttpError) as e:
        print("FAIL: %s: %s" % (type(e).__name__, e))
        return 1
    print("PASS: gnsq HTTP client checks all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
