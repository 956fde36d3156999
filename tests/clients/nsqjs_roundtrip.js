#!/usr/bin/env node
// Round trip through a real NSQ client: nsqjs 0.13.0 (Node) against ringsq.
//
// An nsqjs Writer publishes --count messages to --topic, half with PUB and half with MPUB
// (batches of 50); an nsqjs Reader on one channel consumes them. Exits 0 only if every publish
// was acknowledged and every distinct body was received; prints what went wrong otherwise.
//
// With --tls-ca PATH both connect with TLS (nsqjs `tls: true`, verifying the broker against that
// CA); with --auth-secret S both send AUTH (`authSecret`).
//
// Usage: node nsqjs_roundtrip.js --tcp HOST:PORT --count N --topic T [--timeout SECONDS]
//        [--tls-ca PATH] [--auth-secret S]
// Run by tests/clients.rs; deps in tests/clients/package.json (.ci/install-clients.sh).
'use strict'

const fs = require('fs')
const nsq = require('nsqjs')

const MPUB_BATCH = 50

function parseArgs (argv) {
  const args = { channel: 'nsqjs', timeout: 90 }
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '')
    args[key] = argv[i + 1]
  }
  for (const k of ['tcp', 'count', 'topic']) {
    if (args[k] === undefined) {
      console.error(`missing --${k}`)
      process.exit(2)
    }
  }
  args.count = parseInt(args.count, 10)
  args.timeout = parseFloat(args.timeout)
  return args
}

function main () {
  const args = parseArgs(process.argv.slice(2))
  const [host, port] = args.tcp.split(':')
  const bodies = []
  for (let i = 0; i < args.count; i++) bodies.push(`msg-${i}`)
  const expected = new Set(bodies)
  const received = new Set()
  const half = Math.floor(args.count / 2)
  const singles = bodies.slice(0, half)
  const batches = []
  for (let i = half; i < bodies.length; i += MPUB_BATCH) {
    batches.push(bodies.slice(i, i + MPUB_BATCH))
  }
  const nCommands = singles.length + batches.length
  let acks = 0
  const errors = []
  let done = false

  const connOpts = {}
  if (args['tls-ca']) {
    connOpts.tls = true
    connOpts.tlsVerification = true
    connOpts.ca = fs.readFileSync(args['tls-ca'])
  }
  if (args['auth-secret']) connOpts.authSecret = args['auth-secret']
  const reader = new nsq.Reader(args.topic, args.channel, Object.assign({
    nsqdTCPAddresses: [args.tcp],
    maxInFlight: 100
  }, connOpts))
  const writer = new nsq.Writer(host, parseInt(port, 10), connOpts)

  function finish (ok, why) {
    if (done) return
    done = true
    const missing = [...expected].filter((b) => !received.has(b)).length
    console.log(
      `nsqjs: ${why} (acks ${acks}/${nCommands}, received ${received.size}/${expected.size} distinct, missing ${missing})`
    )
    try { reader.close() } catch (e) {}
    try { writer.close() } catch (e) {}
    process.exit(ok ? 0 : 1)
  }

  function check () {
    if (errors.length > 0) finish(false, `publish errors: ${errors.slice(0, 5).join('; ')}`)
    else if (received.size === expected.size && acks === nCommands) finish(true, `all ${expected.size} messages received`)
  }

  function onAck (err) {
    if (err) errors.push(String(err))
    else acks += 1
    check()
  }

  reader.on('message', (msg) => {
    const body = msg.body.toString()
    if (!expected.has(body)) finish(false, `unexpected body ${JSON.stringify(body)}`)
    received.add(body)
    msg.finish()
    check()
  })
  reader.on('error', (err) => finish(false, `reader error: ${err}`))
  reader.on('discard', (msg) => finish(false, `reader discarded ${msg.body}`))

  writer.on('error', (err) => finish(false, `writer error: ${err}`))
  writer.on('ready', () => {
    for (const b of singles) writer.publish(args.topic, b, onAck)
    for (const batch of batches) writer.publish(args.topic, batch, onAck)
  })

  reader.connect()
  writer.connect()
  setTimeout(() => finish(false, `timed out after ${args.timeout}s`), args.timeout * 1000)
}

main()
