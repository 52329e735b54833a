import type { ErrorResponse, SqlResult } from './generated/openapi.js';

/**
 * Error codes the server documents (docs/http-api.md, docs/websocket-protocol.md),
 * plus the client's own:
 *
 * - `NETWORK_ERROR`: the request or the socket failed before the server answered;
 * - `CLOSED`: the client was closed;
 * - `PROTOCOL_ERROR`: the server sent something the client does not understand.
 *
 * `code` is typed as this union or any other string: a server may add codes.
 */
export type KalamErrorCode =
  | 'INVALID_SQL'
  | 'QUERY_ERROR'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'INVALID_INPUT'
  | 'CONSTRAINT_VIOLATION'
  | 'UNSUPPORTED'
  | 'INVALID_REQUEST'
  | 'LIMIT_EXCEEDED'
  | 'STATEMENT_TIMEOUT'
  | 'UNAUTHORIZED'
  | 'PERMISSION_DENIED'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'INTERNAL_ERROR'
  | 'INVALID_MESSAGE'
  | 'UNKNOWN_TYPE'
  | 'DUPLICATE_SUBSCRIPTION'
  | 'UNKNOWN_SUBSCRIPTION'
  | 'TOO_MANY_SUBSCRIPTIONS'
  | 'AUTH_TIMEOUT'
  | 'SLOW_CONSUMER'
  | 'RESUME_TOO_OLD'
  | 'NETWORK_ERROR'
  | 'CLOSED'
  | 'PROTOCOL_ERROR'
  | (string & {});

/** Every error the client reports: from `POST /api/sql`, login, or the live-query socket. */
export class KalamError extends Error {
  override readonly name = 'KalamError';
  /** Machine-readable code, e.g. `INVALID_SQL`, `UNAUTHORIZED`, `NETWORK_ERROR`. */
  readonly code: KalamErrorCode;
  /** HTTP status, for errors of an HTTP request. */
  readonly status: number | undefined;
  /** The statement that failed, when the server names one. */
  readonly statement: string | undefined;
  /** Results of the statements of the batch that succeeded before the failure. */
  readonly results: SqlResult[];
  /** The client's id of the subscription the error belongs to, if any. */
  readonly subscriptionId: string | undefined;

  constructor(
    code: KalamErrorCode,
    message: string,
    extra: {
      status?: number;
      statement?: string;
      results?: SqlResult[];
      subscriptionId?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.code = code;
    this.status = extra.status;
    this.statement = extra.statement;
    this.results = extra.results ?? [];
    this.subscriptionId = extra.subscriptionId;
  }

  /** The error of an HTTP error response (the body is the documented `ErrorResponse`). */
  static fromResponse(status: number, body: unknown): KalamError {
    const parsed = body as Partial<ErrorResponse> | undefined;
    const detail = parsed?.error;
    if (detail && typeof detail.code === 'string' && typeof detail.message === 'string') {
      return new KalamError(detail.code, detail.message, {
        status,
        ...(detail.statement === undefined ? {} : { statement: detail.statement }),
        ...(Array.isArray(parsed.results) ? { results: parsed.results } : {}),
      });
    }
    return new KalamError(
      status === 401 ? 'UNAUTHORIZED' : 'PROTOCOL_ERROR',
      `HTTP ${status} without the documented error body`,
      { status },
    );
  }
}

/** True if `error` is a {@link KalamError} with one of `codes` (any code if none given). */
export function isKalamError(error: unknown, ...codes: KalamErrorCode[]): error is KalamError {
  return error instanceof KalamError && (codes.length === 0 || codes.includes(error.code));
}
