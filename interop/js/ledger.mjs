// The client's own ledger feed and the replication it needs (ledger/_entry.py,
// ledger/_replication.py, node/_sync.py): a HOLD entry it signs itself, served to a
// host that pulls it over /wattshare/ledger-sync/1.0.0, and pushed before a booking.
import { setTimeout as sleep } from 'node:timers/promises'
import { Frames } from './net.mjs'
import { GENESIS, concat, encode, equalBytes, sha256, sign } from './wire.mjs'

export const SYNC_PROTOCOL = '/wattshare/ledger-sync/1.0.0'
const SYNC_FRAME = 4 * 1024 * 1024

// RFC 6962 / 9162 Merkle tree hash of a feed's entry envelopes (ledger/_merkle.py).
export function merkleRoot (leaves) {
  if (leaves.length === 0) return sha256(new Uint8Array())
  if (leaves.length === 1) return sha256(concat(Uint8Array.of(0), leaves[0]))
  let split = 1
  while (split * 2 < leaves.length) split *= 2
  return sha256(concat(Uint8Array.of(1), merkleRoot(leaves.slice(0, split)), merkleRoot(leaves.slice(split))))
}

// One author's feed, held in memory: the exact envelope bytes of its entries.
export class Feed {
  constructor (seed, author) {
    this.seed = seed // signs its entries
    this.author = author
    this.entries = []
    this.tip = GENESIS
  }

  // Append an entry of `kind` with the record `body`, dated `t` (UTC seconds).
  async append (kind, body, t) {
    const entry = { author: this.author, seq: this.entries.length, prev: this.tip, t, kind, body: encode(body) }
    const envelope = encode(await sign(this.seed, 'ledger_entry', entry))
    this.entries.push(envelope)
    this.tip = sha256(envelope)
    return entry.seq
  }

  have () {
    const size = this.entries.length
    const sizes = size ? [{ author: this.author, size, root: merkleRoot(this.entries) }] : []
    return { sizes, heads: [], forks: [], only: [this.author], since: null, mark: null } // tell us of our own feed only, every time
  }

  // The server's side of a sync: Have for Have, then the wanted ranges of this feed.
  async serve (stream, timeoutMs) {
    const signal = AbortSignal.timeout(timeoutMs)
    const frames = new Frames(stream, SYNC_FRAME)
    try {
      await frames.receive(['sync_have'], signal)
      await frames.send('sync_have', this.have(), signal)
      const want = await frames.receive(['sync_want'], signal)
      for (const { author, start, end } of want.ranges) {
        if (equalBytes(author, this.author)) {
          await frames.send('sync_batch', { entries: this.entries.slice(start, end) }, signal)
        }
      }
      await frames.send('sync_batch', { entries: [] }, signal)
      await stream.close({ signal })
    } catch (error) {
      stream.abort(error)
    }
  }

  // Make sure `peer` holds this feed, as a short-lived wallet does before it leaves
  // (node/_sync.py `push`): true once it does, false if it did not within the timeout.
  async push (node, peer, timeoutMs) {
    const signal = AbortSignal.timeout(timeoutMs)
    try {
      while (!await this.heldBy(node, peer, signal)) await sleep(200, undefined, { signal })
      return true
    } catch (error) {
      if (signal.aborted) return false
      throw error
    }
  }

  // One pull from `peer`, wanting nothing: it shows the peer our sizes, so it pulls back
  // what it lacks (soon after, on a stream of its own). True if its Have lists the whole feed.
  async heldBy (node, peer, signal) {
    const stream = await node.dialProtocol(peer, SYNC_PROTOCOL, { signal })
    const frames = new Frames(stream, SYNC_FRAME)
    await frames.send('sync_have', this.have(), signal)
    const theirs = await frames.receive(['sync_have'], signal)
    await frames.send('sync_want', { ranges: [] }, signal)
    let batch
    do { batch = await frames.receive(['sync_batch'], signal) } while (batch.entries.length) // none: we want nothing
    await stream.close({ signal })
    const held = theirs.sizes.find(size => equalBytes(size.author, this.author))?.size ?? 0
    return held >= this.entries.length
  }
}
