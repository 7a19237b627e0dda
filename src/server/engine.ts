// The conversation the GPU worker keeps between requests: one ChatSession (its KV cache holds the
// prompt, the answers and the vision rows of every image so far). A request whose messages extend
// it (same system message, same earlier turns as text, the same media bytes in them) prefills only
// its new turn; any other request starts a new session from its messages. Clients of the OpenAI API
// send the whole conversation each time, so this is what makes a chat's second turn cheap.

import { ChatSession, type ChatResult, type ChatTurn, type SamplingOptions } from '../index.js';
import type { LoadedModel } from '../index.js';
import type { Conversation } from './conversation.js';
import type { ResolvedMedia } from './media.js';

export interface TurnParams {
  maxNewTokens: number;
  sampling: SamplingOptions;
  /** generate until maxNewTokens even past <|im_end|> */
  ignoreEos: boolean;
  signal: AbortSignal;
}

interface Kept {
  session: ChatSession;
  systemMessage?: string;
  ignoreEos: boolean;
  /** media of the session's turns, by content */
  mediaKeys: string[];
}

const sameTurns = (a: readonly ChatTurn[], b: readonly ChatTurn[]) => a.length === b.length && a.every((t, i) => t.question === b[i].question && t.answer === b[i].answer);
const sameKeys = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((k, i) => k === b[i]);

export class ConversationCache {
  private kept: Kept | null = null;

  constructor(
    private readonly m: LoadedModel,
    private readonly opts: { contextLength?: number; maxTiles?: number },
  ) {}

  /** One turn of `conv`: continues the kept session when `conv` extends it, else starts a new one. */
  async *turn(conv: Conversation, media: ResolvedMedia, p: TurnParams): AsyncGenerator<string, ChatResult, undefined> {
    const k = this.kept;
    const extend = k !== null && k.systemMessage === conv.systemMessage && k.ignoreEos === p.ignoreEos && sameTurns(k.session.history, conv.history) && sameKeys(k.mediaKeys, media.keys.slice(0, conv.historyMedia));
    let kept: Kept;
    if (extend) kept = k;
    else {
      this.dispose();
      const session = new ChatSession(this.m.model, this.m.tokenizer, {
        systemMessage: conv.systemMessage,
        history: conv.history,
        contextLength: this.opts.contextLength,
        stopIds: p.ignoreEos ? [] : this.m.stopIds,
        splitSpecialTokens: true, // people's text is text: no control tokens through the API
      });
      kept = this.kept = { session, systemMessage: conv.systemMessage, ignoreEos: p.ignoreEos, mediaKeys: [] };
    }
    // a new session prefills the history too, so it takes every item; a continued one only the new turn's
    const first = extend ? conv.historyMedia : 0;
    const items = conv.media.slice(first);
    const paths = media.paths.slice(first);
    const video = items[0]?.kind === 'video' ? items[0] : undefined;
    try {
      return yield* kept.session.turn({
        question: conv.question,
        images: items.length && !video ? paths : undefined,
        video: video && { path: paths[0], frames: video.frames, start: video.start, end: video.end },
        maxTiles: this.opts.maxTiles,
        maxNewTokens: p.maxNewTokens,
        sampling: p.sampling,
        signal: p.signal,
      });
    } finally {
      // a turn that left no trace (refused, failed, aborted before its first token) keeps a continued
      // session as it was; a new session then holds nothing worth keeping
      if (kept.session.history.length === conv.history.length + 1) kept.mediaKeys = [...media.keys];
      else if (!extend) this.dispose();
    }
  }

  /** Frees the kept session's KV cache. */
  dispose(): void {
    this.kept?.session.dispose();
    this.kept = null;
  }
}
