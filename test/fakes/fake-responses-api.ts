// A fake OpenAI Responses API, enough of it for the real Codex CLI (`codex exec`) to run a session
// against it as a custom model provider (`base_url = "<url>/v1"`, `wire_api = "responses"`),
// written from the API's documentation and what Codex 0.169.0 was seen to send:
//
//   POST /v1/responses   the key arrives as `Authorization: Bearer KEY`. A rejected key gets 401
//                        {"error":{"type":"invalid_request_error","code":"invalid_api_key",…}}.
//                        Otherwise the test's `answer` picks the output items (assistant text, or
//                        a function call such as Codex's shell tool), streamed as server-sent
//                        events: response.created, then per item response.output_item.added,
//                        response.output_text.delta (text only) and response.output_item.done,
//                        then response.completed.
//   GET /v1/models       an empty model list (Codex asks for it with the same key; 401 likewise).
//   anything else        404
//
// Every request is recorded with its key, the tool names it offered and, when its input carries
// function-call outputs, their text, so a test can see what a shell-tool command printed.
import type http from 'node:http';
import { FakeApiServer, type ApiError } from './fake-api-server.js';

export type OutputItem =
  | { type: 'message'; text: string }
  | { type: 'function_call'; name: string; callId: string; arguments: Record<string, unknown> };

export interface ResponsesRequest {
  method: string;
  path: string;
  key: string | undefined;
  model: string | undefined;
  /** The names of the tools the request offered the model. */
  tools: string[];
  /** The text of the function_call_output items in the input (empty when there are none). */
  toolOutputs: string[];
  /** The text of the first user message: tells apart sessions. */
  prompt: string;
  status: number;
}

export interface FakeResponsesApiOptions {
  /** Decide the output of an accepted POST /v1/responses. Default: one assistant message. */
  answer?: (request: ResponsesRequest, index: number) => OutputItem[];
}

/**
 * Its `url` is for a provider's base_url (it ends in /v1); `rejectIf` can, say, reject once to make
 * Codex run its auth command again (requests, rejectedKeys, rejectIf and answer: see FakeApiServer).
 */
export class FakeResponsesApi extends FakeApiServer<ResponsesRequest, OutputItem[]> {
  #nextId = 0;

  private constructor(options: FakeResponsesApiOptions) {
    super(options.answer ?? (() => [{ type: 'message', text: 'hello from the fake Responses API' }]), {
      type: 'invalid_request_error',
      message: 'Incorrect API key provided.',
      code: 'invalid_api_key',
    });
  }

  static async start(options: FakeResponsesApiOptions = {}): Promise<FakeResponsesApi> {
    const fake = new FakeResponsesApi(options);
    await fake.listen('/v1');
    return fake;
  }

  /** The POST /v1/responses requests, in order. */
  responses(): ResponsesRequest[] {
    return this.requests.filter((r) => r.method === 'POST');
  }

  /** The keys of the POST /v1/responses requests, in order. */
  keys(): Array<string | undefined> {
    return this.responses().map((r) => r.key);
  }

  protected override sendError(res: http.ServerResponse, status: number, error: ApiError): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ error: { type: error.type, message: error.message, code: error.code ?? null, param: null } }),
    );
  }

  protected override handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const route = `${req.method} ${url.pathname}`;
    if (route !== 'POST /v1/responses' && route !== 'GET /v1/models')
      return this.sendError(res, 404, { type: 'not_found', message: `no route ${route}` });
    let parsed: { model?: unknown; input?: unknown; tools?: unknown } = {};
    if (req.method === 'POST') {
      try {
        parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
      } catch {
        return this.sendError(res, 400, { type: 'invalid_request_error', message: 'body is not JSON' });
      }
    }
    const request: ResponsesRequest = {
      method: req.method ?? '',
      path: url.pathname,
      key: /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1],
      model: typeof parsed.model === 'string' ? parsed.model : undefined,
      tools: toolNamesOf(parsed.tools),
      toolOutputs: toolOutputsOf(parsed.input),
      prompt: promptOf(parsed.input),
      status: 200,
    };
    if (this.admit(request, res) === undefined) return;
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [], models: [] }));
      return;
    }
    this.#stream(res, request, this.answer(request, this.responses().length - 1));
  }

  #stream(res: http.ServerResponse, request: ResponsesRequest, items: OutputItem[]): void {
    const id = `resp_fake_${++this.#nextId}`;
    const response = { id, object: 'response', model: request.model ?? 'fake', output: [] as unknown[] };
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const event = (type: string, data: object): void => {
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    };
    event('response.created', { response: { ...response, status: 'in_progress' } });
    items.forEach((item, i) => {
      const itemId = `item_${this.#nextId}_${i}`;
      if (item.type === 'message') {
        event('response.output_item.added', {
          output_index: i,
          item: { type: 'message', id: itemId, role: 'assistant', status: 'in_progress', content: [] },
        });
        event('response.output_text.delta', { item_id: itemId, output_index: i, content_index: 0, delta: item.text });
        const done = {
          type: 'message',
          id: itemId,
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: item.text, annotations: [] }],
        };
        event('response.output_item.done', { output_index: i, item: done });
        response.output.push(done);
      } else {
        const call = {
          type: 'function_call',
          id: itemId,
          call_id: item.callId,
          name: item.name,
          arguments: JSON.stringify(item.arguments),
          status: 'completed',
        };
        event('response.output_item.added', { output_index: i, item: { ...call, arguments: '' } });
        event('response.output_item.done', { output_index: i, item: call });
        response.output.push(call);
      }
    });
    event('response.completed', {
      response: {
        ...response,
        status: 'completed',
        usage: { input_tokens: 1, output_tokens: 1, total_tokens: 2 },
      },
    });
    res.end();
  }
}

interface InputItem {
  type?: unknown;
  role?: unknown;
  content?: unknown;
  output?: unknown;
}

function inputItems(input: unknown): InputItem[] {
  return Array.isArray(input) ? (input as InputItem[]) : [];
}

function toolNamesOf(tools: unknown): string[] {
  if (!Array.isArray(tools)) return [];
  return (tools as Array<{ name?: unknown; type?: unknown }>).map((t) => String(t.name ?? t.type));
}

function promptOf(input: unknown): string {
  if (typeof input === 'string') return input;
  const users = inputItems(input).filter((i) => i.role === 'user');
  const last = users.at(-1);
  if (!last) return '';
  if (typeof last.content === 'string') return last.content;
  if (!Array.isArray(last.content)) return '';
  return (last.content as Array<{ type?: unknown; text?: unknown }>)
    .filter((c) => c.type === 'input_text')
    .map((c) => String(c.text))
    .join('\n');
}

function toolOutputsOf(input: unknown): string[] {
  return inputItems(input)
    .filter((i) => i.type === 'function_call_output')
    .map((i) => (typeof i.output === 'string' ? i.output : JSON.stringify(i.output)));
}
