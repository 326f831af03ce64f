// wattshare's wire format in JavaScript: canonical CBOR, signed envelopes, digests and
// the frame union (mirrors protocol/_codec.py, _envelope.py and _wire.py). No I/O here,
// so a vectors checker can import it as it is.
import { createHash } from 'node:crypto'
import * as cborg from 'cborg'
import * as ed from '@noble/ed25519'

export const DOMAIN = new TextEncoder().encode('wattshare/v1\0')
export const MAX_MESSAGE_SIZE = 64 * 1024
export const GENESIS = new Uint8Array(32)
const MAX_DEPTH = 16
export const INT_MIN = -(2n ** 63n)
export const INT_MAX = 2n ** 63n - 1n

const SHORTEST = { 24: 24n, 25: 1n << 8n, 26: 1n << 16n, 27: 1n << 32n } // least argument each head size may carry

// A refusal with the reason code PROTOCOL.md gives (`malformed`, `non_canonical`, ...).
export class WireError extends Error {
  constructor (reason, message) {
    super(`${reason}: ${message}`)
    this.reason = reason
  }
}

export const refuse = (reason, message) => { throw new WireError(reason, message) }

// Why `data` is not one value of the wire subset with shortest heads, or null (the
// raw-byte scan of protocol/_codec.py): a fault of the subset (malformed) outranks a
// longer head than needed (non_canonical). Bounds what cborg is then given to parse.
export function scan (data) {
  let pos = 0
  let shortest = true
  const left = [1] // items still to read at each open level
  while (left.length) {
    if (left[left.length - 1] === 0) { left.pop(); continue }
    left[left.length - 1] -= 1
    if (pos >= data.length) return ['malformed', 'truncated']
    const initial = data[pos++]
    const major = initial >> 5
    const info = initial & 0x1f
    let argument = BigInt(info)
    if (info >= 24 && info < 28) {
      const size = 1 << (info - 24)
      if (pos + size > data.length) return ['malformed', 'truncated']
      argument = 0n
      for (let i = 0; i < size; i++) argument = (argument << 8n) | BigInt(data[pos + i])
      pos += size
      shortest = shortest && argument >= SHORTEST[info]
    } else if (info >= 28 && major !== 7) {
      return ['malformed', 'indefinite lengths are not allowed']
    }
    if (major < 2) continue
    const rest = BigInt(data.length - pos)
    if (major < 4) {
      if (argument > rest) return ['malformed', 'a string longer than the data']
      pos += Number(argument)
    } else if (major < 6) {
      const items = major === 5 ? argument * 2n : argument
      if (items > rest) return ['malformed', 'a container with more items than bytes']
      if (left.length > MAX_DEPTH) return ['malformed', 'nested too deeply']
      left.push(Number(items))
    } else if (major === 6) {
      return ['malformed', 'tags are not allowed']
    } else if (![0xf4, 0xf5, 0xf6].includes(initial)) {
      return ['malformed', 'floats and simple values other than false, true and null are not allowed']
    }
  }
  if (!shortest) return ['non_canonical', 'a number or length not in its shortest form']
  if (pos !== data.length) return ['non_canonical', 'bytes after the value']
  return null
}

// One value of the wire subset, parsed by cborg after the size cap and the scan; `maps`
// keeps maps as Maps in the order of the bytes (for a caller that checks key order
// itself), else they are plain objects.
export function parse (data, maxSize = MAX_MESSAGE_SIZE, maps = false) {
  if (data.length > maxSize) refuse('oversize', `${data.length} bytes exceeds the ${maxSize} byte cap`)
  const fault = scan(data)
  if (fault) refuse(...fault)
  try {
    return cborg.decode(data, { useMaps: maps, rejectDuplicateMapKeys: true, strict: true, allowIndefinite: false })
  } catch (err) {
    refuse('malformed', `not valid CBOR: ${err.message}`)
  }
}

// Deterministic CBOR (RFC 8949 core): shortest heads, map keys sorted; every map key in
// wattshare is text, where cborg's length-first order and bytewise order agree.
export function encode (value) {
  return cborg.encode(value)
}

// Strictly decode one wire value as plain objects: inside the data model and
// byte-for-byte canonical (which also holds every map's keys to their order).
export function decode (bytes, maxSize = MAX_MESSAGE_SIZE) {
  const value = parse(bytes, maxSize)
  checkPlain(value)
  if (!equalBytes(encode(value), bytes)) refuse('non_canonical', 'map keys not in deterministic order')
  return value
}

function checkPlain (value) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string' || value instanceof Uint8Array) return
  if (typeof value === 'bigint' || typeof value === 'number') {
    if (BigInt(value) < INT_MIN || BigInt(value) > INT_MAX) refuse('malformed', 'integer out of 64-bit range')
    return
  }
  if (Array.isArray(value)) return value.forEach(checkPlain)
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.values(value).forEach(checkPlain)
  }
  refuse('malformed', `${typeof value} is not allowed on the wire`)
}

export function sha256 (bytes) {
  return new Uint8Array(createHash('sha256').update(bytes).digest())
}

export function equalBytes (a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i])
}

export const hex = bytes => Buffer.from(bytes).toString('hex')

// What an envelope's signature covers: DOMAIN || type || 0x00 || body.
export function signingInput (type, body) {
  return concat(DOMAIN, new TextEncoder().encode(type), Uint8Array.of(0), body)
}

export function concat (...parts) {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0))
  parts.reduce((at, part) => { out.set(part, at); return at + part.length }, 0)
  return out
}

// Sign a message record (a plain object of its fields) as `type`; returns the envelope
// map {sig, body, type, signer} with the body's exact bytes inside.
export async function sign (seed, type, message) {
  const body = encode(message)
  const signer = await ed.getPublicKeyAsync(seed)
  const sig = await ed.signAsync(signingInput(type, body), seed)
  return { sig, body, type, signer }
}

// Verify an envelope map and return its decoded message; throws on any fault.
// `author` names the field that must equal the signer (ChargerAd.host, Entry.author...).
export async function open (envelope, type, author) {
  const { sig, body, signer } = envelope ?? {}
  if (envelope?.type !== type) throw new Error(`expected a ${type} envelope, got ${envelope?.type}`)
  if (!(sig instanceof Uint8Array) || sig.length !== 64 || !(signer instanceof Uint8Array) || signer.length !== 32 ||
      !(body instanceof Uint8Array)) throw new Error(`malformed ${type} envelope`)
  if (!await ed.verifyAsync(sig, signingInput(type, body), signer, { zip215: false })) {
    throw new Error(`${type} signature does not verify`)
  }
  const message = decode(body)
  if (author !== undefined && !equalBytes(message[author], signer)) {
    throw new Error(`${type} must be signed by its ${author}`)
  }
  return message
}

// An envelope's name: SHA-256 of its canonical encoding (booking ids, entry chains).
export function digest (envelope) {
  return sha256(encode(envelope))
}

// A frame is a map with one key, its kind ("ad_request", "ads", "booking_offer", ...).
export function encodeFrame (kind, record) {
  return encode({ [kind]: record })
}

// The record of a frame of one of the `allowed` kinds; a refusal ("error") is thrown
// with its reason code.
export function decodeFrame (bytes, allowed, maxSize = MAX_MESSAGE_SIZE) {
  const value = decode(bytes, maxSize)
  const kinds = Object.keys(value ?? {})
  if (typeof value !== 'object' || Array.isArray(value) || kinds.length !== 1) {
    throw new Error('a frame is a map with one key, its kind')
  }
  const [kind] = kinds
  if (kind === 'error') throw new Refused(value.error.reason, value.error.detail)
  if (!allowed.includes(kind)) throw new Error(`unexpected ${kind} frame`)
  return value[kind]
}

export class Refused extends Error {
  constructor (reason, detail) {
    super(`refused: ${reason}: ${detail}`)
    this.reason = reason
    this.detail = detail
  }
}
