import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { renderMarkdown as md, safeUrl } from '../../src/markdown.js';

describe('markdown', () => {
  test('paragraphs, emphasis, inline code', () => {
    assert.equal(md('Hello **bold** and *it* and `a<b>`'), '<p>Hello <strong>bold</strong> and <em>it</em> and <code>a&lt;b&gt;</code></p>');
    assert.equal(md('one\ntwo\n\nthree'), '<p>one<br>two</p><p>three</p>');
    assert.equal(md('snake_case_name stays'), '<p>snake_case_name stays</p>');
    assert.equal(md('~~gone~~'), '<p><del>gone</del></p>');
  });

  test('fenced code blocks keep their text literally, also while still open', () => {
    assert.equal(md('```python\nprint("<hi>")\n**not bold**\n```'), '<pre data-lang="python"><code class="language-python">print(&quot;&lt;hi&gt;&quot;)\n**not bold**</code></pre>');
    assert.equal(md('text\n```js\nlet a'), '<p>text</p><pre data-lang="js" data-open><code class="language-js">let a</code></pre>');
  });

  test('headings, lists, quotes, rules, tables', () => {
    assert.equal(md('# Title\n## Sub'), '<h1>Title</h1><h2>Sub</h2>');
    assert.equal(md('- a\n- b\n  - nested\n- c'), '<ul><li>a</li><li>b<ul><li>nested</li></ul></li><li>c</li></ul>');
    assert.equal(md('3. three\n4. four'), '<ol start="3"><li>three</li><li>four</li></ol>');
    assert.equal(md('> quoted\n> more'), '<blockquote><p>quoted<br>more</p></blockquote>');
    assert.equal(md('a\n\n---\n\nb'), '<p>a</p><hr><p>b</p>');
    assert.equal(md('| a | b |\n|---|--:|\n| 1 | 2 |'), '<div class="md-table"><table><thead><tr><th>a</th><th style="text-align:right">b</th></tr></thead><tbody><tr><td>1</td><td style="text-align:right">2</td></tr></tbody></table></div>');
  });

  test('links keep only safe schemes', () => {
    assert.equal(md('[site](https://example.com/a?b=1&c=2)'), '<p><a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer nofollow">site</a></p>');
    assert.equal(md('see https://example.com/x.'), '<p>see <a href="https://example.com/x" target="_blank" rel="noopener noreferrer nofollow">https://example.com/x</a>.</p>');
    assert.equal(md('[x](javascript:alert(1))'), '<p>x</p>');
    assert.equal(safeUrl('java\tscript:alert(1)'), null);
    assert.equal(safeUrl('data:text/html,<script>'), null);
    assert.equal(safeUrl('mailto:a@b.c'), 'mailto:a@b.c');
  });

  test('nothing the model writes becomes markup', () => {
    const attacks = [
      '<script>alert(1)</script>',
      '<img src=x onerror=alert(1)>',
      '[click](https://x.com/" onmouseover="alert(1))',
      '[a](https://ok.com)<iframe src="javascript:alert(1)">',
      '`</code><script>x</script>`',
      '```\n</code></pre><script>x</script>\n```',
      '| <b>h</b> |\n|---|\n| <i onclick=x>c</i> |',
      '**<svg onload=alert(1)>**',
    ];
    for (const attack of attacks) {
      const html = md(attack);
      assert.doesNotMatch(html, /<(script|img|iframe|svg|i |b>)/i, `${attack} -> ${html}`);
      assert.doesNotMatch(html, /\son\w+="/i, `${attack} -> ${html}`);
      for (const m of html.matchAll(/href="([^"]*)"/g)) assert.match(m[1], /^(https?:|mailto:)/);
    }
  });
});
