// A second wattshare client, on js-libp2p: bootstrap from a co-op node, find a host of a
// geohash-5 cell through the Kademlia DHT, fetch and verify its signed ad, and (given a
// window and a cap) book it: sign the request, put its HOLD on our own ledger feed,
// push that to the host, and check the host's signed confirmation. One JSON line per
// step on stdout; any failure is one line on stderr and exit status 1.
//
//   node client.mjs --bootstrap /ip4/127.0.0.1/tcp/P/p2p/ID --cell u33dc --seed HEX64
//                   [--now UNIX_S] [--start UNIX_S --end UNIX_S --cap MINOR_UNITS] [--timeout MS]
import { parseArgs } from 'node:util'
import { multiaddr } from '@multiformats/multiaddr'
import { AD_PROTOCOL, BOOKING_PROTOCOL, checkAnswer, signRequest, verifyAds } from './booking.mjs'
import { Feed, SYNC_PROTOCOL } from './ledger.mjs'
import { ask, awaitRoutingTable, cellCid, startNode } from './net.mjs'

const { values: args } = parseArgs({
  options: {
    bootstrap: { type: 'string' },
    cell: { type: 'string' },
    seed: { type: 'string' },
    now: { type: 'string' },
    start: { type: 'string' },
    end: { type: 'string' },
    cap: { type: 'string' },
    timeout: { type: 'string', default: '10000' }
  }
})
const PUSH_TIMEOUT_MS = 3000 // a host that takes no push pulls the HOLD itself before it answers
const timeoutMs = Number(args.timeout)
const origin = args.now === undefined ? Date.now() / 1000 : Number(args.now)
const began = performance.now()
const now = () => Math.floor(origin + (performance.now() - began) / 1000) // the nodes' clock, as the test gives it

let stepStarted = performance.now()
function step (name, facts) {
  const ms = Math.round(performance.now() - stepStarted)
  console.log(JSON.stringify({ step: name, ...facts, ms }))
  stepStarted = performance.now()
}

// A whole number from the command line (UTC seconds, minor units), or an error naming it.
function integer (name) {
  const value = Number(args[name])
  if (!Number.isSafeInteger(value)) throw new Error(`--${name} must be a whole number`)
  return value
}

async function main (node, seed) {
  const feed = new Feed(seed, node.peerId.publicKey.raw)
  await node.handle(SYNC_PROTOCOL, stream => feed.serve(stream, timeoutMs))
  const coop = await node.dial(multiaddr(args.bootstrap), { signal: AbortSignal.timeout(timeoutMs) })
  await awaitRoutingTable(node, AbortSignal.timeout(timeoutMs))
  step('joined', { coop: coop.remotePeer.toString() })

  let host = null
  for await (const provider of node.contentRouting.findProviders(cellCid(args.cell), { signal: AbortSignal.timeout(timeoutMs) })) {
    if (!provider.id.equals(node.peerId)) {
      host = provider
      break
    }
  }
  if (host === null) throw new Error(`no provider of cell ${args.cell}`)
  step('found', { host: host.id.toString(), cell: args.cell, addrs: host.multiaddrs.map(String) })

  await node.peerStore.merge(host.id, { multiaddrs: host.multiaddrs })
  const hostKey = host.id.publicKey.raw
  const adList = await ask(node, host.id, AD_PROTOCOL, 'ad_request', {}, ['ads'], timeoutMs)
  const [ad] = await verifyAds(adList, hostKey, now())
  if (ad === undefined) throw new Error('the host serves no ads')
  step('ad', { verified: true, host: host.id.toString(), charger_id: ad.charger_id, seq: ad.seq, ads: adList.ads.length })
  if (args.start === undefined) return

  const window = { start: integer('start'), end: integer('end'), spendCap: integer('cap'), now: now() }
  const request = await signRequest(seed, feed.author, ad, window)
  const seq = await feed.append('hold', { request }, now())
  const pushed = await feed.push(node, host.id, PUSH_TIMEOUT_MS)
  step('hold', { seq, pushed })

  const answer = await ask(node, host.id, BOOKING_PROTOCOL, 'booking_offer', { request }, ['booking_answer'], timeoutMs)
  const { bookingId, confirmed } = await checkAnswer(answer, request, hostKey)
  step('booked', { booking_id: bookingId, confirmed, host: host.id.toString() })
}

const seed = Uint8Array.from(Buffer.from(args.seed ?? '', 'hex'))
let node = null
try {
  if (seed.length !== 32 || !args.bootstrap || !args.cell) throw new Error('usage: --bootstrap ADDR --cell GEOHASH5 --seed HEX64')
  node = await startNode(seed)
  await main(node, seed)
} catch (error) {
  process.stderr.write(`error: ${String(error?.message ?? error).split('\n')[0]}\n`)
  process.exitCode = 1
} finally {
  await Promise.race([node?.stop(), new Promise(resolve => setTimeout(resolve, 2000))])
  process.exit() // libp2p may hold timers past stop()
}
