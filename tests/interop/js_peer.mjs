// js-libp2p peer for Glueberry's interoperability tests (test-only).
//
// Usage: node js_peer.mjs [--listen /ip4/127.0.0.1/tcp/0]
//
// Speaks the JSON-lines peer protocol shared with tests/interop/py_peer.py and
// tests/helpers/glueberry_peer.py (see tests/helpers/peer_process.py):
//   stdout: one JSON object per line. First {"event": "ready", "peer_id", "addrs",
//           "agent_version", "protocols"}; then one reply per command, carrying the
//           command's "id" ({"id", "ok": true, ...} or {"id", "ok": false, "error"}), and
//           unsolicited {"event": "exchange", "role": "responder", ...} for inbound
//           exchange streams.
//   stdin:  one command per line: {"id", "cmd": "dial" | "exchange" | "identify" |
//           "ping" | "disconnect" | "exit", ...}. EOF on stdin stops the node.
//
// The exchange protocol (/glueberry-interop/exchange/1.0.0): frames are a 4-byte
// big-endian length then the payload. The initiator sends a header frame
// {"count": N, "size": S} (JSON); then each side sends N random frames of S bytes and
// half-closes, while reading the other side's frames until end of stream. Both sides
// report counts and SHA-256 digests of what they sent and received.

// Node 20 lacks Promise.withResolvers, which js-libp2p 3 uses: polyfill it *before*
// loading libp2p (static imports are hoisted, so libp2p is imported dynamically below).
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createHash, randomBytes } = await import('node:crypto')
const readline = await import('node:readline')
const { createLibp2p } = await import('libp2p')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { tcp } = await import('@libp2p/tcp')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { peerIdFromString } = await import('@libp2p/peer-id')
const { multiaddr } = await import('@multiformats/multiaddr')

const EXCHANGE = '/glueberry-interop/exchange/1.0.0'
const SINK = '/glueberry-interop/sink/1.0.0'
const MAX_FRAME = 16 * 1024 * 1024

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function parseArgs (argv) {
  const out = { listen: ['/ip4/127.0.0.1/tcp/0'] }
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--listen') out.listen = [argv[++i]]
  }
  return out
}

function frame (payload) {
  const header = Buffer.alloc(4)
  header.writeUInt32BE(payload.length, 0)
  return Buffer.concat([header, payload])
}

// Accumulates chunks and yields complete frames.
class FrameReader {
  constructor () { this.buf = Buffer.alloc(0) }
  push (chunk) {
    const bytes = chunk.subarray ? chunk.subarray() : chunk
    this.buf = this.buf.length === 0 ? Buffer.from(bytes) : Buffer.concat([this.buf, bytes])
    const frames = []
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0)
      if (len > MAX_FRAME) throw new Error(`frame too large: ${len}`)
      if (this.buf.length < 4 + len) break
      frames.push(this.buf.subarray(4, 4 + len))
      this.buf = this.buf.subarray(4 + len)
    }
    return frames
  }
}

async function send (stream, data) {
  if (!stream.send(data)) {
    await stream.onDrain({ signal: AbortSignal.timeout(60000) })
  }
}

// Reads frames until end of stream; returns {count, sha256, bad_sizes, header}.
async function readFrames (stream, iterator, reader, expectHeader) {
  const hash = createHash('sha256')
  let count = 0
  let header = null
  const sizes = new Map()
  const handle = (payload) => {
    if (expectHeader && header === null) {
      header = JSON.parse(payload.toString('utf8'))
      return
    }
    count += 1
    sizes.set(payload.length, (sizes.get(payload.length) || 0) + 1)
    hash.update(payload)
  }
  for (;;) {
    const { value, done } = await iterator.next()
    if (done) break
    for (const payload of reader.push(value)) handle(payload)
  }
  if (reader.buf.length !== 0) throw new Error(`${reader.buf.length} trailing bytes at end of stream`)
  return { count, sha256: hash.digest('hex'), sizes: Object.fromEntries(sizes), header }
}

async function sendFrames (stream, count, size) {
  const hash = createHash('sha256')
  for (let i = 0; i < count; i++) {
    const payload = randomBytes(size)
    hash.update(payload)
    await send(stream, frame(payload))
  }
  await stream.close({ signal: AbortSignal.timeout(60000) })
  return { count, sha256: hash.digest('hex') }
}

async function runExchange (stream, role, params) {
  const started = performance.now()
  const iterator = stream[Symbol.asyncIterator]()
  const reader = new FrameReader()
  let count = params?.count
  let size = params?.size
  let received
  if (role === 'initiator') {
    await send(stream, frame(Buffer.from(JSON.stringify({ count, size }))))
    const [sent, recv] = await Promise.all([
      sendFrames(stream, count, size),
      readFrames(stream, iterator, reader, false)
    ])
    received = recv
    return finish(sent, received)
  }
  // Responder: the header comes first, then the peer's frames.
  const hash = createHash('sha256')
  let recvCount = 0
  const sizes = new Map()
  let header = null
  let sending = null
  for (;;) {
    const { value, done } = await iterator.next()
    if (done) break
    for (const payload of reader.push(value)) {
      if (header === null) {
        header = JSON.parse(payload.toString('utf8'))
        count = header.count
        size = header.size
        sending = sendFrames(stream, count, size)
        sending.catch(() => {})
        continue
      }
      recvCount += 1
      sizes.set(payload.length, (sizes.get(payload.length) || 0) + 1)
      hash.update(payload)
    }
  }
  if (header === null) throw new Error('stream ended before the exchange header')
  if (reader.buf.length !== 0) throw new Error(`${reader.buf.length} trailing bytes at end of stream`)
  const sent = await sending
  received = { count: recvCount, sha256: hash.digest('hex'), sizes: Object.fromEntries(sizes) }
  return finish(sent, received)

  function finish (sent, recv) {
    return {
      role,
      protocol: stream.protocol,
      count,
      size,
      sent_count: sent.count,
      sent_sha256: sent.sha256,
      recv_count: recv.count,
      recv_sha256: recv.sha256,
      recv_sizes: recv.sizes,
      elapsed_ms: performance.now() - started
    }
  }
}

// Sink: the initiator streams raw bytes and half-closes; the responder answers with the
// 8-byte big-endian byte count it received, then closes.
async function runSinkResponder (stream) {
  let total = 0n
  for await (const chunk of stream) total += BigInt(chunk.byteLength)
  const reply = Buffer.alloc(8)
  reply.writeBigUInt64BE(total, 0)
  await send(stream, reply)
  await stream.close({ signal: AbortSignal.timeout(60000) })
}

const args = parseArgs(process.argv.slice(2))
const identified = new Map() // peer id -> {agent_version, protocols}
const waiters = new Map() // peer id -> [resolve]

const AGENT_VERSION = `js-libp2p/3.2.0 glueberry-interop node/${process.versions.node}`

const node = await createLibp2p({
  nodeInfo: { userAgent: AGENT_VERSION },
  addresses: { listen: args.listen },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() },
  connectionManager: {
    maxConnections: 4096,
    maxIncomingPendingConnections: 1024,
    inboundConnectionThreshold: 100000
  }
})

node.addEventListener('peer:identify', (evt) => {
  const r = evt.detail
  const key = r.peerId.toString()
  identified.set(key, { agent_version: r.agentVersion ?? null, protocols: r.protocols })
  for (const resolve of waiters.get(key) ?? []) resolve()
  waiters.delete(key)
})

await node.handle(EXCHANGE, async (stream, connection) => {
  try {
    const result = await runExchange(stream, 'responder', null)
    emit({ event: 'exchange', remote_peer: connection.remotePeer.toString(), ...result })
  } catch (err) {
    emit({ event: 'exchange_error', role: 'responder', error: String(err?.stack ?? err) })
    stream.abort(err)
  }
}, { maxInboundStreams: 256 })

await node.handle(SINK, async (stream) => {
  try {
    await runSinkResponder(stream)
  } catch (err) {
    stream.abort(err)
  }
}, { maxInboundStreams: 256 })

const selfProtocols = node.getProtocols()
emit({
  event: 'ready',
  impl: 'js-libp2p',
  peer_id: node.peerId.toString(),
  addrs: node.getMultiaddrs().map((a) => a.toString()),
  agent_version: AGENT_VERSION,
  protocols: selfProtocols
})

// The connection to `peer`. When the other side dialed, its dial can return before our
// side of the upgrade has finished: wait (bounded) for the connection to be registered.
async function connectionTo (peer, timeoutMs = 10000) {
  const id = peerIdFromString(peer)
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const conns = node.getConnections(id).filter((c) => c.status === 'open')
    if (conns.length > 0) return conns[0]
    if (Date.now() > deadline) throw new Error(`not connected to ${peer}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function waitIdentified (peer, timeoutMs) {
  if (identified.has(peer)) return identified.get(peer)
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no identify from ${peer} within ${timeoutMs} ms`)), timeoutMs)
    const list = waiters.get(peer) ?? []
    list.push(() => { clearTimeout(timer); resolve() })
    waiters.set(peer, list)
  })
  return identified.get(peer)
}

const commands = {
  async dial (cmd) {
    const started = performance.now()
    const conn = await node.dial(multiaddr(cmd.addr), { signal: AbortSignal.timeout((cmd.timeout ?? 10) * 1000) })
    return {
      remote_peer: conn.remotePeer.toString(),
      encryption: conn.encryption,
      multiplexer: conn.multiplexer,
      elapsed_ms: performance.now() - started
    }
  },
  async exchange (cmd) {
    const conn = await connectionTo(cmd.peer)
    const stream = await conn.newStream(EXCHANGE, { signal: AbortSignal.timeout((cmd.timeout ?? 30) * 1000) })
    const result = await runExchange(stream, 'initiator', { count: cmd.count, size: cmd.size })
    return { remote_peer: cmd.peer, ...result }
  },
  async identify (cmd) {
    await connectionTo(cmd.peer)
    const info = await waitIdentified(cmd.peer, (cmd.timeout ?? 10) * 1000)
    const conn = await connectionTo(cmd.peer)
    return {
      peer: cmd.peer,
      agent_version: info.agent_version,
      protocols: info.protocols,
      encryption: conn.encryption,
      multiplexer: conn.multiplexer
    }
  },
  async ping (cmd) {
    await connectionTo(cmd.peer)
    const rtt = await node.services.ping.ping(peerIdFromString(cmd.peer), { signal: AbortSignal.timeout((cmd.timeout ?? 10) * 1000) })
    return { rtt_ms: rtt }
  },
  async disconnect (cmd) {
    await node.hangUp(peerIdFromString(cmd.peer))
    return {}
  },
  // Dial `addr` `n` times, a fresh connection each time; latencies in ms.
  async bench_dial (cmd) {
    const ma = multiaddr(cmd.addr)
    const latencies = []
    for (let i = 0; i < cmd.n; i++) {
      const started = performance.now()
      const conn = await node.dial(ma, { signal: AbortSignal.timeout((cmd.timeout ?? 10) * 1000) })
      latencies.push(performance.now() - started)
      await conn.close()
    }
    return { latencies_ms: latencies }
  },
  // Write `total` bytes in writes of `size` on a sink stream; time until acknowledged.
  async bench_sink (cmd) {
    const conn = await connectionTo(cmd.peer)
    const chunk = randomBytes(cmd.size)
    const stream = await conn.newStream(SINK, { signal: AbortSignal.timeout(10000) })
    const started = performance.now()
    let sent = 0
    while (sent < cmd.total) {
      await send(stream, chunk)
      sent += cmd.size
    }
    await stream.close({ signal: AbortSignal.timeout((cmd.timeout ?? 120) * 1000) })
    let reply = Buffer.alloc(0)
    for await (const part of stream) {
      reply = Buffer.concat([reply, part.subarray ? part.subarray() : part])
    }
    const seconds = (performance.now() - started) / 1000
    if (reply.length !== 8) throw new Error(`sink replied ${reply.length} bytes`)
    return { bytes: sent, acked: Number(reply.readBigUInt64BE(0)), seconds }
  },
  async connected (cmd) {
    return { connected: node.getConnections(peerIdFromString(cmd.peer)).some((c) => c.status === 'open') }
  }
}

let stopping = false
async function stop (code) {
  if (stopping) return
  stopping = true
  const timer = setTimeout(() => process.exit(code), 3000)
  timer.unref()
  try { await node.stop() } catch {}
  process.exit(code)
}

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  if (!line.trim()) return
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (err) {
    emit({ id: null, ok: false, error: `bad command: ${err}` })
    return
  }
  if (cmd.cmd === 'exit') {
    emit({ id: cmd.id, ok: true })
    stop(0)
    return
  }
  const fn = commands[cmd.cmd]
  if (!fn) {
    emit({ id: cmd.id, ok: false, error: `unknown command ${cmd.cmd}` })
    return
  }
  fn(cmd).then(
    (result) => emit({ id: cmd.id, ok: true, ...result }),
    (err) => emit({ id: cmd.id, ok: false, error: String(err?.stack ?? err) })
  )
})
rl.on('close', () => stop(0))
process.on('SIGTERM', () => stop(0))
