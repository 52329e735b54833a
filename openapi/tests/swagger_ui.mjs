// Check 4: Swagger UI works in a real browser.
//
//   node swagger_ui.mjs BASE_URL TOKEN OUT_DIR
//
// Headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// opens BASE_URL/swagger, authorizes with TOKEN through the "Authorize"
// dialog, runs POST /api/sql with `SELECT 1` through "Try it out" and checks
// the response Swagger UI shows. Screenshots go to OUT_DIR. The page must
// not load anything from outside the server.

import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { TIMEOUT, check, executablePath, failureCount } from './browser_check.mjs';

const [baseUrl, token, outDir] = process.argv.slice(2);
if (!baseUrl || !token || !outDir) {
  console.error('usage: node swagger_ui.mjs BASE_URL TOKEN OUT_DIR');
  process.exit(2);
}

await mkdir(outDir, { recursive: true });
// A new, empty profile for every run.
const profile = await mkdtemp(join(tmpdir(), 'kalamdb-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1280, height: 1000 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(TIMEOUT);

const foreign = [];
page.on('request', (request) => {
  const url = request.url();
  if (!url.startsWith(baseUrl) && !url.startsWith('data:') && !url.startsWith('blob:')) foreign.push(url);
});
const pageErrors = [];
page.on('pageerror', (error) => pageErrors.push(String(error)));

const op = '#operations-Sql-executeSql';
try {
  await page.goto(`${baseUrl}/swagger`);
  const title = page.locator('.swagger-ui .info .title');
  await title.waitFor();
  check((await title.innerText()).includes('KalamDB'), 'Swagger UI shows the KalamDB document');
  check(await page.locator('#operations-Health-health').isVisible(), 'GET /health is listed');
  check(await page.locator('#operations-Auth-login').isVisible(), 'POST /api/auth/login is listed');

  // Authorize: the dialog lists the BearerAuth scheme; paste the token.
  await page.locator('.scheme-container button.authorize').click();
  const dialog = page.locator('.modal-ux');
  await dialog.waitFor();
  check((await dialog.innerText()).includes('BearerAuth'), 'the Authorize dialog offers BearerAuth');
  await dialog.locator('.auth-container input').first().fill(token);
  await dialog.locator('.auth-btn-wrapper button.authorize').click();
  await dialog.locator('.auth-btn-wrapper button', { hasText: 'Logout' }).waitFor();
  await dialog.locator('button.btn-done').click();
  await dialog.waitFor({ state: 'detached' });
  check(await page.locator('.scheme-container button.authorize.locked').isVisible(), 'the padlock shows authorized');

  // Try it out: POST /api/sql {"sql": "SELECT 1"}.
  await page.locator(`${op} .opblock-summary`).first().click();
  await page.locator(`${op} button.try-out__btn`).click();
  const body = page.locator(`${op} textarea.body-param__text`);
  check((await body.inputValue()).includes('system.namespaces'), 'the request body is prefilled with the example');
  await body.fill(JSON.stringify({ sql: 'SELECT 1' }, null, 2));
  await page.locator(`${op} button.execute`).click();

  const live = page.locator(`${op} .live-responses-table`);
  await live.locator('tr.response .response-col_status').first().waitFor();
  const status = (await live.locator('tr.response .response-col_status').first().innerText()).trim();
  check(status === '200', `Swagger UI shows status 200 (got ${status})`);
  const shown = await live.locator('tr.response .response-col_description pre').first().innerText();
  let parsed;
  try {
    parsed = JSON.parse(shown);
  } catch {
    parsed = undefined;
  }
  check(parsed?.status === 'success', 'the response body shown is a success');
  const row = parsed?.results?.[0]?.rows?.[0] ?? {};
  check(Object.values(row).includes('1'), `SELECT 1 returns one row with "1" (BIGINT as a string): ${JSON.stringify(row)}`);
  const curl = await page.locator(`${op} .curl-command`).innerText();
  check(curl.includes(`Bearer ${token}`), 'the request carried Authorization: Bearer <token>');
  check(curl.includes('SELECT 1'), 'the request carried the edited body');

  // The edited body, Execute, the curl line with the token and the response, in one picture.
  await page.setViewportSize({ width: 1280, height: 1400 });
  await body.evaluate((el) => el.scrollIntoView({ block: 'start' }));
  await page.screenshot({ path: join(outDir, 'swagger-ui.png') });
  await page.locator(op).screenshot({ path: join(outDir, 'swagger-ui-execute-sql.png') });
  console.log(`screenshots: ${join(outDir, 'swagger-ui.png')}, ${join(outDir, 'swagger-ui-execute-sql.png')}`);
} catch (error) {
  check(false, `Swagger UI flow: ${error.message.split('\n')[0]}`);
  await page.screenshot({ path: join(outDir, 'swagger-ui-failure.png'), fullPage: true }).catch(() => {});
  console.log(`screenshot of the failure: ${join(outDir, 'swagger-ui-failure.png')}`);
} finally {
  check(foreign.length === 0, `nothing loaded from outside the server${foreign.length ? `: ${foreign.join(', ')}` : ''}`);
  check(pageErrors.length === 0, `no script errors in the page${pageErrors.length ? `: ${pageErrors.join('; ')}` : ''}`);
  await context.close();
  await rm(profile, { recursive: true, force: true });
}

console.log(`Swagger UI: ${failureCount()} failure(s)`);
process.exit(failureCount() === 0 ? 0 : 1);
