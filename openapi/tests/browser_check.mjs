// What the headless-Chromium checks share: the browser to drive, their
// timeout, and ok/FAIL bookkeeping.

export const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const TIMEOUT = 30_000;

let failures = 0;

/** Prints `ok` or `FAIL` for one check and counts the failures. */
export function check(condition, what) {
  console.log(`${condition ? 'ok  ' : 'FAIL'} ${what}`);
  if (!condition) failures += 1;
}

/** Failed checks so far. */
export function failureCount() {
  return failures;
}
