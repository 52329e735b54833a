/** How long to wait before reconnecting: capped exponential backoff with jitter. */
export interface BackoffOptions {
  /** Delay before the first retry, in ms (default 250). */
  initialDelayMs?: number;
  /** Largest delay, in ms (default 10000). */
  maxDelayMs?: number;
  /** Growth per failed attempt (default 2). */
  multiplier?: number;
  /**
   * Share of the delay that is random, 0 to 1 (default 0.5): the delay is
   * drawn uniformly from `[d × (1 − jitter), d]`, so clients that lost the
   * server together do not come back together.
   */
  jitter?: number;
}

/** The delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialDelayMs ?? 250;
  const max = options.maxDelayMs ?? 10_000;
  const multiplier = options.multiplier ?? 2;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
  const capped = Math.min(max, initial * Math.pow(multiplier, Math.min(attempt, 64)));
  return Math.round(capped * (1 - jitter * random()));
}
