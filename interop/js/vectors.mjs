// Checks every test vector in vectors/ with this JavaScript implementation: valid
// envelopes, frames and ledger entries decode, verify and sign to the very same bytes;
// invalid inputs are refused with the reason code the vector names. Prints one JSON
// line per file and exits non-zero on any disagreement.
//
//     node vectors.mjs ../../vectors
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as ed from '@noble/ed25519'

import { Schema, WireError, decodeValue, framedLength } from './strict.mjs'
import { encode, encodeFrame, equalBytes, hex, sha256, signingInput } from './wire.mjs'

const folder = process.argv[2] ?? new URL('../../vectors', import.meta.url).pathname
const load = name => JSON.parse(readFileSync(join(folder, name), 'utf8'))
const schema = new Schema(load('schema.json'))
const bytes = text => Uint8Array.from(Buffer.from(text, 'hex'))

// The JSON form of a decoded value (vectors/README.md).
function toJson (value) {
  if (value instanceof Uint8Array) return { $bytes: hex(value) }
  if (typeof value === 'bigint') return Math.abs(Number(value)) < 2 ** 53 ? Number(value) : { $int: value.toString() }
  if (Array.isArray(value)) return value.map(toJson)
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [k, toJson(v)]))
  return value
}

// A decoded value as cborg encodes it back (Maps as plain objects, in canonical order).
function plain (value) {
  if (Array.isArray(value)) return value.map(plain)
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [k, plain(v)]))
  return value
}

function same (a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: ${JSON.stringify(a).slice(0, 200)} != ${JSON.stringify(b).slice(0, 200)}`)
}

async function validEnvelope (vector) {
  const data = bytes(vector.hex)
  const { type, signer, message } = await schema.envelope(decodeValue(data), vector.type)
  const seed = bytes(vector.seed)
  same(hex(await ed.getPublicKeyAsync(seed)), hex(signer), 'signer is the seed\'s key')
  const body = encode(plain(message))
  same(hex(signingInput(type, body)), vector.signing_input, 'signing input')
  const sig = await ed.signAsync(signingInput(type, body), seed) // Ed25519 is deterministic
  const again = encode({ sig, body, type, signer })
  same(hex(again), vector.hex, 'the same envelope, signed again')
  same(hex(sha256(data)), vector.digest, 'digest')
  same(toJson(message), vector.body, 'decoded body')
  return message
}

async function validFrame (vector) {
  const data = bytes(vector.hex)
  const [kind, record] = await schema.frame(data, [vector.kind])
  same(hex(encodeFrame(kind, plain(record))), vector.hex, 'the same frame, encoded again')
  same(toJson(new Map([[kind, record]])), vector.value, 'decoded frame')
}

async function refusal (vector) {
  const data = bytes(vector.hex)
  try {
    if (vector.decoder === 'envelope') await schema.envelope(decodeValue(data), vector.expect)
    else if (vector.decoder === 'frame') await schema.frame(data, [vector.expect])
    else {
      const [length, start] = framedLength(data)
      if (data.length - start < length) throw new WireError('malformed', 'the stream ended inside a frame')
      await schema.frame(data.subarray(start, start + length), [vector.expect])
    }
  } catch (err) {
    if (err instanceof WireError) return err.reason
    throw err
  }
  throw new Error('accepted')
}

async function entry (vector) {
  const message = await validEnvelope({ ...vector, type: 'ledger_entry' })
  const kind = message.get('kind')
  await schema.record(schema.schema.entry_kinds[kind], decodeValue(message.get('body'), 48 * 1024))
  same(kind, vector.kind, 'entry kind')
}

async function check (name, vectors, one) {
  const failed = []
  for (const vector of vectors) {
    try {
      await one(vector)
    } catch (err) {
      failed.push({ name: vector.name, error: err.message })
    }
  }
  console.log(JSON.stringify({ file: name, checked: vectors.length, failed }))
  return failed.length
}

const failures = [
  await check('envelopes.json', load('envelopes.json'), validEnvelope),
  await check('frames.json', load('frames.json'), validFrame),
  await check('invalid.json', load('invalid.json'), async vector => same(await refusal(vector), vector.reason, 'reason')),
  // an entry breaking a ledger `rule` (pricing, fees) is refused by ledgers and auditors, beyond a client's
  // checks: a client sees a well-formed, well-signed entry, as it does the valid ones
  await check('entries.json', load('entries.json'), entry),
].reduce((a, b) => a + b, 0)

process.exit(failures ? 1 : 0)
