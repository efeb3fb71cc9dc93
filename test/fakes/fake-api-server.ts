// What the fake model APIs (fake-messages-api.ts, fake-responses-api.ts) share: an HTTP server on a
// free port of 127.0.0.1, a request body read whole up to a bound (413 past it), every request
// recorded with its key and status, and 401 for a missing key, a rejected one, or whenever the
// test's rejectIf says so. Each fake adds its routes, its request record and its error body.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What every fake records of a request: the key it carried and the status it was answered with. */
export interface RecordedRequest {
  key: string | undefined;
  status: number;
}

/** The error body's `type` and `message` (and, where the API has one, `code`) for a status. */
export interface ApiError {
  type: string;
  message: string;
  code?: string;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;

export abstract class FakeApiServer<Request extends RecordedRequest, Answer> {
  readonly requests: Request[] = [];
  /** Keys answered with 401. */
  readonly rejectedKeys = new Set<string>();
  /** Also answer 401 when this says so (e.g. once, to make the agent run its key command again). */
  rejectIf: (request: Request, index: number) => boolean = () => false;
  /** Decide the answer to an accepted request. */
  answer: (request: Request, index: number) => Answer;
  readonly #unauthorized: ApiError;
  readonly #server: http.Server;
  #url = '';

  /** `unauthorized`: the API's error for a missing or rejected key. */
  protected constructor(answer: (request: Request, index: number) => Answer, unauthorized: ApiError) {
    this.answer = answer;
    this.#unauthorized = unauthorized;
    this.#server = http.createServer((req, res) => {
      this.#receive(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
  }

  /** Listen on a free port; `base` is what the url adds to the origin (/v1 for a base_url). */
  protected async listen(base = ''): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.#url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}${base}`;
  }

  get url(): string {
    return this.#url;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Answer a request whose body has been read whole. */
  protected abstract handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): Promise<void> | void;

  /** Write the API's error body. */
  protected abstract sendError(res: http.ServerResponse, status: number, error: ApiError): void;

  /**
   * Record `request`; when its key is missing or rejected, answer 401 and return undefined, else
   * its index among the recorded requests.
   */
  protected admit(request: Request, res: http.ServerResponse): number | undefined {
    const index = this.requests.push(request) - 1;
    if (request.key === undefined || this.rejectedKeys.has(request.key) || this.rejectIf(request, index)) {
      request.status = 401;
      this.sendError(res, 401, this.#unauthorized);
      return undefined;
    }
    return index;
  }

  async #receive(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES)
        return this.sendError(res, 413, { type: 'request_too_large', message: 'request too large' });
      chunks.push(chunk);
    }
    await this.handle(req, res, Buffer.concat(chunks));
  }
}
