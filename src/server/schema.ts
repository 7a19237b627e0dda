// The request bodies the server accepts, as TypeBox schemas: Fastify validates every request against
// them (Ajv) before a handler runs, and the handlers get the matching static types. Fields follow
// OpenAI's chat completions API; `video_url` is vLLM's extension (with our optional frames and
// range), `top_k`, `repetition_penalty` and `ignore_eos` are the usual extensions of local servers.

import { Type, type Static, type TSchema, type TUnion } from '@sinclair/typebox';

/** A union told apart by one property (Ajv's discriminator: its errors name the bad tag, not "must match a schema in anyOf"). */
const tagged = <T extends TSchema[]>(key: string, schemas: [...T]) =>
  Type.Unsafe<Static<TUnion<T>>>({ type: 'object', required: [key], discriminator: { propertyName: key }, oneOf: schemas });

const TextPart = Type.Object({ type: Type.Literal('text'), text: Type.String() }, { additionalProperties: false });

const ImagePart = Type.Object(
  {
    type: Type.Literal('image_url'),
    image_url: Type.Object(
      {
        url: Type.String({ minLength: 1 }),
        /** accepted for compatibility; tiling follows the server's --max-tiles */
        detail: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('low'), Type.Literal('high')])),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const VideoPart = Type.Object(
  {
    type: Type.Literal('video_url'),
    video_url: Type.Object(
      {
        url: Type.String({ minLength: 1 }),
        /** frames sampled uniformly (default 32, as InternVL's load_video) */
        frames: Type.Optional(Type.Integer({ minimum: 1 })),
        /** only [start, end] seconds of the video */
        start: Type.Optional(Type.Number({ minimum: 0 })),
        end: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const UserPart = tagged('type', [TextPart, ImagePart, VideoPart]);

const SystemMessage = Type.Object(
  {
    role: Type.Unsafe<'system' | 'developer'>({ type: 'string', enum: ['system', 'developer'] }),
    content: Type.Union([Type.String(), Type.Array(TextPart)]),
    name: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const UserMessage = Type.Object(
  {
    role: Type.Literal('user'),
    content: Type.Union([Type.String(), Type.Array(UserPart, { minItems: 1 })]),
    name: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const AssistantMessage = Type.Object(
  {
    role: Type.Literal('assistant'),
    content: Type.Union([Type.String(), Type.Array(TextPart), Type.Null()]),
    name: Type.Optional(Type.String()),
    refusal: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  },
  { additionalProperties: false },
);

export const Message = tagged('role', [SystemMessage, UserMessage, AssistantMessage]);

export const ChatCompletionRequest = Type.Object(
  {
    model: Type.String(),
    messages: Type.Array(Message, { minItems: 1 }),
    max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
    max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
    temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()])),
    top_p: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1 }), Type.Null()])),
    top_k: Type.Optional(Type.Integer({ minimum: 0 })),
    repetition_penalty: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    seed: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), Type.Null()])),
    stop: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { maxItems: 4 }), Type.Null()])),
    n: Type.Optional(Type.Union([Type.Literal(1), Type.Null()])),
    stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    stream_options: Type.Optional(Type.Union([Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), Type.Null()])),
    /** generate until max_tokens even past <|im_end|> (vLLM's extension; load tests use it) */
    ignore_eos: Type.Optional(Type.Boolean()),
    user: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export type ChatCompletionRequest = Static<typeof ChatCompletionRequest>;
export type Message = Static<typeof Message>;
