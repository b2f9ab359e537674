/**
 * An OpenAI-compatible HTTP server on 127.0.0.1 that answers instantly and can be switched into a fault:
 * HTTP 500s, 429s with Retry-After, requests that hang until the client gives up, or sockets destroyed
 * mid-request. `answer` decides the text of healthy answers (a judge's garbage, a huge response).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type ServerFault = 'none' | 'http-500' | 'http-429' | 'hang' | 'reset';

export interface ChatRequestBody {
  model?: string;
  prompt?: string;
  messages?: { role: string; content: string }[];
  n?: number;
  [field: string]: unknown;
}

/** The text of a choice; with `reasoning`, a chat choice carries it as vLLM's reasoning_content. */
export type Answer = (body: ChatRequestBody, path: string) => string | { text: string; reasoning?: string };

/** A reward model's score of the text a `/classify` request sends (vLLM pooling API). */
export type Score = (text: string) => number;

export const echoAnswer: Answer = (body) => {
  const last = body.messages?.at(-1)?.content ?? body.prompt ?? '';
  return `An answer to: ${last.slice(-80)}`;
};

export class FaultyOpenAIServer {
  fault: ServerFault = 'none';
  /** Requests received, by fault in force when they arrived. */
  readonly requests: Record<ServerFault, number> = { none: 0, 'http-500': 0, 'http-429': 0, hang: 0, reset: 0 };
  /** Authorization headers seen (tests check the key was sent). */
  readonly authorizations = new Set<string>();
  /** Every request body that reached the answering path, in arrival order. */
  readonly bodies: ChatRequestBody[] = [];
  /** Per request: an HTTP error status to answer with instead (a fault for some requests only). */
  statusFor: ((body: ChatRequestBody) => number | undefined) | undefined;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly hanging = new Set<ServerResponse>();
  private port = 0;

  /** Scores of `/classify` requests: by default a tenth of the text's length, so longer answers score higher. */
  score: Score = (text) => text.length / 10;

  constructor(public answer: Answer = echoAnswer) {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** Base URL with /v1, as a topology's backend takes it. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/v1`;
  }

  get total(): number {
    return Object.values(this.requests).reduce((a, b) => a + b, 0);
  }

  /** Switches fault; leaving 'hang' answers nothing to the hung requests: their clients time out. */
  setFault(fault: ServerFault): void {
    this.fault = fault;
    if (fault !== 'hang') {
      for (const res of this.hanging) res.destroy();
      this.hanging.clear();
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const fault = this.fault;
    this.requests[fault]++;
    if (req.headers.authorization) this.authorizations.add(req.headers.authorization);
    switch (fault) {
      case 'http-500':
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'injected internal error' } }));
        return;
      case 'http-429':
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' }).end(JSON.stringify({ error: { message: 'injected rate limit' } }));
        return;
      case 'hang':
        this.hanging.add(res);
        res.on('close', () => this.hanging.delete(res));
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'none':
        break;
    }
    let body: ChatRequestBody;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ChatRequestBody;
    } catch {
      res.writeHead(400).end('{"error":{"message":"body is not JSON"}}');
      return;
    }
    this.bodies.push(body);
    const status = this.statusFor?.(body);
    if (status !== undefined) {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `injected HTTP ${status}` } }));
      return;
    }
    const path = req.url ?? '';
    if (path.endsWith('/classify')) {
      const inputs = (body.input as string[] | undefined) ?? [];
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: inputs.map((text, index) => ({ index, probs: [this.score(text)] })) }));
      return;
    }
    const chat = path.endsWith('/chat/completions');
    const n = body.n ?? 1;
    const choices = Array.from({ length: n }, (_, index) => {
      const answer = this.answer(body, path);
      const { text, reasoning } = typeof answer === 'string' ? { text: answer, reasoning: undefined } : answer;
      return chat
        ? { index, message: { role: 'assistant', content: text, ...(reasoning === undefined ? {} : { reasoning_content: reasoning }) }, finish_reason: 'stop' }
        : { index, text, finish_reason: 'stop' };
    });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'fake', object: chat ? 'chat.completion' : 'text_completion', choices, usage: { completion_tokens: 7 * n } }));
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
