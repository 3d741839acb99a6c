#!/usr/bin/env node
// server_load_test.mjs - many concurrent streaming clients against `gptoss serve`.
//
// usage: node tools/server_load_test.mjs --url http://127.0.0.1:PORT --model NAME
//            [--clients 32] [--requests 500] [--max-tokens 8] [--abort-every 10]
//
// Each client loops over requests (streaming SSE, parsed by hand so that the
// time to the first event is measured exactly): chat and completion requests
// alternate. Checks, all of which must hold:
//   - every non-aborted request: status 200, every chunk carries the request's own
//     id (ids unique across requests), ends with data: [DONE], usage right;
//   - greedy "probe" requests (fixed prompts, temperature 0) reproduce, under load,
//     the text they produced alone before the load (no cross-talk between the
//     sequences decoded together);
//   - every abort-every-th request disconnects after its first events; the others
//     are undisturbed and the server ends with no active or queued work.
// Prints requests/s and p50/p99 time to first token; exit 1 on any failure.
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const URL_ = args.url, MODEL = args.model;
const CLIENTS = +(args.clients || 32), TOTAL = +(args.requests || 500), MAXTOK = +(args["max-tokens"] || 8);
const ABORT_EVERY = +(args["abort-every"] || 10);
const PROBES = ["The quick brown fox", "In the beginning", "Once upon a time there", "42 is the answer to"];

let failures = 0;
const fail = (msg) => { failures++; if (failures <= 20) console.log(`FAIL ${msg}`); };

function body(i, probe) {
  if (probe !== undefined)
    return { path: "/v1/completions", json: { model: MODEL, prompt: PROBES[probe], max_tokens: MAXTOK, temperature: 0, stream: true, stream_options: { include_usage: true } } };
  if (i % 2 === 0)
    return { path: "/v1/chat/completions", json: { model: MODEL, messages: [{ role: "user", content: `Request ${i}: tell me about the number ${i}.` }],
      max_tokens: MAXTOK, stream: true, stream_options: { include_usage: true }, seed: i } };
  return { path: "/v1/completions", json: { model: MODEL, prompt: `Item ${i} of the list:`, max_tokens: MAXTOK, stream: true, stream_options: { include_usage: true }, seed: i } };
}

// One streaming request. Returns {ttft, text, ids, usage, done, events} or throws.
async function stream(path, json, abortAfter) {
  const ctl = new AbortController();
  const t0 = performance.now();
  const r = await fetch(`${URL_}${path}`, { method: "POST", signal: ctl.signal, headers: { "Content-Type": "application/json" }, body: JSON.stringify(json) });
  if (r.status !== 200) throw new Error(`status ${r.status}: ${(await r.text()).slice(0, 200)}`);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "", ttft = null, text = "", usage = null, done = false, events = 0, finish = null;
  const ids = new Set();
  for (;;) {
    const { value, done: eof } = await reader.read();
    if (eof) break;
    buf += dec.decode(value, { stream: true });
    let k;
    while ((k = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith("data: ")) throw new Error(`not an SSE data event: ${ev.slice(0, 80)}`);
      const data = ev.slice(6);
      if (ttft === null) ttft = performance.now() - t0;
      events++;
      if (data === "[DONE]") { done = true; continue; }
      const o = JSON.parse(data);
      if (o.error) throw new Error(`error event: ${data}`);
      ids.add(o.id);
      if (o.usage) usage = o.usage;
      for (const c of o.choices || []) {
        text += c.text ?? c.delta?.content ?? "";
        if (c.finish_reason) finish = c.finish_reason;
      }
      if (abortAfter && events >= abortAfter) { ctl.abort(); return { aborted: true, ttft }; }
    }
  }
  return { ttft, text, ids, usage, done, finish, total: performance.now() - t0 };
}

async function main() {
  // Baselines: each probe alone.
  const baseline = [];
  for (let p = 0; p < PROBES.length; p++) {
    const b = body(0, p);
    baseline.push((await stream(b.path, b.json)).text);
  }
  const ttfts = [], seenIds = new Set();
  let next = 0, ok = 0, aborted = 0, probesChecked = 0;
  const t0 = performance.now();
  async function client() {
    for (;;) {
      const i = next++;
      if (i >= TOTAL) return;
      const probe = i % 5 === 1 ? i % PROBES.length : undefined;
      const abort = probe === undefined && i % ABORT_EVERY === 3 ? 2 : 0;
      const b = body(i, probe);
      try {
        const res = await stream(b.path, b.json, abort);
        if (res.aborted) { aborted++; continue; }
        ttfts.push(res.ttft);
        if (!res.done) { fail(`request ${i}: no data: [DONE]`); continue; }
        if (res.ids.size !== 1) { fail(`request ${i}: chunks carry ${res.ids.size} ids`); continue; }
        const id = [...res.ids][0];
        if (seenIds.has(id)) fail(`request ${i}: id ${id} reused`);
        seenIds.add(id);
        if (!res.usage || res.usage.completion_tokens < 1 || res.usage.completion_tokens > MAXTOK)
          { fail(`request ${i}: usage ${JSON.stringify(res.usage)}`); continue; }
        if (probe !== undefined) {
          probesChecked++;
          if (res.text !== baseline[probe]) { fail(`request ${i}: probe ${probe} gave ${JSON.stringify(res.text)}, alone ${JSON.stringify(baseline[probe])}`); continue; }
        }
        ok++;
      } catch (e) {
        fail(`request ${i}: ${e.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: CLIENTS }, client));
  const secs = (performance.now() - t0) / 1000;
  ttfts.sort((a, b) => a - b);
  const pct = (q) => ttfts.length ? ttfts[Math.min(ttfts.length - 1, Math.floor(q * ttfts.length))] : NaN;
  // The server must end idle (aborted requests freed their sessions).
  let idle = false, h = null;
  for (let k = 0; k < 50 && !idle; k++) {
    h = await (await fetch(`${URL_}/health`)).json();
    idle = h.active === 0 && h.queued === 0;
    if (!idle) await new Promise((r) => setTimeout(r, 100));
  }
  if (!idle) fail(`server not idle after the load: ${JSON.stringify(h)}`);
  if (probesChecked < 10) fail(`only ${probesChecked} probes checked`);
  console.log(`load: ${CLIENTS} concurrent streaming clients, ${TOTAL} requests (${ok} ok, ${aborted} disconnected mid-stream, ${failures} failed), ${probesChecked} greedy probes matched their solo output`);
  console.log(`load: ${secs.toFixed(1)} s, ${(TOTAL / secs).toFixed(1)} requests/s, time to first token p50 ${pct(0.5).toFixed(0)} ms, p99 ${pct(0.99).toFixed(0)} ms, max ${ttfts[ttfts.length - 1]?.toFixed(0)} ms`);
  console.log(`${ok + aborted} passed, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}
main().catch((e) => { console.log(`FAIL ${e.stack || e}`); process.exit(1); });
