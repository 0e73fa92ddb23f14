// Compiled (not run) by `npm run typecheck`: what a TypeScript app writes against the shipped types.
import { GatewayClient, renderMarkdown, type ChatItem, type ConnectionState, type EventFrame } from '../../types/index.js';

const client = new GatewayClient({ url: 'https://agents.example.com', token: () => 'token', auth: 'ticket' });

export async function example(): Promise<void> {
  const session = await client.open({ profile: 'default', permission_mode: 'plan' });
  session.onEvent('permission_request', (event) => {
    const tool: string = event.tool_name;
    void session.allow(event.request_id, { updatedInput: { ...event.input, tool } });
  });
  session.onEvent('question', (event) => {
    void session.answer(event.request_id, { [event.questions[0].question]: event.questions[0].options?.[0]?.label ?? '' });
  });
  session.on('connectionstate', ({ state, retryInMs }) => {
    const s: ConnectionState = state;
    void s, retryInMs;
  });
  session.on('chat', (chat) => {
    const items: readonly ChatItem[] = chat.items;
    for (const item of items) {
      if (item.type === 'text') void renderMarkdown(item.text);
      if (item.type === 'tool' && item.result) void item.result.text;
      if (item.type === 'result') void item.costUsd;
    }
  });
  for await (const frame of session.events({ kinds: ['result'] })) {
    const f: EventFrame = frame;
    void f;
  }
  const result = await session.run('hello', { timeoutMs: 60_000 });
  const cost: number | null | undefined = result.total_cost_usd;
  void cost;
  await session.close();
}
