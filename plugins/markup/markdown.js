// A small, dependency-free Markdown renderer: ATX headings (with ids),
// paragraphs, emphasis, strong, inline code, links, images, fenced code,
// block quotes, ordered and unordered lists (one level), horizontal rules.
// Everything else is text, HTML-escaped: a plugin's output is safe to embed.

// Latin letters with accents and their plain spelling. (The engine inside
// the component has no Unicode normalisation: `String.prototype.normalize`
// is missing there.)
const FOLD = {};
for (const [plain, accented] of Object.entries({
  a: "àáâãäåāăą", ae: "æ", c: "çćčĉċ", d: "ďđð", e: "èéêëēĕėęě", g: "ĝğġģ",
  h: "ĥħ", i: "ìíîïĩīĭįı", j: "ĵ", k: "ķ", l: "ĺļľŀł", n: "ñńņňŉ",
  o: "òóôõöøōŏő", oe: "œ", r: "ŕŗř", s: "śŝşš", ss: "ß", t: "ţťŧ", th: "þ",
  u: "ùúûüũūŭůűų", w: "ŵ", y: "ýÿŷ", z: "źżž",
})) {
  for (const ch of accented) FOLD[ch] = plain;
}

/** Lower-case words joined by `-`, accents removed: "Héllo, World!" -> "hello-world". */
export function slugify(text, separator = "-") {
  return String(text)
    .toLowerCase()
    .replace(/[^\u0000-\u007f]/g, (ch) => FOLD[ch] ?? ch)
    .replace(/[^a-z0-9]+/g, " ")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .join(separator);
}

export function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

function safeUrl(url) {
  const u = url.trim();
  return /^(javascript|vbscript|data):/i.test(u) ? "#" : u;
}

/** Inline Markdown of one block's text, escaped. */
export function inline(text) {
  const codes = [];
  let s = String(text).replace(/`([^`]+)`/g, (_, code) => {
    codes.push(`<code>${escapeHtml(code)}</code>`);
    return `\u0000${codes.length - 1}\u0000`;
  });
  s = escapeHtml(s);
  s = s.replace(/!\[([^\]]*)\]\(([^)\s]+)\)/g, (_, alt, url) =>
    `<img src="${safeUrl(url)}" alt="${alt}">`);
  s = s.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (_, label, url) =>
    `<a href="${safeUrl(url)}">${label}</a>`);
  s = s.replace(/\*\*(.+?)\*\*|__(.+?)__/g, (_, a, b) => `<strong>${a ?? b}</strong>`);
  s = s.replace(/\*(.+?)\*|\b_(.+?)_\b/g, (_, a, b) => `<em>${a ?? b}</em>`);
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => codes[Number(i)]);
}

/** The ATX headings of `markdown` outside code fences: {level, text, id}. */
export function headings(markdown) {
  const found = [];
  const used = new Map();
  let fenced = false;
  for (const line of String(markdown).split(/\r?\n/)) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      continue;
    }
    const m = !fenced && /^(#{1,6})\s+(.+?)\s*#*\s*$/.exec(line);
    if (m) {
      const text = m[2].trim();
      const base = slugify(text) || "section";
      const n = used.get(base) ?? 0;
      used.set(base, n + 1);
      found.push({ level: m[1].length, text, id: n === 0 ? base : `${base}-${n}` });
    }
  }
  return found;
}

/** Renders `markdown` to HTML. */
export function render(markdown) {
  const lines = String(markdown).split(/\r?\n/);
  const ids = headings(markdown).map((h) => h.id);
  const out = [];
  let paragraph = [];
  let list = null; // { tag, items }
  let quote = [];
  let h = 0;

  const flushParagraph = () => {
    if (paragraph.length) out.push(`<p>${inline(paragraph.join(" "))}</p>`);
    paragraph = [];
  };
  const flushList = () => {
    if (list) {
      const items = list.items.map((i) => `<li>${inline(i)}</li>`).join("");
      out.push(`<${list.tag}>${items}</${list.tag}>`);
    }
    list = null;
  };
  const flushQuote = () => {
    if (quote.length) out.push(`<blockquote>${render(quote.join("\n"))}</blockquote>`);
    quote = [];
  };
  const flushAll = () => {
    flushParagraph();
    flushList();
    flushQuote();
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s*(```|~~~)\s*([\w+-]*)\s*$/.exec(line);
    if (fence) {
      flushAll();
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) {
        body.push(lines[i]);
      }
      const cls = fence[2] ? ` class="language-${escapeHtml(fence[2])}"` : "";
      out.push(`<pre><code${cls}>${escapeHtml(body.join("\n"))}</code></pre>`);
      continue;
    }
    if (/^\s*>/.test(line)) {
      flushParagraph();
      flushList();
      quote.push(line.replace(/^\s*>\s?/, ""));
      continue;
    }
    flushQuote();
    if (line.trim() === "") {
      flushParagraph();
      flushList();
      continue;
    }
    const heading = /^(#{1,6})\s+(.+?)\s*#*\s*$/.exec(line);
    if (heading) {
      flushAll();
      const level = heading[1].length;
      out.push(`<h${level} id="${ids[h++]}">${inline(heading[2])}</h${level}>`);
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flushAll();
      out.push("<hr>");
      continue;
    }
    const item = /^\s*(?:([-*+])|(\d+)[.)])\s+(.*)$/.exec(line);
    if (item) {
      flushParagraph();
      const tag = item[1] ? "ul" : "ol";
      if (list && list.tag !== tag) flushList();
      list ??= { tag, items: [] };
      list.items.push(item[3]);
      continue;
    }
    if (list && /^\s{2,}\S/.test(line)) {
      list.items[list.items.length - 1] += " " + line.trim();
      continue;
    }
    flushList();
    paragraph.push(line.trim());
  }
  flushAll();
  return out.join("\n");
}
