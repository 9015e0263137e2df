// The project owner's view (`/?view=owner`, or `#owner`): projects, live progress, labels
// over time, per-worker statistics, agreement, the learning curve, the instructions editor,
// export downloads and labeller invitations. Needs an admin token when the service runs with
// --auth: typed once (or given as `token=` in a link) and kept in this browser.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { QueueService, Role, type Progress, type Project, type Token } from "./gen/labelgrid/v1/queue_pb";
import { bucketChart, curveChart } from "./charts";
import { renderMarkdown } from "./markdown";

export const OWNER_TOKEN_KEY = "labelgrid.admin";
// statistics are read at most this often while labels arrive, and never more than a tenth
// of the time (a project of millions of labels takes the database a while to aggregate)
const STATS_EVERY_MS = 2000;
let statsCost = 0; // ms the last refresh took
const REFRESH_MS = 15000; // and this often anyway (runs, tokens made elsewhere)

let token = localStorage.getItem(OWNER_TOKEN_KEY) ?? "";
const auth: Interceptor = (next) => async (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return await next(req);
};
const client = createClient(
  QueueService,
  createConnectTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors: [auth] }),
);

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

// -- errors: shown in words, cleared by the next call that succeeds ------------------------

function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

function showError(err: unknown, text?: string): void {
  const e = ConnectError.from(err);
  const box = $("error");
  box.textContent = text ?? `${codeName(e.code)}: ${e.rawMessage}`;
  box.dataset.code = codeName(e.code);
  box.hidden = false;
}

function clearError(): void {
  const box = $("error");
  box.hidden = true;
  box.textContent = "";
  delete box.dataset.code;
}

// errors a background refresh may clear when it succeeds again (the network is back); the
// refusal of something the owner did stays until their next action succeeds
const TRANSIENT = new Set(["unavailable", "unknown", "deadline_exceeded", "internal", "canceled"]);

/** One RPC-using step: a success clears the error shown (a background step only a network
 * error), a failure shows it. */
async function step<T>(call: () => Promise<T>, background = false): Promise<T | undefined> {
  try {
    const out = await call();
    if (!background || TRANSIENT.has($("error").dataset.code ?? "")) clearError();
    return out;
  } catch (err) {
    showError(err);
    return undefined;
  }
}

// -- small DOM helpers ----------------------------------------------------------------------

function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...kids: (Node | string)[]): HTMLElementTagNameMap[K] {
  const n = Object.assign(document.createElement(tag), props);
  n.append(...kids);
  return n;
}

function table(head: string[], rows: (string | Node)[][], attrs: Record<string, string>[] = []): HTMLTableElement {
  const t = h("table", { className: "values" });
  const tr = t.createTHead().insertRow();
  for (const c of head) tr.append(h("th", { scope: "col", textContent: c }));
  const body = t.createTBody();
  rows.forEach((row, i) => {
    const r = body.insertRow();
    for (const [k, v] of Object.entries(attrs[i] ?? {})) r.dataset[k] = v;
    for (const c of row) r.insertCell().append(c);
  });
  return t;
}

const num = (v: number | undefined, digits = 2) => (v === undefined ? "–" : v.toFixed(digits));
const pct = (v: number | undefined) => (v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// -- who is this ------------------------------------------------------------------------------

function askToken(): void {
  $("admin-form").hidden = false;
  $("owner-who").hidden = true;
  $("owner-projects").hidden = true;
  $("dashboard").hidden = true;
  document.body.dataset.state = "token";
  $<HTMLInputElement>("admin-token").focus();
}

let me = ""; // the owner's own token name: no button to revoke it

/** True when the caller may use the owner's view: auth is off, or the token is an admin's. */
async function checkToken(): Promise<boolean> {
  let who;
  try {
    who = await client.whoAmI({});
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated) {
      if (token) showError(err);
      localStorage.removeItem(OWNER_TOKEN_KEY);
      token = "";
      askToken();
    } else {
      showError(err);
    }
    return false;
  }
  if (who.authEnabled && who.token?.role !== Role.ADMIN) {
    const role = Role[who.token?.role ?? Role.UNSPECIFIED].toLowerCase();
    showError(
      new ConnectError("", Code.PermissionDenied),
      `permission_denied: this is a ${role} token (${who.token?.name}); the owner's view needs an admin token`,
    );
    localStorage.removeItem(OWNER_TOKEN_KEY);
    token = "";
    askToken();
    return false;
  }
  clearError();
  $("admin-form").hidden = true;
  $("owner-who").hidden = false;
  me = who.token?.name ?? "";
  $("owner-name").textContent = who.authEnabled ? me : "anyone (no auth)";
  return true;
}

$("admin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>("admin-token");
  const value = input.value.trim();
  if (!value) return;
  token = value;
  localStorage.setItem(OWNER_TOKEN_KEY, value);
  input.value = "";
  void open();
});

$("forget-token").addEventListener("click", () => {
  localStorage.removeItem(OWNER_TOKEN_KEY);
  token = "";
  location.reload();
});

// -- projects ---------------------------------------------------------------------------------

const projectName = new URLSearchParams(location.search).get("project") ?? "";

async function listProjects(): Promise<void> {
  const reply = await step(() => client.listProjects({}));
  if (!reply) return;
  const list = $("owner-project-list");
  list.replaceChildren();
  for (const p of reply.projects) {
    const a = h("a", { href: `?view=owner&project=${encodeURIComponent(p.name)}`, textContent: p.name });
    if (p.name === projectName) a.setAttribute("aria-current", "page");
    list.append(h("li", {}, a, ` · overlap ${p.overlap}`));
  }
  if (!reply.projects.length) list.append("No projects yet.");
  $("owner-projects").hidden = false;
}

// -- one project ------------------------------------------------------------------------------

let project: Project | null = null;
let statsTimer: number | undefined;
let statsAt = 0;

function showProgress(p: Progress): void {
  const bar = $<HTMLProgressElement>("o-bar");
  bar.max = Math.max(Number(p.total), 1);
  bar.value = Number(p.labelled);
  const parts = [
    `${p.labelled} / ${p.total} items labelled (${(p.fraction * 100).toFixed(1)}%)`,
    `${p.annotations} labels`,
    `${p.leased} leased`,
    `${p.available} to go`,
  ];
  if (p.inReview) parts.push(`${p.inReview} in review`);
  const text = $("o-progress-text");
  text.textContent = parts.join(" · ");
  text.dataset.annotations = String(p.annotations);
  scheduleStats();
}

async function watch(): Promise<void> {
  for (;;) {
    try {
      for await (const reply of client.watchProgress({ project: projectName })) {
        if (reply.progress) showProgress(reply.progress);
        if (TRANSIENT.has($("error").dataset.code ?? "")) clearError();
      }
    } catch (err) {
      showError(err);
      if (ConnectError.from(err).code !== Code.Unavailable && ConnectError.from(err).code !== Code.Unknown) return;
    }
    await new Promise((r) => setTimeout(r, 2000)); // the server restarted: follow again
  }
}

/** Statistics follow the live progress, at most every STATS_EVERY_MS. */
function scheduleStats(): void {
  if (statsTimer !== undefined) return;
  statsTimer = window.setTimeout(
    () => {
      statsTimer = undefined;
      statsAt = Date.now();
      void refreshStats();
    },
    Math.max(0, statsAt + Math.max(STATS_EVERY_MS, 10 * statsCost) - Date.now()),
  );
}

async function refreshStats(): Promise<void> {
  const t0 = performance.now();
  const stats = await step(() => client.getProjectStats({ project: projectName }), true);
  statsCost = performance.now() - t0;
  if (stats) {
    const width = Number(stats.bucketSeconds);
    const buckets = stats.buckets.map((b) => ({ start: Number(b.start?.seconds ?? 0n), labels: Number(b.labels) }));
    $("o-time-chart").replaceChildren(
      bucketChart(buckets, width),
      h("p", { className: "hint", textContent: `Bars of ${duration(width)}; ${buckets.reduce((a, b) => a + b.labels, 0)} labels in all.` }),
    );
    $("o-workers-body").replaceChildren(
      stats.workers.length
        ? table(
            ["worker", "labels", "active", "labels/min", "agrees with majority"],
            stats.workers.map((w) => [
              w.workerId,
              String(w.labels),
              duration(w.activeSeconds),
              num(w.labelsPerMinute, 1),
              w.compared ? `${pct(w.agreementWithConsensus)} of ${w.compared}` : "–",
            ]),
            stats.workers.map((w) => ({
              worker: w.workerId,
              labels: String(w.labels),
              activeSeconds: String(w.activeSeconds),
              perMinute: w.labelsPerMinute === undefined ? "" : String(w.labelsPerMinute),
              compared: String(w.compared),
              agreed: String(w.agreed),
            })),
          )
        : h("p", { textContent: "No labels yet." }),
    );
  }
  await refreshAgreement();
  await refreshRuns();
}

/** Why there is no agreement yet, in this project's terms: two labels on an item come from
 * overlap, or from relabel requests up to max_overlap. */
function noAgreementYet(): string {
  const why =
    (project?.overlap ?? 1) > 1
      ? `each item gets ${project?.overlap} labels`
      : (project?.maxOverlap ?? 1) > 1
        ? `second labels come with relabel requests (up to ${project?.maxOverlap} per item)`
        : "agreement needs overlap above 1, or max_overlap above 1 for relabel requests";
  return `No item has two labels yet: ${why}.`;
}

async function refreshAgreement(): Promise<void> {
  const reply = await step(() => client.getAgreement({ project: projectName }), true);
  const a = reply?.agreement;
  if (!a) return;
  const body = $("o-agreement-body");
  body.dataset.items = String(a.items);
  if (!a.items) {
    body.replaceChildren(h("p", { textContent: noAgreementYet() }));
    return;
  }
  body.replaceChildren(
    table(
      ["items", "labels", "agree", "Fleiss' κ", "Krippendorff's α"],
      [[String(a.items), String(a.annotations), pct(a.percent), num(a.fleissKappa), num(a.krippendorffAlpha)]],
    ),
    a.pairs.length
      ? table(
          ["workers", "items", "agree", "Cohen's κ"],
          a.pairs.map((p) => [`${p.workerA} / ${p.workerB}`, String(p.items), pct(p.percent), num(p.cohenKappa)]),
        )
      : "",
  );
}

async function refreshRuns(): Promise<void> {
  const reply = await step(() => client.listTrainingRuns({ project: projectName }), true);
  if (!reply) return;
  const scored = reply.runs.filter((r) => r.score !== undefined);
  $("o-curve-chart").replaceChildren(
    curveChart(scored.map((r) => ({ x: Number(r.nLabels), y: r.score!, version: Number(r.modelVersion) }))),
    reply.runs.length
      ? table(
          ["model", "labels", "score", "status", "time (pull · fit · score · push)", "when"],
          reply.runs.map((r) => [
            String(r.modelVersion),
            String(r.nLabels),
            r.score === undefined ? "–" : `${r.score.toFixed(3)}${r.scoreStd !== undefined ? ` ± ${r.scoreStd.toFixed(3)}` : ""}`,
            r.status,
            r.phases.length
              ? r.phases.map((p) => `${p.name} ${p.seconds.toFixed(1)} s`).join(" · ")
              : `${r.seconds.toFixed(1)} s`,
            r.startedAt?.seconds ? timestampDate(r.startedAt).toLocaleString() : "",
          ]),
        )
      : h("p", { textContent: "No training runs recorded yet." }),
  );
}

// -- instructions ----------------------------------------------------------------------------

const instructionsInput = $<HTMLTextAreaElement>("o-instructions-input");

function preview(): void {
  $("o-instructions-preview").replaceChildren(renderMarkdown(instructionsInput.value));
}
instructionsInput.addEventListener("input", preview);

$("o-instructions-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const status = $("o-instructions-status");
  status.textContent = "Saving…";
  const reply = await step(() =>
    client.setProjectInstructions({ project: projectName, instructions: instructionsInput.value }),
  );
  status.textContent = reply ? "Saved: labellers see them on their next page load." : "Not saved.";
});

// -- exports: a form POST into a hidden frame, so the browser streams the file to disk --------

function exportFile(format: string): void {
  const form = h("form", { method: "post", action: "/export", target: "export-sink" });
  form.hidden = true;
  const fields: Record<string, string> = { project: projectName, format };
  if (token) fields.token = token; // in the body: never in an address
  for (const [name, value] of Object.entries(fields)) form.append(h("input", { type: "hidden", name, value }));
  document.body.append(form);
  form.submit();
  form.remove();
  $("o-export-status").textContent = `Exporting ${projectName}.${format}…`;
}

for (const b of document.querySelectorAll<HTMLButtonElement>("#o-export button[data-format]")) {
  b.addEventListener("click", () => exportFile(b.dataset.format!));
}
// a download never loads the frame; an error page (a refusal, in words) does
$<HTMLIFrameElement>("export-sink").addEventListener("load", () => {
  const text = $<HTMLIFrameElement>("export-sink").contentDocument?.body?.textContent?.trim();
  if (text) {
    const code = text.split(":")[0];
    showError(new ConnectError(text), text);
    $("error").dataset.code = code;
    $("o-export-status").textContent = "Export failed.";
  }
});

// -- invitations and tokens ------------------------------------------------------------------

function inviteLink(value: string): string {
  const q = new URLSearchParams({ project: projectName, token: value });
  return `${location.origin}/?${q.toString()}`;
}

$("o-invite-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>("o-invite-name");
  const name = input.value.trim();
  if (!name) return;
  const reply = await step(() => client.createToken({ name, role: Role.LABELLER, projects: [projectName] }));
  if (!reply) return;
  input.value = "";
  const link = $<HTMLInputElement>("o-invite-link");
  link.value = inviteLink(reply.value);
  $("o-invite-result").hidden = false;
  link.focus();
  link.select();
  await refreshTokens();
});

async function revoke(name: string): Promise<void> {
  if (await step(() => client.revokeToken({ name }).then(() => true))) await refreshTokens();
}

function tokenRow(t: Token): (string | Node)[] {
  const live = !t.revokedAt;
  const button = h("button", { type: "button", textContent: "Revoke" });
  button.setAttribute("aria-label", `Revoke ${t.name}`);
  button.addEventListener("click", () => void revoke(t.name));
  return [
    t.name,
    Role[t.role].toLowerCase(),
    t.projects.join(", ") || "all",
    live ? "live" : `revoked ${timestampDate(t.revokedAt!).toLocaleString()}`,
    live && t.name !== me ? button : live ? "(you)" : "",
  ];
}

async function refreshTokens(): Promise<void> {
  const body = $("o-tokens-body");
  try {
    const reply = await client.listTokens({});
    // this project's tokens, and those for every project
    const mine = reply.tokens.filter((t) => !t.projects.length || t.projects.includes(projectName));
    body.replaceChildren(
      table(
        ["name", "role", "projects", "state", ""],
        mine.map(tokenRow),
        mine.map((t) => ({ token: t.name, state: t.revokedAt ? "revoked" : "live" })),
      ),
    );
  } catch (err) {
    const e = ConnectError.from(err);
    body.replaceChildren(h("p", { textContent: `Tokens cannot be listed: ${codeName(e.code)}: ${e.rawMessage}` }));
  }
}

// -- start ------------------------------------------------------------------------------------

async function showProject(): Promise<void> {
  const reply = await step(() => client.getProject({ project: projectName }));
  project = reply?.project ?? null;
  if (!project) return;
  $("project-title").textContent = `${project.name} · owner`;
  document.title = `${project.name} · owner · labelgrid`;
  instructionsInput.value = project.instructions;
  preview();
  $("dashboard").hidden = false;
  document.body.dataset.state = "dashboard";
  void watch();
  statsAt = Date.now();
  await refreshStats();
  await refreshTokens();
  setInterval(() => {
    scheduleStats();
    void refreshTokens();
  }, REFRESH_MS);
}

async function open(): Promise<void> {
  if (!(await checkToken())) return;
  document.body.dataset.state = "owner";
  await listProjects();
  if (projectName) await showProject();
}

/** The owner's view instead of the labeller's page. */
export function startOwner(): void {
  token = localStorage.getItem(OWNER_TOKEN_KEY) ?? ""; // a link's token was stored after this module loaded
  $("owner").hidden = false;
  $("project-title").textContent = "owner";
  void open();
}
