// The `internlm2-chat` conversation of InternVL (conversation.py, MPT separator style) and the image
// placeholder expansion of InternVLChatModel.chat (pvc-architecture.md sections 7.1-7.3).
//
// conversation.py builds: system_template.format(system) + sep, then for each message
// role + message + sep, or the bare role for an empty (None or '') message; that is how the prompt
// ends with the assistant role open. No newline follows <|im_end|>. The Jinja template below
// renders exactly that string.

import { Template } from '@huggingface/jinja';

export const IMAGE_PLACEHOLDER = '<image>';
export const IMG_START = '<img>';
export const IMG_END = '</img>';
export const IMG_CONTEXT = '<IMG_CONTEXT>';

/** InternVL2's system message (conversation.py, template 'internlm2-chat'). */
export const DEFAULT_SYSTEM_MESSAGE = '你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。';

export const INTERNLM2_CHAT_TEMPLATE =
  "{{- '<|im_start|>system\\n' + system_message + '<|im_end|>' -}}" +
  '{%- for message in messages -%}' +
  "{{- '<|im_start|>' + message.role + '\\n' -}}" +
  "{%- if message.content -%}{{- message.content + '<|im_end|>' -}}{%- endif -%}" +
  '{%- endfor -%}' +
  "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

const template = new Template(INTERNLM2_CHAT_TEMPLATE);

export interface ChatTurn {
  question: string;
  answer: string;
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
}

/** The conversation string with the assistant turn open; <image> placeholders left as they are. */
export function renderConversation(question: string, options: Omit<PromptOptions, 'imageRows'> = {}): string {
  const messages: { role: string; content: string }[] = [];
  for (const turn of options.history ?? []) {
    messages.push({ role: 'user', content: turn.question }, { role: 'assistant', content: turn.answer });
  }
  messages.push({ role: 'user', content: question });
  return template.render({
    system_message: options.systemMessage ?? DEFAULT_SYSTEM_MESSAGE,
    messages,
    add_generation_prompt: true,
  });
}

/**
 * Replaces each <image>, in order, by <img> + <IMG_CONTEXT> * rows[i] + </img>. The placeholders
 * must match the images one to one (chat() would otherwise leave a literal "<image>" or misalign
 * the vision rows).
 */
export function expandImagePlaceholders(prompt: string, rows: readonly number[]): string {
  const parts = prompt.split(IMAGE_PLACEHOLDER);
  if (parts.length - 1 !== rows.length) {
    throw new Error(`the prompt has ${parts.length - 1} ${IMAGE_PLACEHOLDER} placeholder(s) but ${rows.length} image(s) were given`);
  }
  rows.forEach((m, i) => {
    if (!Number.isInteger(m) || m <= 0) throw new Error(`image ${i} has ${m} vision rows; expected a positive integer`);
  });
  return parts.reduce((out, part, i) => out + IMG_START + IMG_CONTEXT.repeat(rows[i - 1]) + IMG_END + part);
}

/**
 * The full prompt as InternVLChatModel.chat builds it: "<image>\n" is prepended to the question
 * when images are given, there is no history and the question has no placeholder; then the
 * conversation is rendered and the placeholders (history included) are expanded.
 */
export function buildPrompt(question: string, options: PromptOptions = {}): string {
  const rows = options.imageRows ?? [];
  const noHistory = (options.history ?? []).length === 0;
  const q = rows.length > 0 && noHistory && !question.includes(IMAGE_PLACEHOLDER) ? `${IMAGE_PLACEHOLDER}\n${question}` : question;
  return expandImagePlaceholders(renderConversation(q, options), rows);
}

/** "Image-1: <image>\nImage-2: <image>\n...": prefix the question with it for several images. */
export function multiImagePrefix(count: number): string {
  return Array.from({ length: count }, (_, i) => `Image-${i + 1}: ${IMAGE_PLACEHOLDER}\n`).join('');
}

/** "Frame1: <image>\nFrame2: <image>\n...": the PVC README's video prefix, one line per frame. */
export function videoPrefix(frames: number): string {
  return Array.from({ length: frames }, (_, i) => `Frame${i + 1}: ${IMAGE_PLACEHOLDER}\n`).join('');
}
