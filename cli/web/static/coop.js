/* The co-op's view: the audit of its ledger, members and balances, money in and out, checkpoints. */
import { act, api, field, fill, h, money, peer, table, when, $ } from "./util.js";

async function coopAudit(main) {
  const out = h("section", { id: "audit-report", "aria-live": "polite" });
  const check = (full) => (e) => act(e.currentTarget, async () => {
    out.replaceChildren(h("p", { class: "muted" }, full ? "Verifying every entry…" : "Verifying the new entries…"), h("progress", { "aria-label": "audit running" }));
    const r = await api(`/api/coop/audit${full ? "?full=1" : ""}`);
    const members = Object.entries(r.by_member);
    const what = r.since ? `${r.entries} new entries (${r.since} verified before)` : `${r.entries} entries`;
    fill(out, h("p", { class: `notice ${r.ok ? "" : "bad"}`, id: "audit-verdict" },
      r.ok ? `Pass: ${what} in ${r.feeds} feeds verified, ${r.checkpoints}${r.since ? " new" : ""} checkpoint(s), in ${r.seconds} s.`
        : `${r.violations.length} violation(s) in ${what}.`),
    members.length ? [h("h3", {}, "Violations by member"), table([["Member"], ["Violations", true]], members.map(([m, n]) => [m === "the file" ? m : peer(m), n])),
      table([["Rule"], ["Member"], ["Seq", true], ["Detail"]], r.violations.map((v) => [v.rule, v.author ? peer(v.author) : "", v.seq ?? "", v.detail]))] : null,
    r.unwitnessed.length ? [h("h3", {}, "Not yet witnessed"), table([["Feed"], ["Witnessed", true], ["Size", true]], r.unwitnessed.map((u) => [peer(u.feed), u.witnessed, u.size]))] : null,
    h("h3", {}, "Balances (recomputed)"), table([["Member"], ["Balance", true], ["Credit limit", true]], r.balances.map((b) =>
      [peer(b.member), money(b.balance, b.currency), money(b.credit_limit, b.currency)])));
  });
  main.append(h("h2", {}, "Audit of the co-op's ledger"),
    h("p", { class: "muted" }, "Every signature, chain, price and balance checked again, as `wattshare audit` does: the new entries against everything verified before, or the whole ledger."),
    h("p", { class: "actions" }, h("button", { type: "button", id: "run-audit-new", onclick: check(false) }, "Check the new entries"),
      h("button", { type: "button", id: "run-audit", class: "secondary", onclick: check(true) }, "Run the whole audit")),
    out);
}
async function coopMembers(main) {
  const m = await api("/api/coop/members");
  main.append(h("h2", {}, `${m.name}: members`), table([["Member"], ["Balance", true], ["Credit limit", true], ["Entries", true]],
    m.members.map((x) => [peer(x.member), money(x.balance, m.currency), money(x.credit_limit, m.currency), x.entries])));
}
async function coopMoney(main) {
  const m = await api("/api/coop/members");
  const form = h("form", { class: "card fields", id: "money-form" },
    field("Kind", h("select", { id: "kind" }, h("option", { value: "deposit" }, "deposit (money paid in)"), h("option", { value: "withdrawal" }, "withdrawal (money paid out)"))),
    field(`Amount (${m.currency})`, h("input", { id: "amount", inputmode: "decimal", required: true })),
    field("Member", h("select", { id: "member" }, m.members.map((x) => h("option", { value: x.member }, `${x.member.slice(0, 24)}…`))), true),
    field("Reference", h("input", { id: "reference", placeholder: "e.g. the bank transfer's reference" }), true),
    h("div", { class: "wide actions" }, h("button", { type: "submit" }, "Record it")),
    h("p", { class: "wide", id: "money-done", "aria-live": "polite" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const done = await act(form.querySelector("button"), () => api("/api/coop/money", {
      kind: $("#kind").value, amount: $("#amount").value.trim(), member: $("#member").value, reference: $("#reference").value }));
    if (done) $("#money-done").textContent = `Recorded: ${done.kind} of ${money(done.amount, done.currency)} (treasurer entry ${done.seq}).`;
  });
  main.append(h("h2", {}, "Deposits and withdrawals"), form);
}
async function coopCheckpoints(main) {
  const rows = await api("/api/coop/checkpoints");
  main.append(h("h2", {}, "Witness checkpoints"), rows.length ? table([["When"], ["Witness"], ["Seq", true], ["Feeds", true], ["Entries", true]],
    rows.map((c) => [when(c.t), peer(c.witness), c.seq, c.feeds, c.entries])) : h("p", { class: "muted" }, "None yet."));
}

export const pages = { audit: coopAudit, members: coopMembers, money: coopMoney, checkpoints: coopCheckpoints };
