// Errors in OpenAI's shape: { error: { message, type, param, code } } with the HTTP status a client
// of the OpenAI API expects for that class of problem.

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    /** seconds, for 429 and 503 */
    readonly retryAfter?: number,
  ) {
    super(message);
  }

  get type(): string {
    if (this.status === 429) return 'rate_limit_error';
    if (this.status >= 500) return 'server_error';
    return 'invalid_request_error';
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code = 'invalid_value'): ApiError => new ApiError(400, message, code, param);

/** Fastify's own errors (body parsing, size, content type, schema) in OpenAI's shape. */
export function fromFastifyError(e: { statusCode?: number; code?: string; message: string; validation?: { instancePath: string; keyword: string; params: Record<string, unknown> }[] }): ApiError {
  const v = e.validation?.[0];
  if (v) {
    // Ajv's instancePath is a JSON pointer (/messages/0/role); OpenAI's param is dotted
    const param = v.instancePath.slice(1).replaceAll('/', '.') || null;
    const message = v.keyword === 'additionalProperties' ? `${param ?? 'the body'} has an unknown field '${v.params.additionalProperty}'` : e.message;
    return new ApiError(400, `invalid request: ${message}`, 'invalid_request_schema', v.keyword === 'additionalProperties' ? [param, v.params.additionalProperty].filter(Boolean).join('.') : param);
  }
  switch (e.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError(400, `the body is not valid JSON: ${e.message}`, 'invalid_json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, `${e.message} (inline media count towards it; the operator sets it with --body-limit)`, 'request_too_large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, `${e.message}; send application/json`, 'unsupported_media_type');
  }
  const status = e.statusCode && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
  return new ApiError(status, e.message, status === 404 ? 'not_found' : null);
}
