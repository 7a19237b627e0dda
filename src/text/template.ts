// The `internlm2-chat` conversation of InternVL (conversation.py, MPT separator style) and the image
// placeholder expansion of InternVLChatModel.chat (pvc-architecture.md sections 7.1-7.3).
//
// conversation.py builds: system_template.format(system) + sep, then for each message
// role + message + sep, or the bare role for an empty (None or '') message; that is how the prompt
// ends with the assistant role open. No newline follows <|im_end|>. The prompt is built as segments
// so that the text people wrote (system message, questions, answers) can be told apart from the
// template's own markup: a tokenizer may then read special-token strings in it as plain text.

export const IMAGE_PLACEHOLDER = '<image>';
export const IMG_START = '<img>';
export const IMG_END = '</img>';
export const IMG_CONTEXT = '<IMG_CONTEXT>';
export const IM_START = '<|im_start|>';
export const IM_END = '<|im_end|>';

/** InternVL2's system message (conversation.py, template 'internlm2-chat'). */
export const DEFAULT_SYSTEM_MESSAGE = '你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。';

export interface ChatTurn {
  question: string;
  answer: string;
}

/** A piece of the prompt: template markup, or text a person wrote (`user`). */
export interface Segment {
  text: string;
  user?: boolean;
}

export interface PromptOptions {
  /** Earlier turns, oldest first. */
  history?: readonly ChatTurn[];
  systemMessage?: string;
  /**
   * One entry per image (tile group, or video frame), in order: the number of <IMG_CONTEXT> rows
   * (vision rows) that image contributes. Omit for a text-only prompt.
   */
  imageRows?: readonly number[];
  /** Only the new question and the open assistant turn: the conversation so far is already in the model's KV cache. */
  continuation?: boolean;
}

/**
 * The prompt as segments. With images, each <image> of the questions (history first; answers are
 * the model's text and never expanded), in order, becomes <img> + <IMG_CONTEXT> * rows[i] + </img>;
 * the placeholders must match the images one to one. Without images a typed "<image>" stays text,
 * as in InternVLChatModel.chat.
 */
export function promptSegments(question: string, options: PromptOptions = {}): Segment[] {
  const rows = options.imageRows ?? [];
  const history = options.continuation ? [] : (options.history ?? []);
  const questions = [...history.map((t) => t.question), question];
  const placeholders = questions.reduce((n, q) => n + q.split(IMAGE_PLACEHOLDER).length - 1, 0);
  if (rows.length > 0 && placeholders !== rows.length) {
    throw new Error(`the prompt has ${placeholders} ${IMAGE_PLACEHOLDER} placeholder(s) but ${rows.length} image(s) were given`);
  }
  rows.forEach((m, i) => {
    if (!Number.isInteger(m) || m <= 0) throw new Error(`image ${i} has ${m} vision rows; expected a positive integer`);
  });
  const out: Segment[] = [];
  const markup = (text: string) => out.push({ text });
  const said = (text: string) => text && out.push({ text, user: true });
  let image = 0;
  const ask = (q: string) => {
    if (rows.length === 0) return said(q);
    q.split(IMAGE_PLACEHOLDER).forEach((part, i) => {
      if (i > 0) markup(IMG_START + IMG_CONTEXT.repeat(rows[image++]) + IMG_END);
      said(part);
    });
  };
  const message = (role: string, content: string, write: (text: string) => unknown) => {
    markup(`${IM_START}${role}\n`);
    if (content) {
      write(content);
      markup(IM_END);
    }
  };
  if (!options.continuation) {
    markup(`${IM_START}system\n`);
    said(options.systemMessage ?? DEFAULT_SYSTEM_MESSAGE);
    markup(IM_END);
  }
  for (const turn of history) {
    message('user', turn.question, ask);
    message('assistant', turn.answer, said);
  }
  message('user', question, ask);
  markup(`${IM_START}assistant\n`);
  return out;
}

export function joinSegments(segments: readonly Segment[]): string {
  return segments.map((s) => s.text).join('');
}

/**
 * The full prompt as InternVLChatModel.chat builds it: "<image>\n" is prepended to the question
 * when images are given, there is no history and the question has no placeholder; then the
 * conversation is rendered and the questions' placeholders expanded.
 */
export function buildPrompt(question: string, options: PromptOptions = {}): string {
  const noHistory = (options.history ?? []).length === 0;
  const q = (options.imageRows ?? []).length > 0 && noHistory && !question.includes(IMAGE_PLACEHOLDER) ? `${IMAGE_PLACEHOLDER}\n${question}` : question;
  return joinSegments(promptSegments(q, options));
}

/** "Image-1: <image>\nImage-2: <image>\n...": prefix the question with it for several images. */
export function multiImagePrefix(count: number): string {
  return Array.from({ length: count }, (_, i) => `Image-${i + 1}: ${IMAGE_PLACEHOLDER}\n`).join('');
}

/** "Frame1: <image>\nFrame2: <image>\n...": the PVC README's video prefix, one line per frame. */
export function videoPrefix(frames: number): string {
  return Array.from({ length: frames }, (_, i) => `Frame${i + 1}: ${IMAGE_PLACEHOLDER}\n`).join('');
}
