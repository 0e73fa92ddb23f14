// A small, safe Markdown renderer for chat messages: the text is escaped before any markup is
// added, so no HTML from the model reaches the page; links keep only http, https and mailto URLs.
//
// Supported: paragraphs, line breaks, headings, fenced code blocks (also unclosed ones, while
// streaming), inline code, bold, italic, strikethrough, links and bare URLs, bullet and numbered
// lists (nested), block quotes, horizontal rules and tables.

const ESCAPES = /** @type {Record<string, string>} */ ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' });

/** @param {string} text @returns {string} */
export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/**
 * The URL when it is safe to link to (http, https, mailto), else null.
 * @param {string} url
 * @returns {string | null}
 */
export function safeUrl(url) {
  const trimmed = url.trim();
  // Control characters and whitespace are how scheme filters get fooled ("java\tscript:").
  if (/[\u0000-\u001f\u007f\s]/.test(trimmed)) return null;
  return /^(https?:\/\/|mailto:)/i.test(trimmed) ? trimmed : null;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:\s+(.*))?$/;
const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

/**
 * Render Markdown to HTML that is safe to assign to innerHTML.
 * @param {string} source
 * @returns {string}
 */
export function renderMarkdown(source) {
  const lines = String(source ?? '').replace(/\r\n?/g, '\n').split('\n');
  return renderBlocks(lines, 0);
}

/** @param {string[]} lines @param {number} depth @returns {string} */
function renderBlocks(lines, depth) {
  if (depth > 8) return `<p>${renderInline(lines.join('\n'))}</p>`;
  /** @type {string[]} */
  const out = [];
  /** @type {string[]} */
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) out.push(`<p>${paragraph.map((l) => renderInline(l.trim())).join('<br>')}</p>`);
    paragraph = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      flush();
      const marker = m[1];
      const lang = m[2].replace(/[^\w+#.-]/g, '').slice(0, 30);
      const body = [];
      i++;
      while (i < lines.length && !new RegExp(`^ {0,3}${marker[0] === '`' ? '`' : '~'}{${marker.length},}\\s*$`).test(lines[i])) {
        body.push(lines[i]);
        i++;
      }
      const closed = i < lines.length;
      i++;
      const cls = lang ? ` class="language-${escapeHtml(lang)}"` : '';
      const label = lang ? ` data-lang="${escapeHtml(lang)}"` : '';
      out.push(`<pre${label}${closed ? '' : ' data-open'}><code${cls}>${escapeHtml(body.join('\n'))}</code></pre>`);
      continue;
    }
    if (!line.trim()) {
      flush();
      i++;
      continue;
    }
    if ((m = HEADING.exec(line))) {
      flush();
      const level = m[1].length;
      out.push(`<h${level}>${renderInline(m[2] ?? '')}</h${level}>`);
      i++;
      continue;
    }
    if (RULE.test(line) && !(paragraph.length && /^ {0,3}-+\s*$/.test(line))) {
      flush();
      out.push('<hr>');
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      flush();
      const body = [];
      while (i < lines.length && lines[i].trim() && (m = QUOTE.exec(lines[i]))) {
        body.push(m[1]);
        i++;
      }
      out.push(`<blockquote>${renderBlocks(body, depth + 1)}</blockquote>`);
      continue;
    }
    if ((m = LIST_ITEM.exec(line)) && (m[3] !== undefined || !paragraph.length)) {
      flush();
      i = renderList(lines, i, depth, out);
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      flush();
      i = renderTable(lines, i, out);
      continue;
    }
    paragraph.push(line);
    i++;
  }
  flush();
  return out.join('');
}

/**
 * @param {string[]} lines @param {number} start @param {number} depth @param {string[]} out
 * @returns {number} the index after the list
 */
function renderList(lines, start, depth, out) {
  const first = /** @type {RegExpExecArray} */ (LIST_ITEM.exec(lines[start]));
  const baseIndent = first[1].length;
  const ordered = /\d/.test(first[2]);
  /** @type {string[][]} */
  const items = [];
  let i = start;
  let contentIndent = baseIndent + first[2].length + 1;
  while (i < lines.length) {
    const line = lines[i];
    const m = LIST_ITEM.exec(line);
    if (m && m[1].length <= baseIndent + 1 && /\d/.test(m[2]) === ordered) {
      items.push([m[3] ?? '']);
      contentIndent = m[1].length + m[2].length + 1;
      i++;
      continue;
    }
    if (!line.trim()) {
      // A blank line ends the list unless the next line continues it (indented or another item).
      const next = lines[i + 1];
      const nm = next === undefined ? null : LIST_ITEM.exec(next);
      const indented = next !== undefined && next.trim() && leadingSpaces(next) >= contentIndent;
      if ((nm && nm[1].length <= baseIndent + 1 && /\d/.test(nm[2]) === ordered) || indented) {
        items[items.length - 1].push('');
        i++;
        continue;
      }
      break;
    }
    const indent = leadingSpaces(line);
    if (indent > baseIndent || !startsBlock(line)) {
      items[items.length - 1].push(line.slice(Math.min(indent, contentIndent)));
      i++;
      continue;
    }
    break;
  }
  const startNumber = ordered ? parseInt(first[2], 10) : 1;
  const open = ordered ? (startNumber !== 1 ? `<ol start="${startNumber}">` : '<ol>') : '<ul>';
  out.push(open);
  for (const item of items) {
    let html = renderBlocks(item, depth + 1);
    // A one-paragraph item renders without the <p>.
    const single = /^<p>([\s\S]*?)<\/p>/.exec(html);
    if (single && single[0].length === html.length) html = single[1];
    else if (single) html = single[1] + html.slice(single[0].length);
    out.push(`<li>${html}</li>`);
  }
  out.push(ordered ? '</ol>' : '</ul>');
  return i;
}

/** @param {string} line */
function leadingSpaces(line) {
  return /** @type {RegExpExecArray} */ (/^ */.exec(line.replace(/\t/g, '    ')))[0].length;
}

/** @param {string} line */
function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || QUOTE.test(line) || RULE.test(line) || LIST_ITEM.test(line);
}

/**
 * @param {string[]} lines @param {number} start @param {string[]} out
 * @returns {number}
 */
function renderTable(lines, start, out) {
  /** @param {string} row */
  const cells = (row) => {
    let r = row.trim();
    if (r.startsWith('|')) r = r.slice(1);
    if (r.endsWith('|') && !r.endsWith('\\|')) r = r.slice(0, -1);
    return r.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
  };
  const head = cells(lines[start]);
  const aligns = cells(lines[start + 1]).map((c) => (c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : c.startsWith(':') ? 'left' : ''));
  /** @param {number} n */
  const align = (n) => (aligns[n] ? ` style="text-align:${aligns[n]}"` : '');
  let html = '<div class="md-table"><table><thead><tr>';
  head.forEach((c, n) => (html += `<th${align(n)}>${renderInline(c)}</th>`));
  html += '</tr></thead><tbody>';
  let i = start + 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
    const row = cells(lines[i]);
    html += '<tr>';
    for (let n = 0; n < head.length; n++) html += `<td${align(n)}>${renderInline(row[n] ?? '')}</td>`;
    html += '</tr>';
    i++;
  }
  out.push(html + '</tbody></table></div>');
  return i;
}

const CODE_SPAN = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/;
const LINK = /\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^\s<>()]*(?:\([^\s<>()]*\)[^\s<>()]*)*)>?(?:\s+"[^"]*")?\s*\)/;
const BARE_URL = /\bhttps?:\/\/[^\s<>"'`]*[^\s<>"'`.,:;!?)\]]/;

/**
 * Inline markup: code spans first (their text is literal), then links, then emphasis on the
 * escaped remainder.
 * @param {string} text
 * @returns {string}
 */
export function renderInline(text) {
  let out = '';
  let rest = text;
  for (;;) {
    const code = CODE_SPAN.exec(rest);
    const link = LINK.exec(rest);
    const url = BARE_URL.exec(rest);
    const candidates = [code, link, url].filter((m) => m !== null);
    if (!candidates.length) break;
    const first = /** @type {RegExpExecArray} */ (candidates.reduce((a, b) => (/** @type {RegExpExecArray} */ (b).index < /** @type {RegExpExecArray} */ (a).index ? b : a)));
    out += emphasis(rest.slice(0, first.index));
    if (first === code) {
      const body = first[2].length > 2 && first[2].startsWith(' ') && first[2].endsWith(' ') ? first[2].slice(1, -1) : first[2];
      out += `<code>${escapeHtml(body)}</code>`;
    } else if (first === link) {
      const href = safeUrl(first[2]);
      const label = renderInline(first[1]).replace(/<a [^>]*>|<\/a>/g, '');
      out += href ? anchor(href, label) : label;
    } else {
      out += anchor(first[0], escapeHtml(first[0]));
    }
    rest = rest.slice(first.index + first[0].length);
  }
  return out + emphasis(rest);
}

/** @param {string} href @param {string} labelHtml */
function anchor(href, labelHtml) {
  return `<a href="${escapeHtml(href)}" target="_blank" rel="noopener noreferrer nofollow">${labelHtml}</a>`;
}

/** @param {string} text */
function emphasis(text) {
  return escapeHtml(text)
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, '$1<em>$2</em>')
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, '$1<em>$2</em>')
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, '<del>$1</del>');
}
