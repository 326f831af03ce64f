// Ads and bookings from the driver's side (protocol/_ad.py, _messages.py, node/_ads.py,
// node/_bookings.py): verify a host's signed ads, build the BookingRequest that freezes
// an ad's terms, and check the host's signed answer to it.
import { randomBytes } from 'node:crypto'
import { digest, equalBytes, hex, open, sha256, sign } from './wire.mjs'

export const AD_PROTOCOL = '/wattshare/ad/1.0.0'
export const BOOKING_PROTOCOL = '/wattshare/booking/1.0.0'

// The ads a host served, each verified: signed by its host, and that host is the peer
// that served it (`hostKey`); unexpired at `now`.
export async function verifyAds (adList, hostKey, now) {
  const ads = []
  for (const envelope of adList.ads) {
    const ad = await open(envelope, 'charger_ad', 'host')
    if (!equalBytes(envelope.signer, hostKey)) throw new Error(`ad ${ad.charger_id} is not the serving peer's`)
    if (ad.expires <= now) throw new Error(`ad ${ad.charger_id} expired`)
    ads.push(ad)
  }
  return ads
}

// The driver's signed request for [start, end) at the ad's charger, freezing its
// tariff, terms, zone, max power, public cell and country (the host refuses any change).
export async function signRequest (seed, driver, ad, { start, end, spendCap, now }) {
  return sign(seed, 'booking_request', {
    driver,
    host: ad.host,
    charger_id: ad.charger_id,
    ad_seq: ad.seq,
    tariff: ad.tariff,
    terms: ad.terms,
    tz: ad.tz,
    max_power_w: ad.max_power_w,
    geohash: ad.geohash,
    country: ad.country,
    start,
    end,
    spend_cap: spendCap,
    nonce: new Uint8Array(randomBytes(16)),
    created: now
  })
}

// The host's BookingAnswer checked against our request: a confirmation signed by the
// host naming this request, whose access digest is that of the sealed access beside it;
// a signed rejection throws with its reason code.
export async function checkAnswer (answer, request, hostKey) {
  const bookingId = digest(request)
  if (answer.rejection != null) {
    const rejection = await open(answer.rejection, 'booking_rejection')
    if (!equalBytes(answer.rejection.signer, hostKey)) throw new Error('the rejection is not the host\'s')
    throw new Error(`the host rejected the booking: ${rejection.reason}: ${rejection.detail}`)
  }
  const confirmation = await open(answer.confirmation, 'booking_confirmation')
  if (!equalBytes(answer.confirmation.signer, hostKey)) throw new Error('the confirmation is not the host\'s')
  if (!equalBytes(confirmation.booking_id, bookingId)) throw new Error('the confirmation names another request')
  if (!(answer.access instanceof Uint8Array) || !equalBytes(sha256(answer.access), confirmation.access_digest)) {
    throw new Error('the sealed access is not the one the confirmation signs')
  }
  return { bookingId: hex(bookingId), confirmed: confirmation.confirmed }
}
