// Node 20 lacks Promise.withResolvers (Node 22+), which js-libp2p 3.x calls at run
// time; this shim, imported before libp2p, is the only change Node 20 needs.
Promise.withResolvers ??= function withResolvers () {
  let resolve, reject
  const promise = new Promise((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}
