// The js-libp2p side of the client: a TCP node on 127.0.0.1 (Noise only, yamux, no
// mDNS) with a client-mode Kademlia DHT on /ipfs/kad/1.0.0, the DHT key of a cell, and
// framed conversations on wattshare streams (node/_framing.py), every wait bounded.
import './node20.mjs'
import { createHash } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { decodeFrame, encodeFrame, MAX_MESSAGE_SIZE } from './wire.mjs'

export const KAD_PROTOCOL = '/ipfs/kad/1.0.0'
const RAW_CODEC = 0x55
const SHA2_256 = 0x12

// A node whose libp2p key is the participant's Ed25519 seed: its peer id is the key
// that signs its requests and ledger entries (DESIGN.md, "Identity").
export async function startNode (seed) {
  return createLibp2p({
    privateKey: await generateKeyPairFromSeed('Ed25519', seed),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      // passthroughMapper: keep loopback addresses (the default drops private ones);
      // initialQuerySelfInterval 0: lookups wait for the first self-query, by default 1 s after start
      dht: kadDHT({ protocol: KAD_PROTOCOL, clientMode: true, peerInfoMapper: passthroughMapper, initialQuerySelfInterval: 0 })
    }
  })
}

// The DHT key of a geohash-5 cell: a CIDv1 (raw) of the sha2-256 multihash of
// "wattshare/cell/v1/<cell>", the key py-libp2p nodes provide as hex "1220" + digest.
export function cellCid (cell) {
  const digest = createHash('sha256').update(`wattshare/cell/v1/${cell}`).digest()
  return CID.createV1(RAW_CODEC, createDigest(SHA2_256, new Uint8Array(digest)))
}

// Wait until identify has put a DHT server in the routing table (a lookup needs one).
export async function awaitRoutingTable (node, signal) {
  while (node.services.dht.routingTable.size === 0) {
    signal.throwIfAborted()
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

// Frames on one stream: an unsigned-varint length, then one canonical CBOR frame.
export class Frames {
  constructor (stream, maxSize = MAX_MESSAGE_SIZE) {
    this.stream = stream
    this.maxSize = maxSize
    this.lp = lpStream(stream, { maxDataLength: maxSize })
  }

  async send (kind, record, signal) {
    await this.lp.write(encodeFrame(kind, record), { signal })
  }

  async receive (allowed, signal) {
    const data = await this.lp.read({ signal })
    return decodeFrame(data.subarray(), allowed, this.maxSize)
  }
}

// Open a stream, send one frame, return the one reply (a refusal throws `Refused`).
export async function ask (node, peer, protocol, kind, record, allowed, timeoutMs) {
  const signal = AbortSignal.timeout(timeoutMs)
  const stream = await node.dialProtocol(peer, protocol, { signal })
  try {
    const frames = new Frames(stream)
    await frames.send(kind, record, signal)
    return await frames.receive(allowed, signal)
  } finally {
    await stream.close({ signal: AbortSignal.timeout(1000) }).catch(() => stream.abort(new Error('closed')))
  }
}
