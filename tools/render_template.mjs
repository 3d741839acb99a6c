#!/usr/bin/env node
// render_template.mjs - independent reference for `gptoss render`: renders a chat
// request JSON with the official chat_template.jinja through @huggingface/jinja.
//
// usage: node tools/render_template.mjs REQUEST.json [--date YYYY-MM-DD]
//            [--template PATH] [--no-generation-prompt]
//
// Before templating, the request gets the same normalisation gptoss_render_chat
// applies (documented in src/harmony_render.c):
//   - content null/missing -> "", content arrays of {"type":"text","text"} parts -> joined text
//   - "reasoning_content" / "reasoning" -> "thinking" (first non-null of thinking,
//     reasoning_content, reasoning)
//   - "tool_calls": null or [] -> removed
//   - tool-call "arguments" given as a JSON string -> the parsed JSON value
//     (kept as a string when it is not valid JSON)
//   - top-level null values of tools/reasoning_effort/builtin_tools/model_identity -> absent
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "node", "package.json"));
const { Template } = await import(require.resolve("@huggingface/jinja"));

const args = process.argv.slice(2);
let file = null, date = null, add_generation_prompt = true;
let templatePath = join(here, "..", "..", "shared", "reference", "chat_template.jinja");
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--date") date = args[++i];
  else if (args[i] === "--template") templatePath = args[++i];
  else if (args[i] === "--no-generation-prompt") add_generation_prompt = false;
  else file = args[i];
}
if (!file) {
  console.error("usage: render_template.mjs REQUEST.json [--date YYYY-MM-DD] [--template PATH]");
  process.exit(2);
}
if (!date) {
  const d = new Date();
  const p = (n) => String(n).padStart(2, "0");
  date = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

const req = JSON.parse(readFileSync(file, "utf8"));
const messages = (req.messages || []).map((m0) => {
  const m = { ...m0 };
  if (m.content === null || m.content === undefined) m.content = "";
  else if (Array.isArray(m.content))
    m.content = m.content.map((p) => (typeof p === "string" ? p : p.text)).join("");
  const thinking = [m.thinking, m.reasoning_content, m.reasoning].find((x) => x !== null && x !== undefined);
  delete m.thinking; delete m.reasoning_content; delete m.reasoning;
  if (thinking !== undefined) m.thinking = thinking;
  if (m.tool_calls === null || (Array.isArray(m.tool_calls) && m.tool_calls.length === 0)) delete m.tool_calls;
  if (Array.isArray(m.tool_calls)) {
    m.tool_calls = m.tool_calls.map((tc0) => {
      const tc = { ...tc0 };
      const f = tc.function ? { ...tc.function } : null;
      const holder = f || tc;
      if (typeof holder.arguments === "string") {
        try { holder.arguments = JSON.parse(holder.arguments); } catch { /* keep the string */ }
      }
      if (f) tc.function = f;
      return tc;
    });
  }
  return m;
});

// strftime_now is a built-in global that cannot be overridden: the date call in
// the template source is replaced by a variable holding the requested date.
const DATE_CALL = 'strftime_now("%Y-%m-%d")';
let source = readFileSync(templatePath, "utf8");
if (!source.includes(DATE_CALL)) {
  console.error(`render_template.mjs: ${templatePath} has no ${DATE_CALL}`);
  process.exit(1);
}
source = source.split(DATE_CALL).join("gptoss_current_date");
const ctx = { messages, add_generation_prompt, gptoss_current_date: date };
for (const k of ["tools", "reasoning_effort", "builtin_tools", "model_identity"])
  if (req[k] !== null && req[k] !== undefined) ctx[k] = req[k];

const template = new Template(source);
process.stdout.write(template.render(ctx));
