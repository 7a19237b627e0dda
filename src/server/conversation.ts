// OpenAI chat messages -> the engine's conversation: system message, earlier (question, answer)
// turns, the new question, and the media in order. Pure (no I/O), so every rule is testable alone.
//
// Media placeholders follow InternVL's chat() conventions, so a request equals the same CLI run:
// a user message's images go before its text as "Image-k: <image>\n", numbered across the
// conversation, except a lone image in the first message that has any, which is "<image>\n"; a video
// as "Frame1: <image>\n...". A message renders the same whatever follows it, so a request that
// extends the previous one repeats its prompt exactly (and its KV cache can be reused). Text parts
// of one message are joined with "\n"; consecutive messages of one role are merged.

import { IMAGE_PLACEHOLDER, videoPrefix, type ChatTurn } from '../text/template.js';
import { badRequest } from './errors.js';
import type { Message } from './schema.js';

export interface ImageRef {
  kind: 'image';
  url: string;
  /** where it came from in the request, for error messages: messages.2.content.1 */
  param: string;
}

export interface VideoRef {
  kind: 'video';
  url: string;
  param: string;
  frames: number;
  start?: number;
  end?: number;
}

export type MediaRef = ImageRef | VideoRef;

export interface Conversation {
  systemMessage?: string;
  history: ChatTurn[];
  question: string;
  /** every image or video of the conversation, in order */
  media: MediaRef[];
  /** how many of them belong to the history (the rest to the question) */
  historyMedia: number;
}

export interface ConversationLimits {
  maxImages: number;
  maxFrames: number;
}

export const DEFAULT_VIDEO_FRAMES = 32;

type Part = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } } | { type: 'video_url'; video_url: { url: string; frames?: number; start?: number; end?: number } };

const partsOf = (content: string | Part[] | null): Part[] => (content === null ? [] : typeof content === 'string' ? [{ type: 'text', text: content }] : content);

export function toConversation(messages: readonly Message[], limits: ConversationLimits): Conversation {
  let i = 0;
  const system: string[] = [];
  for (; i < messages.length && (messages[i].role === 'system' || messages[i].role === 'developer'); i++) {
    system.push(partsOf(messages[i].content as Part[] | string).map((p) => (p as { text: string }).text).join('\n'));
  }

  // merge runs of one role, keeping each part's request path for messages about it
  const turns: { role: 'user' | 'assistant'; parts: { part: Part; param: string }[] }[] = [];
  for (; i < messages.length; i++) {
    const m = messages[i];
    if (m.role === 'system' || m.role === 'developer') throw badRequest(`messages[${i}]: ${m.role} messages must come before the conversation`, `messages.${i}.role`);
    const parts = partsOf(m.content as Part[] | string | null).map((part, k) => ({ part, param: typeof m.content === 'string' ? `messages.${i}.content` : `messages.${i}.content.${k}` }));
    const last = turns.at(-1);
    if (last?.role === m.role) last.parts.push(...parts);
    else turns.push({ role: m.role, parts });
  }
  if (turns.length === 0) throw badRequest('messages hold no user message', 'messages');
  if (turns[0].role !== 'user') throw badRequest('the conversation must start with a user message (after any system messages)', 'messages');
  if (turns.at(-1)!.role !== 'user') throw badRequest('the last message must be a user message', 'messages');

  // frames not given: InternVL's default, or the server's limit when that is lower
  const framesOf = (v: { frames?: number }) => v.frames ?? Math.min(DEFAULT_VIDEO_FRAMES, limits.maxFrames);
  const media: MediaRef[] = [];
  for (const t of turns) {
    for (const { part, param } of t.parts) {
      if (part.type === 'text' && part.text.includes(IMAGE_PLACEHOLDER)) {
        throw badRequest(`${param}: the text contains "${IMAGE_PLACEHOLDER}", which marks where images go in the prompt; attach images as image_url parts`, param);
      }
      if (part.type === 'image_url') media.push({ kind: 'image', url: part.image_url.url, param });
      if (part.type === 'video_url') {
        const { url, start, end } = part.video_url;
        const frames = framesOf(part.video_url);
        if ((start === undefined) !== (end === undefined)) throw badRequest(`${param}: give both start and end of the video segment`, param);
        if (start !== undefined && end !== undefined && !(end > start)) throw badRequest(`${param}: the video segment needs start < end, got ${start}..${end}`, param);
        if (frames > limits.maxFrames) throw badRequest(`${param}: ${frames} frames requested; this server allows at most ${limits.maxFrames}`, param, 'too_many_frames');
        media.push({ kind: 'video', url, param, frames, start, end });
      }
    }
  }
  const videos = media.filter((m) => m.kind === 'video');
  const images = media.length - videos.length;
  if (videos.length > 1) throw badRequest('one video per conversation', videos[1].param);
  if (videos.length && images) throw badRequest('a conversation holds images or one video, not both', videos[0].param);
  if (images > limits.maxImages) throw badRequest(`${images} images in the conversation; this server allows at most ${limits.maxImages}`, 'messages', 'too_many_images');

  let imageNo = 0;
  let mediaSeen = 0;
  const textOf = (parts: { part: Part }[]): string => {
    const count = parts.filter(({ part }) => part.type !== 'text').length;
    const lone = imageNo === 0 && count === 1;
    let prefix = '';
    for (const { part } of parts) {
      if (part.type === 'image_url') prefix += lone ? `${IMAGE_PLACEHOLDER}\n` : `Image-${imageNo + 1}: ${IMAGE_PLACEHOLDER}\n`;
      if (part.type === 'image_url') imageNo++;
      if (part.type === 'video_url') prefix += videoPrefix(framesOf(part.video_url));
    }
    mediaSeen += count;
    return prefix + parts.flatMap(({ part }) => (part.type === 'text' ? [part.text] : [])).join('\n');
  };
  const history: ChatTurn[] = [];
  for (let t = 0; t + 1 < turns.length; t += 2) history.push({ question: textOf(turns[t].parts), answer: textOf(turns[t + 1].parts) });
  const historyMedia = mediaSeen;
  return { systemMessage: system.length ? system.join('\n') : undefined, history, question: textOf(turns.at(-1)!.parts), media, historyMedia };
}
