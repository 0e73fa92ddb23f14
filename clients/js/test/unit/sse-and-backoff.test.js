import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay, SseParser } from '../../src/index.js';

test('the SSE parser handles ids, multi-line data, comments, retry and split chunks', () => {
  /** @type {{ data: string, id: string | null }[]} */
  const got = [];
  const parser = new SseParser((m) => got.push({ data: m.data, id: m.id }));
  const stream = 'retry: 2000\nid: e:0\ndata: {"type":"attached"}\n\n: keepalive\n\nid: e:1\ndata: a\ndata: b\r\n\r\nid: e:2\ndata:{"x":1}\n\n';
  for (let i = 0; i < stream.length; i += 3) parser.push(stream.slice(i, i + 3));
  assert.deepEqual(got, [{ data: '{"type":"attached"}', id: 'e:0' }, { data: 'a\nb', id: 'e:1' }, { data: '{"x":1}', id: 'e:2' }]);
  assert.equal(parser.retry, 2000);
  assert.equal(parser.lastEventId, 'e:2');
});

test('backoff grows exponentially with jitter and a cap', () => {
  const opts = { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0.5 };
  assert.equal(backoffDelay(0, opts, () => 0), 100);
  assert.equal(backoffDelay(0, opts, () => 0.999999), 50);
  assert.equal(backoffDelay(3, opts, () => 0), 800);
  assert.equal(backoffDelay(10, opts, () => 0), 1000);
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(2, opts);
    assert.ok(d >= 200 && d <= 400);
  }
  assert.equal(backoffDelay(5, { ...opts, jitter: 1 }, () => 0.999999), 0);
});
