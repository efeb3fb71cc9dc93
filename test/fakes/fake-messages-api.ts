// A fake Anthropic Messages API, enough of it for the real Claude Code CLI (`claude -p`) to run a
// session against it through ANTHROPIC_BASE_URL, written from the API's documentation:
//
//   POST /v1/messages[?beta=true]   the key arrives as `x-api-key` (Claude Code also sends it as
//                                   `Authorization: Bearer`). A rejected key gets 401
//                                   {"type":"error","error":{"type":"authentication_error",…}}.
//                                   Otherwise the test's `answer` picks the assistant's content
//                                   blocks (text and tool_use), sent as a JSON message, or as
//                                   server-sent events (message_start, content_block_start/delta/
//                                   stop, message_delta, message_stop) when the request has
//                                   "stream": true, as the CLI asks.
//   anything else                   404 not_found_error
//
// Every request is recorded with its key and, when the last user turn carries tool results, their
// text, so a test can see what a Bash-tool command printed.
import type http from 'node:http';
import { FakeApiServer, type ApiError } from './fake-api-server.js';

export type ContentBlock =
  { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

export interface MessagesRequest {
  key: string | undefined;
  bearer: string | undefined;
  stream: boolean;
  model: string | undefined;
  /** The text of the tool_result blocks in the last user turn (empty when there are none). */
  toolResults: string[];
  /** The text of the first user turn: tells apart the sessions of two Claude Codes. */
  prompt: string;
  status: number;
}

export interface FakeMessagesApiOptions {
  /** Decide the assistant's reply to an accepted request. Default: one text block. */
  answer?: (request: MessagesRequest, index: number) => ContentBlock[];
}

/**
 * Its `url` is for ANTHROPIC_BASE_URL; `rejectIf` can, say, reject once to make Claude Code call
 * its helper again (requests, rejectedKeys, rejectIf and answer: see FakeApiServer).
 */
export class FakeMessagesApi extends FakeApiServer<MessagesRequest, ContentBlock[]> {
  #nextId = 0;

  private constructor(options: FakeMessagesApiOptions) {
    super(options.answer ?? (() => [{ type: 'text', text: 'hello from the fake Messages API' }]), {
      type: 'authentication_error',
      message: 'invalid x-api-key',
    });
  }

  static async start(options: FakeMessagesApiOptions = {}): Promise<FakeMessagesApi> {
    const fake = new FakeMessagesApi(options);
    await fake.listen();
    return fake;
  }

  /** The keys of the Messages requests, in order. */
  keys(): Array<string | undefined> {
    return this.requests.map((r) => r.key);
  }

  protected override sendError(res: http.ServerResponse, status: number, error: ApiError): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ type: 'error', error: { type: error.type, message: error.message } }));
  }

  protected override handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (req.method !== 'POST' || url.pathname !== '/v1/messages')
      return this.sendError(res, 404, { type: 'not_found_error', message: `no route ${req.method} ${url.pathname}` });
    let parsed: { stream?: unknown; model?: unknown; messages?: unknown };
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
    } catch {
      return this.sendError(res, 400, { type: 'invalid_request_error', message: 'body is not JSON' });
    }
    const request: MessagesRequest = {
      key: typeof req.headers['x-api-key'] === 'string' ? req.headers['x-api-key'] : undefined,
      bearer: /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1],
      stream: parsed.stream === true,
      model: typeof parsed.model === 'string' ? parsed.model : undefined,
      toolResults: toolResultsOf(parsed.messages),
      prompt: promptOf(parsed.messages),
      status: 200,
    };
    const index = this.admit(request, res);
    if (index === undefined) return;
    const content = this.answer(request, index);
    const stopReason = content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn';
    const message = {
      id: `msg_fake_${++this.#nextId}`,
      type: 'message',
      role: 'assistant',
      model: request.model ?? 'fake',
      stop_sequence: null,
      usage: { input_tokens: 1, output_tokens: 1 },
    };
    if (!request.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...message, content, stop_reason: stopReason }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const event = (type: string, data: object): void => {
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    };
    event('message_start', { message: { ...message, content: [], stop_reason: null } });
    content.forEach((block, i) => {
      if (block.type === 'text') {
        event('content_block_start', { index: i, content_block: { type: 'text', text: '' } });
        event('content_block_delta', { index: i, delta: { type: 'text_delta', text: block.text } });
      } else {
        event('content_block_start', {
          index: i,
          content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} },
        });
        event('content_block_delta', {
          index: i,
          delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) },
        });
      }
      event('content_block_stop', { index: i });
    });
    event('message_delta', { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: 1 } });
    event('message_stop', {});
    res.end();
  }
}

function promptOf(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  const first = messages[0] as { role?: unknown; content?: unknown } | undefined;
  if (first?.role !== 'user') return '';
  if (typeof first.content === 'string') return first.content;
  if (!Array.isArray(first.content)) return '';
  return (first.content as Array<{ type?: unknown; text?: unknown }>)
    .filter((c) => c.type === 'text')
    .map((c) => String(c.text))
    .join('\n');
}

function toolResultsOf(messages: unknown): string[] {
  if (!Array.isArray(messages)) return [];
  const last = messages.at(-1) as { role?: unknown; content?: unknown } | undefined;
  if (last?.role !== 'user' || !Array.isArray(last.content)) return [];
  const out: string[] = [];
  for (const block of last.content as Array<{ type?: unknown; content?: unknown }>) {
    if (block.type !== 'tool_result') continue;
    if (typeof block.content === 'string') out.push(block.content);
    else if (Array.isArray(block.content)) {
      out.push(
        (block.content as Array<{ type?: unknown; text?: unknown }>)
          .filter((c) => c.type === 'text')
          .map((c) => String(c.text))
          .join(''),
      );
    }
  }
  return out;
}
