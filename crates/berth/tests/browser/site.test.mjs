// berth's web site in real headless Chromium, driven by Playwright, one scenario in
// order: sign in, create an access token, `docker login` with it and push, see the tag
// on the repository page, describe the repository (an XSS payload stays text), make it
// private (anonymous visitors get the 404 of a missing repository, and search forgets
// it), a form without its CSRF token is refused, and screenshots of the main pages.
//
// Run by crates/berth/tests/it/web.rs, which starts berth and the Docker engine and
// passes (environment):
//   BERTH_URL            http://localhost:PORT
//   BERTH_REGISTRY       localhost:PORT
//   BERTH_USER / BERTH_PASSWORD    a user with a password
//   BERTH_IMAGE_TAR / BERTH_IMAGE  a `docker save` archive and the name it loads as
//   BERTH_DOCKER_HOST / BERTH_DOCKER_CONFIG   the Docker engine to push with
//   BERTH_SCREENSHOTS    the folder screenshots go to
//   BERTH_CHROMIUM       the browser (default /usr/bin/chromium)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const base = env("BERTH_URL");
const registry = env("BERTH_REGISTRY");
const user = env("BERTH_USER");
const password = env("BERTH_PASSWORD");
const imageTar = env("BERTH_IMAGE_TAR");
const image = env("BERTH_IMAGE"); // localhost:PORT/USER/ui:2.1.106
const shots = env("BERTH_SCREENSHOTS");
const repository = `${user}/ui`;
const tag = "2.1.106";

const docker = (args, input) =>
  execFileSync("docker", args, {
    input,
    encoding: "utf8",
    env: {
      ...process.env,
      DOCKER_HOST: env("BERTH_DOCKER_HOST"),
      DOCKER_CONFIG: env("BERTH_DOCKER_CONFIG"),
      DOCKER_CLI_HINTS: "false",
    },
  });

let browser;
let signedIn; // the user's browser context
let anonymous; // a visitor who never signed in
let page;
let tokenSecret;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.BERTH_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  signedIn = await browser.newContext();
  anonymous = await browser.newContext();
  page = await signedIn.newPage();
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
});

/// The visible text of the page's main content.
const mainText = (p) => p.locator("main").innerText();

test("a wrong password is refused on the sign-in page", async () => {
  await page.goto(`${base}/signin`);
  await page.fill("#username", user);
  await page.fill("#password", "not-the-password");
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/signin") && r.request().method() === "POST"),
    page.click("main button[type=submit]"),
  ]);
  assert.equal(response.status(), 401);
  assert.match(await page.locator("[role=alert]").innerText(), /incorrect username or password/);
});

test("signs in with a password and comes back to the page asked for", async () => {
  await page.goto(`${base}/account`);
  assert.match(page.url(), /\/signin\?next=%2Faccount$/);
  await page.fill("#username", user);
  await page.fill("#password", password);
  await page.click("main button[type=submit]");
  await page.waitForURL(`${base}/account`);
  assert.match(await page.locator("header nav").innerText(), new RegExp(user));
  const cookies = await signedIn.cookies();
  const session = cookies.find((c) => c.name === "berth_session");
  assert.ok(session, "a session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
});

test("creates an access token and is shown its secret once, with the docker login command", async () => {
  await page.goto(`${base}/account`);
  await page.fill("#token-name", "laptop");
  await page.selectOption("#token-scope", "read-write");
  await page.selectOption("#token-expires", "30");
  await page.click(".token-form button[type=submit]");
  tokenSecret = (await page.locator("#token-secret").innerText()).trim();
  assert.match(tokenSecret, /^berth_pat_[0-9a-f]{48}$/);
  assert.equal(
    (await page.locator("#login-command").innerText()).trim(),
    `docker login ${registry} -u ${user}`,
  );
  assert.ok(!page.url().includes(tokenSecret), "the secret is not in the URL");
  // Listed, by name and scope; never shown again.
  await page.goto(`${base}/account`);
  const listed = await page.locator("table.tokens").innerText();
  assert.match(listed, /laptop/);
  assert.match(listed, /read-write/);
  assert.ok(!(await page.content()).includes(tokenSecret), "the secret is shown only once");
});

test("docker login with the token, then push", async () => {
  docker(["load", "-i", imageTar]);
  const login = docker(["login", registry, "-u", user, "--password-stdin"], tokenSecret);
  assert.match(login, /Login Succeeded/);
  const push = docker(["push", image]);
  assert.match(push, new RegExp(`${tag}: digest: sha256:[0-9a-f]{64}`));
});

test("the tag appears on the repository page with its platform", async () => {
  await page.goto(`${base}/r/${repository}`);
  const text = await mainText(page);
  assert.match(text, new RegExp(tag.replace(/\./g, "\\.")));
  assert.match(text, /linux\/amd64/);
  assert.match(text, new RegExp(`by ${user}`));
  assert.equal(
    (await page.locator("#pull").innerText()).trim(),
    `docker pull ${registry}/${repository}`,
  );
  await page.click(`a.tag:text-is("${tag}")`);
  await page.waitForURL(`${base}/r/${repository}/-/tags/${tag}`);
  const tagText = await mainText(page);
  assert.match(tagText, /Layers/);
  assert.match(tagText, /linux\/amd64/);
  assert.match(tagText, /sha256:[0-9a-f]{64}/);
});

test("a description is Markdown, and HTML in it is shown as text", async () => {
  await page.goto(`${base}/r/${repository}/-/settings`);
  const payload =
    '# Gallery UI\n\nThe *front end*.\n\n<script>window.__xss = 1</script>\n\n<img src=x onerror="window.__xss = 2">';
  await page.fill("#description", payload);
  await page.click("text=Save description");
  await page.waitForURL(/\/-\/settings\?saved$/);
  await page.goto(`${base}/r/${repository}`);
  assert.equal(await page.locator(".description h1").innerText(), "Gallery UI");
  assert.equal(await page.locator(".description em").innerText(), "front end");
  const text = await page.locator(".description").innerText();
  assert.match(text, /<script>window.__xss = 1<\/script>/);
  assert.match(text, /<img src=x onerror="window.__xss = 2">/);
  assert.equal(await page.locator(".description script, .description img").count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  // In search results too, as text.
  await page.goto(`${base}/search?q=gallery+ui`);
  assert.match(await mainText(page), new RegExp(repository));
});

test("a form posted without its CSRF token is refused", async () => {
  const response = await signedIn.request.post(`${base}/r/${repository}/-/settings`, {
    form: { action: "visibility", visibility: "private" },
    maxRedirects: 0,
  });
  assert.equal(response.status(), 403);
  assert.match(await response.text(), /did not come from this site/);
  const forged = await signedIn.request.post(`${base}/r/${repository}/-/settings`, {
    form: { action: "visibility", visibility: "private", csrf: "0".repeat(64) },
    maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  // Still public: the anonymous visitor sees it.
  const check = await anonymous.newPage();
  const seen = await check.goto(`${base}/r/${repository}`);
  assert.equal(seen.status(), 200);
  await check.close();
});

test("making the repository private hides it from anonymous visitors and from search", async () => {
  const visitor = await anonymous.newPage();
  await visitor.goto(`${base}/search?q=ui`);
  assert.match(await mainText(visitor), new RegExp(repository));

  await page.goto(`${base}/r/${repository}/-/settings`);
  await page.check("input[name=visibility][value=private]");
  await page.click("text=Save visibility");
  await page.waitForURL(/\/-\/settings\?saved$/);
  await page.goto(`${base}/r/${repository}`);
  assert.match(await page.locator(".title").innerText(), /private/);

  const hidden = await visitor.goto(`${base}/r/${repository}`);
  assert.equal(hidden.status(), 404);
  const hiddenText = await mainText(visitor);
  const missing = await visitor.goto(`${base}/r/${user}/no-such-repository`);
  assert.equal(missing.status(), 404);
  assert.equal(hiddenText, await mainText(visitor), "a private repository's page is a missing one's");
  const tagPage = await visitor.goto(`${base}/r/${repository}/-/tags/${tag}`);
  assert.equal(tagPage.status(), 404);

  await visitor.goto(`${base}/search?q=ui`);
  assert.doesNotMatch(await mainText(visitor), new RegExp(repository));
  await visitor.goto(`${base}/`);
  assert.doesNotMatch(await mainText(visitor), new RegExp(repository));
  await visitor.goto(`${base}/u/${user}`);
  assert.doesNotMatch(await mainText(visitor), new RegExp(repository));
  // Its owner still finds it.
  await page.goto(`${base}/search?q=ui`);
  assert.match(await mainText(page), new RegExp(repository));
  await visitor.close();
});

test("pages work without JavaScript", async () => {
  const noScript = await browser.newContext({ javaScriptEnabled: false });
  const p = await noScript.newPage();
  await p.goto(`${base}/search`);
  await p.fill("#search-q", "nothing-matches-this");
  await p.click("main button[type=submit]");
  await p.waitForURL(/q=nothing-matches-this/);
  assert.match(await mainText(p), /0 repositories/);
  await noScript.close();
});

test("screenshots of the main pages, light and dark, desktop and phone", async () => {
  // The repository public again, so the pictures show a full page.
  await page.goto(`${base}/r/${repository}/-/settings`);
  await page.check("input[name=visibility][value=public]");
  await page.click("text=Save visibility");
  await page.waitForURL(/\/-\/settings\?saved$/);
  const pages = {
    home: "/",
    search: "/search?q=ui",
    repository: `/r/${repository}`,
    tag: `/r/${repository}/-/tags/${tag}`,
    account: "/account",
  };
  const state = await signedIn.storageState();
  for (const colorScheme of ["light", "dark"]) {
    for (const [device, viewport] of [
      ["desktop", { width: 1280, height: 800 }],
      ["phone", { width: 390, height: 844 }],
    ]) {
      const context = await browser.newContext({
        colorScheme,
        viewport,
        storageState: state,
        deviceScaleFactor: 1,
      });
      const p = await context.newPage();
      for (const [name, path] of Object.entries(pages)) {
        const response = await p.goto(`${base}${path}`);
        assert.equal(response.status(), 200, path);
        const background = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
        assert.equal(
          background,
          colorScheme === "dark" ? "rgb(13, 17, 23)" : "rgb(255, 255, 255)",
          `${name} in ${colorScheme}`,
        );
        await p.screenshot({ path: `${shots}/${name}-${colorScheme}-${device}.png`, fullPage: true });
      }
      await context.close();
    }
  }
});

test("signing out ends the session", async () => {
  await page.goto(`${base}/account`);
  await page.click("text=Sign out");
  await page.waitForURL(`${base}/`);
  assert.match(await page.locator("header nav").innerText(), /Sign in/);
  const response = await page.goto(`${base}/account`);
  assert.match(page.url(), /\/signin/);
  assert.equal(response.status(), 200);
});
