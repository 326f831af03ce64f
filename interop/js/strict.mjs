// Strict decoding with PROTOCOL.md's reason codes: values parsed as `wire.parse` does
// (section 5), each record checked against vectors/schema.json (section 11), each
// envelope's signature and signer (section 6), frames and their length prefixes
// (section 4). No I/O.
import * as ed from '@noble/ed25519'

import { INT_MAX, INT_MIN, MAX_MESSAGE_SIZE, WireError, parse, refuse, signingInput } from './wire.mjs'

export { WireError }

// One strictly parsed value, maps as Maps in the order of the bytes (each record's
// keys are then held to their order by `Schema`).
export function decodeValue (data, maxSize = MAX_MESSAGE_SIZE) {
  return parse(data, maxSize, true)
}

const keyOrder = (a, b) => {
  const x = new TextEncoder().encode(a)
  const y = new TextEncoder().encode(b)
  if (x.length !== y.length) return x.length - y.length
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i]
  return 0
}

// Exactly the `expected` keys, in that order (their canonical order), as records require.
function requireKeys (name, value, expected) {
  if (!(value instanceof Map)) refuse('malformed', `${name}: expected a map`)
  const keys = [...value.keys()]
  if (keys.length === expected.length && keys.every((key, i) => key === expected[i])) return
  const same = keys.length === expected.length && [...keys].sort(keyOrder).every((key, i) => key === [...expected].sort(keyOrder)[i])
  refuse(same ? 'non_canonical' : 'malformed', `${name}: keys ${keys.join(',')}, expected ${expected.join(',')}`)
}

const isInt = v => (typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'bigint' && v >= INT_MIN && v <= INT_MAX)

// A checker of decoded values against vectors/schema.json.
export class Schema {
  constructor (schema) {
    this.schema = schema
  }

  // The decoded record `value` of record `name`; verifies the envelopes inside.
  async record (name, value) {
    const record = this.schema.records[name]
    await this.map(name, value, record.keys)
  }

  async map (name, value, keys) {
    requireKeys(name, value, keys.map(k => k.key))
    for (const { key, type } of keys) {
      if (type.array !== undefined && type.max !== null && Array.isArray(value.get(key)) && value.get(key).length > type.max) {
        refuse('oversize', `${name}.${key}: more than ${type.max} items`)
      }
    }
    for (const { key, type } of keys) await this.field(`${name}.${key}`, value.get(key), type)
  }

  async field (name, value, type) {
    const wrong = () => refuse('malformed', `${name}: expected ${JSON.stringify(type)}`)
    if (type === 'int') return isInt(value) || wrong()
    if (type === 'bytes') return value instanceof Uint8Array || wrong()
    if (type === 'text') return typeof value === 'string' || wrong()
    if (type === 'bool') return typeof value === 'boolean' || wrong()
    if (type.enum !== undefined) return this.schema.enums[type.enum].includes(value) || wrong()
    if (type.optional !== undefined) return value === null || this.field(name, value, type.optional)
    if (type.record !== undefined) return this.record(type.record, value)
    if (type.map !== undefined) return this.map(name, value, type.map)
    if (type.envelope !== undefined) return this.envelope(value, type.envelope)
    if (!Array.isArray(value)) wrong()
    if (type.array.envelope !== undefined) {
      const sigs = value.map(item => item instanceof Map && item.get('sig') instanceof Uint8Array ? Buffer.from(item.get('sig')).toString('hex') : item)
      if (new Set(sigs).size < sigs.length) refuse('malformed', `${name}: the same signed message twice`)
    }
    for (const item of value) await this.field(name, item, type.array)
  }

  // A decoded envelope of message type `expect`: returns {type, signer, message}.
  async envelope (value, expect) {
    requireKeys('signed envelope', value, ['sig', 'body', 'type', 'signer'])
    const [sig, body, type, signer] = ['sig', 'body', 'type', 'signer'].map(k => value.get(k))
    if (typeof type !== 'string' || !(body instanceof Uint8Array)) refuse('malformed', 'envelope type must be text and body bytes')
    const recordName = this.schema.messages[type]
    if (recordName === undefined) refuse('unknown_type', `unknown message type ${type}`)
    if (expect !== undefined && type !== expect) refuse('unexpected_type', `expected ${expect}, got ${type}`)
    if (!(signer instanceof Uint8Array) || signer.length !== 32) refuse('malformed', 'signer must be a 32-byte Ed25519 key')
    if (!(sig instanceof Uint8Array) || sig.length !== 64) refuse('malformed', 'sig must be a 64-byte Ed25519 signature')
    if (!await ed.verifyAsync(sig, signingInput(type, body), signer, { zip215: false })) {
      refuse('bad_signature', `${type} signature does not verify`)
    }
    const message = decodeValue(body)
    await this.record(recordName, message)
    const author = this.schema.records[recordName].author
    if (author !== null && !Buffer.from(message.get(author)).equals(Buffer.from(signer))) {
      refuse('wrong_signer', `${type} must be signed by its ${author}`)
    }
    return { type, signer, message }
  }

  // One frame of one of the `allowed` kinds (or an error frame): returns [kind, record].
  async frame (data, allowed, maxSize = MAX_MESSAGE_SIZE) {
    const value = decodeValue(data, maxSize)
    if (!(value instanceof Map) || value.size !== 1) refuse('malformed', 'a frame is a map with one key, its kind')
    const [[kind, record]] = value
    const name = this.schema.frames[kind]
    if (name === undefined) refuse('unknown_type', `unknown frame kind ${String(kind).slice(0, 40)}`)
    if (kind !== 'error' && !allowed.includes(kind)) refuse('unexpected_type', `a ${kind} frame is not expected here`)
    await this.record(name, record)
    return [kind, record]
  }
}

// The length a stream's frame prefix gives (a minimal unsigned varint, no longer than
// `maxSize` needs), or the reason it is refused.
export function framedLength (data, maxSize = MAX_MESSAGE_SIZE) {
  const most = varintLength(maxSize)
  for (let i = 0; i < Math.min(most, data.length); i++) {
    if (!(data[i] & 0x80)) {
      if (i && data[i] === 0) refuse('malformed', 'length varint is not minimal')
      let length = 0
      for (let j = i; j >= 0; j--) length = length * 128 + (data[j] & 0x7f)
      if (length > maxSize) refuse('oversize', `frame length above the ${maxSize} byte cap`)
      return [length, i + 1]
    }
  }
  if (data.length >= most) refuse('oversize', `frame length above the ${maxSize} byte cap`)
  refuse('malformed', 'the stream ended inside a frame length')
}

function varintLength (n) {
  let bytes = 1
  while (n >= 128) { n = Math.floor(n / 128); bytes++ }
  return bytes
}
