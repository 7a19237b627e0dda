// One chat turn end to end, without keeping anything: a ChatSession made for the request (its
// history given as text), one turn, then disposed. Follows InternVLChatModel.chat: "<image>\n"
// before a single image's question, "Image-1: <image>\nImage-2: ..." for several images, the PVC
// README's "Frame1: <image>\n..." for a video; the answer is decode(ids, skip_special_tokens) split
// on <|im_end|> and stripped. For several turns, keep a ChatSession (session.ts): it re-uses the KV cache.

import type { InternVL } from '../models/internvl.js';
import type { Tokenizer } from '../text/tokenizer.js';
import { ChatSession, type ChatResult, type SessionOptions, type TurnRequest } from './session.js';

export { InputError, type VideoInput } from './inputs.js';
export { answerText, ChatSession, formatStats, pyStrip, type ChatResult, type ChatStats, type SessionOptions, type TurnRequest } from './session.js';

/** A turn plus the conversation it continues: with earlier turns in `history`, `images` fill the history's <image> placeholders (as InternVLChatModel.chat). */
export type ChatRequest = TurnRequest & SessionOptions;

/**
 * One chat turn. Yields text as tokens are produced and returns the answer, ids, this turn for the
 * history, and stats (see ChatSession.turn).
 */
export async function* chat(model: InternVL, tokenizer: Tokenizer, req: ChatRequest): AsyncGenerator<string, ChatResult, undefined> {
  const session = new ChatSession(model, tokenizer, req);
  try {
    return yield* session.turn(req);
  } finally {
    session.dispose();
  }
}
